"""The mirror's own connection: it survives being cut, loses no latest value and never reorders."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import paho.mqtt.client as paho
import pytest

from mes_adapter.host.mirror import MirrorMessage, UnsMirror
from mes_adapter.host.mirror_publisher import MirrorPublisher
from tests.host.conftest import LINE, latest_json, running_host, wait_for
from tests.host.edge import CELL, EDGE, GROUP, PahoEdge
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.mqtt_faults import MuteListener, until
from tests.support.net import free_port
from tests.support.sniffer import Sniffer
from uns.mqtt_url import parse_broker_url

SPEED = f"{LINE}/filler/Speed"


def test_restore_never_puts_an_older_value_over_a_newer_pending_one() -> None:
    mirror = UnsMirror(interval_ms=0)
    mirror._queue("a", b"new-a", 5, 5)  # a newer value already waiting
    restored = mirror.restore([MirrorMessage("a", b"old-a", 1), MirrorMessage("b", b"b1", 1),
                               MirrorMessage("b", b"b2", 2)])
    assert restored == 1
    assert {m.topic: m.payload for m in mirror.take(10)} == {"a": b"new-a", "b": b"b2"}


def _speeds(sniffer: Sniffer) -> list[float]:
    return [json.loads(m.payload)["value"] for m in sniffer.snapshot(lambda m: m.topic == SPEED)]


async def _stream(edge: PahoEdge, values: range, pause: float = 0.002) -> None:
    for i in values:
        edge.send(edge.script.ddata({"Speed": float(i)}))
        await asyncio.sleep(pause)


@pytest.mark.mosquitto
@pytest.mark.parametrize("qos", [1, 0])
async def test_mirror_connection_cut_loses_no_latest_value_and_never_reorders(
        mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge, qos: int) -> None:
    """Another client takes over the mirror's client id (the broker drops the mirror connection)
    while values stream; the Sparkplug session is untouched. The last value arrives, in order."""
    async with running_host(mosquitto, mirror_qos=qos, conflation_interval_ms=20) as host:
        edge.send(edge.script.nbirth())
        edge.send(edge.script.dbirth())
        await wait_for(sniffer, lambda m: m.topic == SPEED)
        streaming = asyncio.create_task(_stream(edge, range(1, 400)))
        await asyncio.sleep(0.2)
        intruder = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=host.config.mirror_client_id)
        intruder.connect(mosquitto.host, mosquitto.port)
        intruder.loop_start()
        await asyncio.sleep(0.3)  # values change while the mirror is cut
        intruder.disconnect()
        intruder.loop_stop()
        await streaming
        await wait_for(sniffer, lambda m: m.topic == SPEED and json.loads(m.payload)["value"] == 399.0, timeout=15)
        assert host.stats.extra["mirror_reconnects"] >= 1
        assert host.online and host.stats.reconnects == 0  # the Sparkplug session never noticed
    speeds = [v for v in _speeds(sniffer) if v != 120.5]  # the birth value first
    assert speeds == sorted(speeds), "a mirror value went backwards"
    assert speeds[-1] == 399.0  # the clean stop's STALE keeps the last value


@pytest.mark.mosquitto
async def test_mirror_comes_back_after_a_broker_restart(tmp_path) -> None:
    """Mosquitto restarts (no persistence): the STALE values of the lost session reach the new
    broker over the mirror's new connection, with every ``_meta`` again (the new broker retains
    nothing and the edge has not re-born yet), then the re-born values replace them."""
    port = free_port()
    with mosquitto_broker(tmp_path, port=port) as broker, Sniffer(broker.host, broker.port) as sniffer:
        async with running_host(broker, reconnect_min_s=0.2, reconnect_max_s=0.5, stale_on_shutdown=False) as host:
            with PahoEdge(broker.host, broker.port) as e:
                e.send(e.script.nbirth())
                e.send(e.script.dbirth())
                await wait_for(sniffer, lambda m: m.topic == SPEED)
            os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
            again = tmp_path / "again"
            again.mkdir()
            with mosquitto_broker(again, port=port) as restarted, Sniffer(restarted.host, restarted.port) as late:
                await wait_for(late, lambda m: m.topic == SPEED and json.loads(m.payload)["quality"] == "STALE",
                               timeout=20)
                await wait_for(late, lambda m: m.topic == f"{SPEED}/_meta")
                assert host.stats.extra["mirror_resent"] >= 2  # at least Speed and its _meta
                await host.wait_online(15)
                with PahoEdge(restarted.host, restarted.port) as e2:
                    e2.send(e2.script.nbirth())
                    e2.send(e2.script.dbirth())
                    e2.send(e2.script.ddata({"Speed": 55.5}))
                    await wait_for(late, lambda m: m.topic == SPEED and json.loads(m.payload)["value"] == 55.5)
                assert latest_json(late, SPEED)["quality"] == "GOOD"
                assert host.stats.extra["mirror_reconnects"] >= 1
                assert host.model.metric(GROUP, EDGE, CELL, "Speed").value == 55.5  # type: ignore[union-attr]


def test_resend_retained_queues_the_last_message_of_every_topic_unless_a_newer_one_waits() -> None:
    mirror = UnsMirror(interval_ms=0)
    mirror._queue("a", b"a1", 1, 1)
    mirror._queue("b", b"b1", 1, 1)
    assert [m.topic for m in mirror.take(2)] == ["a", "b"]
    mirror._queue("b", b"b2", 3, 3)  # newer, not sent yet
    assert mirror.resend_retained() == 1
    assert {m.topic: m.payload for m in mirror.take(10)} == {"a": b"a1", "b": b"b2"}
    assert mirror.resend_retained() == 2  # the last taken per topic: a1, b2
    assert {m.topic: m.payload for m in mirror.take(20)} == {"a": b"a1", "b": b"b2"}


# -- connection attempts that fail: the publisher keeps trying until a broker answers (issue 12) --


def _publisher(port: int, **kwargs: object) -> MirrorPublisher:
    mirror = UnsMirror(interval_ms=0)
    settings: dict[str, object] = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.4}
    settings.update(kwargs)
    return MirrorPublisher(mirror, parse_broker_url(f"mqtt://127.0.0.1:{port}"), "mirror-under-test",
                           **settings)  # type: ignore[arg-type]


async def _stop(publisher: MirrorPublisher, task: asyncio.Task[None]) -> None:
    await publisher.close(task, flush_s=0.5)


@pytest.mark.mosquitto
async def test_refused_connects_are_retried_until_a_broker_listens_there(tmp_path) -> None:
    """Nothing listens on the port (every TCP connect is refused: paho's on_connect_fail, after
    which its thread ends silently). The publisher counts the failures, keeps trying, and once a
    broker starts on that port it connects and publishes what waited, retained."""
    port = free_port()
    publisher = _publisher(port)
    publisher.mirror._queue(SPEED, b'{"value": 1}', 1, 1)
    task = asyncio.create_task(publisher.run())
    try:
        await until(lambda: publisher.connect_failures >= 3, 10, "three refused connects")
        assert not publisher.connected and publisher.published == 0
        with mosquitto_broker(tmp_path, port=port) as broker:
            await until(lambda: publisher.connected and publisher.published == 1, 15, "connected and published")
            with Sniffer(broker.host, broker.port, (f"{LINE}/#",)) as sniffer:
                retained = await wait_for(sniffer, lambda m: m.topic == SPEED)
            assert retained[0].payload == b'{"value": 1}' and retained[0].retain
            assert publisher.connections == 1
    finally:
        await _stop(publisher, task)


@pytest.mark.mosquitto
@pytest.mark.parametrize("close_after_read", [False, True], ids=["never-answers", "reset-during-connect"])
async def test_a_broker_that_never_sends_connack_is_given_up_and_retried(tmp_path, close_after_read: bool) -> None:
    """The TCP connect succeeds but no CONNACK ever comes (a broker hung, or killed during the
    handshake): each attempt ends (by the connect timeout, or by the reset) and the next one
    follows; when a real broker takes the port the mirror connects."""
    port = free_port()
    publisher = _publisher(port, connect_timeout_s=0.5)
    publisher.mirror._queue(SPEED, b'{"value": 2}', 1, 1)
    task = asyncio.create_task(publisher.run())
    try:
        async with MuteListener(port, close_after_read=close_after_read) as mute:
            await until(lambda: publisher.connect_failures >= 2 and mute.accepted >= 2, 15, "two failed handshakes")
            assert not publisher.connected
        with mosquitto_broker(tmp_path, port=port) as broker:
            await until(lambda: publisher.connected and publisher.published == 1, 15, "connected and published")
            with Sniffer(broker.host, broker.port, (f"{LINE}/#",)) as sniffer:
                retained = await wait_for(sniffer, lambda m: m.topic == SPEED)
            assert retained[0].payload == b'{"value": 2}'
    finally:
        await _stop(publisher, task)


@pytest.mark.mosquitto
async def test_a_broker_down_longer_than_the_backoff_is_reconnected_with_every_retained_topic(tmp_path) -> None:
    """The broker (no persistence) is killed and stays down through several failed attempts; the
    restarted broker gets every retained topic again on the new connection."""
    port = free_port()
    publisher = _publisher(port)
    for i, topic in enumerate((SPEED, f"{SPEED}/_meta", f"{LINE}/filler/Count")):
        publisher.mirror._queue(topic, f'{{"v": {i}}}'.encode(), 1, 1)
    task = asyncio.create_task(publisher.run())
    try:
        with mosquitto_broker(tmp_path, port=port) as broker:
            await until(lambda: publisher.published == 3, 15, "three topics published")
            os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
            await until(lambda: publisher.connect_failures >= 3, 15, "three failed reconnects")
        again = tmp_path / "again"
        again.mkdir()
        with mosquitto_broker(again, port=port) as restarted:
            await until(lambda: publisher.connected and publisher.published == 6, 15, "retained topics sent again")
            with Sniffer(restarted.host, restarted.port, (f"{LINE}/#",)) as sniffer:
                await wait_for(sniffer, lambda m: m.retain, count=3)
                got = {m.topic: m.payload for m in sniffer.snapshot(lambda m: m.retain)}
        assert got == {SPEED: b'{"v": 0}', f"{SPEED}/_meta": b'{"v": 1}', f"{LINE}/filler/Count": b'{"v": 2}'}
        assert publisher.resent == 3 and publisher.connections == 2
    finally:
        await _stop(publisher, task)


@pytest.mark.mosquitto
async def test_a_hung_broker_ends_the_connection_by_keep_alive_and_is_reconnected_when_it_answers(tmp_path) -> None:
    """The broker process is frozen (SIGSTOP): the TCP connection stays open and nothing answers.
    The keep-alive ends the connection; new attempts get a TCP connection (the kernel still
    accepts) but no CONNACK, so each ends by the connect timeout. Resumed (SIGCONT), the broker
    answers the next attempt and the value that waited is published."""
    port = free_port()
    publisher = _publisher(port, keepalive_s=1, connect_timeout_s=1.0)
    publisher.mirror._queue(SPEED, b'{"value": 3}', 1, 1)
    task = asyncio.create_task(publisher.run())
    try:
        with mosquitto_broker(tmp_path, port=port) as broker:
            assert broker.pid is not None
            await until(lambda: publisher.published == 1, 15, "first value published")
            os.kill(broker.pid, signal.SIGSTOP)  # the broker we started, by PID
            try:
                await until(lambda: not publisher.connected, 15, "keep-alive ends the connection")
                await until(lambda: publisher.connect_failures >= 2, 15, "attempts without CONNACK")
                publisher.mirror._queue(SPEED, b'{"value": 4}', 2, 2)
                publisher.wake()
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            await until(lambda: publisher.connected and publisher.published >= 2, 20, "reconnected and published")
            with Sniffer(broker.host, broker.port, (f"{LINE}/#",)) as sniffer:
                retained = await wait_for(sniffer, lambda m: m.topic == SPEED)
            assert retained[0].payload == b'{"value": 4}'
    finally:
        await _stop(publisher, task)
