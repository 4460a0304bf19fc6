"""Issue 12: the adapter's UNS session reconnects after any broker outage and publishes its retained
messages (batch context) again, unless another client has superseded them meanwhile."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from mes_adapter.host.uns_link import UnsLink
from tests.support.mosquitto import mosquitto_broker
from tests.support.mqtt_faults import until
from tests.support.net import free_port
from uns.mqtt_url import parse_broker_url

pytestmark = pytest.mark.mosquitto

LINE = "acme/plant1/packaging/line1"
CONTEXT = f"{LINE}/_context/batch"


def _link(port: int) -> UnsLink:
    link = UnsLink(parse_broker_url(f"mqtt://127.0.0.1:{port}"), "uns-link-test", reconnect_min_s=0.1,
                   reconnect_max_s=0.4)
    link.on(f"{LINE}/_context/#", lambda topic, payload: None)
    return link


def _retained(port: int, topic: str) -> bytes | None:
    """The retained message on ``topic`` a fresh subscriber gets (None: nothing retained)."""
    got: list[bytes] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.on_message = lambda c, u, m: got.append(m.payload) if m.retain else None
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    for _ in range(10):  # SUBACK, then the retained message if there is one
        client.loop(0.1)
    client.disconnect()
    return got[0] if got else None


def _publish_retained(port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


async def test_refused_until_a_broker_listens_then_what_waited_is_sent(tmp_path: Path) -> None:
    port = free_port()
    link = _link(port)
    await link.start()
    try:
        link.publish(CONTEXT, b'{"batch_id": "B-1"}', retain=True)
        await until(lambda: not link.connected, 1, "still down")
        with mosquitto_broker(tmp_path, port=port):
            await until(lambda: link.connected and link.messages_out == 1, 15, "connected and sent")
            assert _retained(port, CONTEXT) == b'{"batch_id": "B-1"}'
    finally:
        await link.stop()


@asynccontextmanager
async def _after_a_broker_crash(tmp_path: Path, port: int, link: UnsLink,
                                before: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Connect the link, run ``before``, kill the broker (no persistence), start a new one there."""
    with mosquitto_broker(tmp_path, port=port) as broker:
        await link.start()
        await until(lambda: link.connected, 15, "connected")
        await before()
        os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
        await until(lambda: not link.connected, 15, "link down")
    again = tmp_path / "again"
    again.mkdir()
    try:
        with mosquitto_broker(again, port=port):
            yield
    finally:
        await link.stop()


async def test_our_retained_context_is_published_again_on_a_restarted_broker(tmp_path: Path) -> None:
    port = free_port()
    link = _link(port)

    async def assert_context() -> None:
        link.publish(CONTEXT, b'{"batch_id": "B-2"}', retain=True)
        await until(lambda: link.messages_out == 1, 5, "context sent")

    async with _after_a_broker_crash(tmp_path, port, link, assert_context):
        await until(lambda: link.connected and link.resent == 1, 15, "reconnected, context re-published")
        await until(lambda: link.messages_out == 2, 5, "re-published context sent")
        assert _retained(port, CONTEXT) == b'{"batch_id": "B-2"}'


async def test_a_context_another_app_asserted_after_ours_is_not_overwritten(tmp_path: Path) -> None:
    port = free_port()
    link = _link(port)

    async def two_assertions() -> None:
        link.publish(CONTEXT, b'{"batch_id": "B-3"}', retain=True)
        await until(lambda: link.messages_in >= 1, 5, "our own context echoed")
        _publish_retained(port, CONTEXT, b'{"batch_id": "B-4"}')  # another plant app, newer
        await until(lambda: link.messages_in >= 2, 5, "their context seen")

    async with _after_a_broker_crash(tmp_path, port, link, two_assertions):
        await until(lambda: link.connected, 15, "reconnected")
        assert link.resent == 0
        assert _retained(port, CONTEXT) is None  # ours would be older than theirs: not re-published
