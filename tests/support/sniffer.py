"""A passive MQTT sniffer for tests: records every message a broker delivers on chosen filters.

Uses paho in its own network thread, so async and sync tests can both use it. With MQTT 5
(Mosquitto) it subscribes with QoS 2 and Retain-As-Published, so the recorded QoS and retain
flags are the publisher's (delivered QoS = min(publish, subscription QoS)); with MQTT 3.1.1 (amqtt) the
retain flag of live messages is cleared by the broker and cannot be checked.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions


@dataclass(frozen=True)
class Captured:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    at: float


class Sniffer:
    def __init__(self, host: str, port: int, filters: tuple[str, ...] = ("#", "$sparkplug/#"),
                 *, mqtt5: bool = True, username: str | None = None, password: str | None = None) -> None:
        self.filters = filters
        self.mqtt5 = mqtt5
        self.messages: list[Captured] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._subscribed = threading.Event()
        protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sniffer-{uuid.uuid4().hex[:8]}",
                                  protocol=protocol)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:  # noqa: ANN001
        if self.mqtt5:
            opts = SubscribeOptions(qos=2, retainAsPublished=True)
            client.subscribe([(f, opts) for f in self.filters])
        else:
            client.subscribe([(f, 2) for f in self.filters])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:  # noqa: ANN001
        self._subscribed.set()

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._cond:
            self.messages.append(Captured(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), time.monotonic()))
            self._cond.notify_all()

    def start(self, timeout: float = 10.0) -> Sniffer:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError("sniffer did not get its SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Sniffer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self, predicate: Callable[[Captured], bool] | None = None) -> list[Captured]:
        with self._lock:
            return [m for m in self.messages if predicate is None or predicate(m)]

    def wait_for(self, predicate: Callable[[Captured], bool], *, count: int = 1,
                 timeout: float = 15.0) -> list[Captured]:
        """Block until ``count`` recorded messages match, or raise TimeoutError listing what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self.messages})[:30]
                    raise TimeoutError(f"{len(found)}/{count} matching messages after {timeout}s; "
                                       f"topics seen: {topics}")
                self._cond.wait(remaining)

    def wait_topic(self, topic: str, *, count: int = 1, timeout: float = 15.0) -> list[Captured]:
        return self.wait_for(lambda m: m.topic == topic, count=count, timeout=timeout)
