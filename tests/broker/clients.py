"""paho helpers for the broker tests: a collecting client, and one-shot connect checks.

Every client is built from a broker URL through ``uns.mqtt_url.paho_client``, so these tests
also exercise the URL helpers over TCP, TLS and WebSocket.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count

import paho.mqtt.client as paho

from uns.mqtt_url import paho_client, parse_broker_url

_ids = count()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Collector:
    """A connected paho client that records every message it receives."""

    def __init__(self, client: paho.Client) -> None:
        self.client = client
        self.messages: queue.Queue[Received] = queue.Queue()
        self._suback: queue.Queue[list[int]] = queue.Queue()
        client.on_message = lambda c, u, m: self.messages.put(Received(m.topic, m.payload, m.qos, m.retain))
        client.on_subscribe = lambda c, u, mid, codes, p: self._suback.put([rc.value for rc in codes])

    def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        """Subscribe and wait for the SUBACK; returns the granted QoS or 0x80 (denied)."""
        self.client.subscribe(topic_filter, qos)
        code = self._suback.get(timeout=5)[0]
        return 0x80 if code >= 0x80 else code

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def wait_for(self, topic: str, timeout: float = 5.0) -> Received:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no message on {topic!r} within {timeout}s")
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if message.topic == topic:
                return message

    def drain(self, wait: float) -> list[Received]:
        """Everything that arrives within ``wait`` seconds."""
        time.sleep(wait)
        out = []
        while not self.messages.empty():
            out.append(self.messages.get_nowait())
        return out


def try_connect(url: str, client_id: str | None = None, keepalive: int = 30) -> tuple[paho.Client, bool]:
    """Connect and wait for CONNACK; returns (client, accepted). The caller disconnects it."""
    parsed = parse_broker_url(url)
    client = paho_client(parsed, client_id=client_id or f"t-{next(_ids)}-{time.monotonic_ns()}")
    outcome: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: outcome.put(not rc.is_failure)
    client.connect(parsed.host, parsed.port, keepalive=keepalive)
    client.loop_start()
    try:
        accepted = outcome.get(timeout=10)
    except queue.Empty:
        accepted = False
    return client, accepted


@contextmanager
def collector(url: str, client_id: str | None = None) -> Iterator[Collector]:
    client = paho_client(parse_broker_url(url), client_id=client_id or f"t-{next(_ids)}-{time.monotonic_ns()}")
    col = Collector(client)
    ready = threading.Event()
    refused: list[str] = []

    def on_connect(c, u, f, rc, p):  # type: ignore[no-untyped-def]
        if rc.is_failure:
            refused.append(str(rc))
        ready.set()

    client.on_connect = on_connect
    parsed = parse_broker_url(url)
    client.connect(parsed.host, parsed.port, keepalive=30)
    client.loop_start()
    try:
        if not ready.wait(10) or refused:
            raise AssertionError(f"could not connect to {parsed}: {refused or 'timeout'}")
        yield col
    finally:
        client.disconnect()
        client.loop_stop()
