"""The mirror's own MQTT wire publisher (issue 20) against real brokers: bursts arrive whole and in
order, a broker killed mid-burst loses nothing the publisher accepted, a wrong password is a clear
error. The protocol rules themselves (no I/O) are in tests/uns/test_mqtt_wire.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mes_adapter.host.mirror import UnsMirror
from mes_adapter.host.mirror_publisher import MirrorPublisher
from mes_adapter.host.mirror_wire import WireLink
from tests.support.embedded_broker import User, embedded_broker
from tests.support.mosquitto import mosquitto_broker
from tests.support.mqtt_faults import until
from tests.support.net import free_port
from tests.support.sniffer import Sniffer
from uns.mqtt_session import ErrorClass, classify
from uns.mqtt_url import parse_broker_url
from uns.mqtt_wire import ConnAck, PubAcks
from uns.mqtt_wire_aio import open_publisher

TOPICS = 20
PER_TOPIC = 500


class _Recorder:
    """A PublisherListener that remembers what the broker said."""

    def __init__(self) -> None:
        self.connack: ConnAck | None = None
        self.acked: list[int] = []
        self.lost: str | None = None
        self.up = asyncio.Event()
        self.down = asyncio.Event()

    def on_connack(self, connack: ConnAck) -> None:
        self.connack = connack
        self.up.set()

    def on_acks(self, acks: PubAcks) -> None:
        assert not acks.refused
        self.acked.extend(acks.packet_ids)

    def on_lost(self, why: str) -> None:
        self.lost = why
        self.down.set()


class _Msg:
    __slots__ = ("topic", "payload")

    def __init__(self, topic: str, payload: bytes) -> None:
        self.topic, self.payload = topic, payload


def _burst() -> list[_Msg]:
    """TOPICS × PER_TOPIC messages, interleaved across topics: value i of every topic, then i + 1."""
    return [_Msg(f"burst/t{t:02d}", json.dumps({"value": i}).encode()) for i in range(PER_TOPIC) for t in range(TOPICS)]


def _per_topic(sniffer: Sniffer, prefix: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in sniffer.snapshot(lambda m: m.topic.startswith(prefix)):
        out.setdefault(m.topic, []).append(json.loads(m.payload)["value"])
    return out


@pytest.mark.mosquitto
@pytest.mark.parametrize(("broker_kind", "protocol"), [("mosquitto", "3.1.1"), ("mosquitto", "5"),
                                                        ("embedded", "3.1.1")])  # amqtt speaks 3.1.1 only
async def test_a_burst_of_retained_qos1_messages_arrives_whole_and_in_order_per_topic(
        tmp_path: Path, broker_kind: str, protocol: str) -> None:
    """10,000 QoS 1 retained PUBLISHes written in batches of 250 (one socket write each) on one
    connection: the subscriber gets every one, per topic in the order sent, every PUBACK comes
    back, and a late subscriber finds each topic's last value retained."""
    if broker_kind == "mosquitto":
        context = mosquitto_broker(tmp_path)
    else:
        context = embedded_broker(tmp_path, websocket=False)
    with context as broker, Sniffer(broker.host, broker.port, ("burst/#",), mqtt5=False) as sniffer:
        recorder = _Recorder()
        proto = await open_publisher(parse_broker_url(broker.url), f"burst-{protocol}", recorder, protocol=protocol)
        await asyncio.wait_for(recorder.up.wait(), 10)
        messages = _burst()
        sent: list[int] = []
        for start in range(0, len(messages), 250):
            while proto.conn.room < 250:  # noqa: ASYNC110 - the window paces the writer
                await asyncio.sleep(0.01)
            data, last = proto.conn.publish_batch(messages[start:start + 250], 1)
            proto.write(data)
            sent.append(last)
            await asyncio.sleep(0)
        await until(lambda: len(recorder.acked) == len(messages), 30, "every PUBACK")
        assert recorder.acked == list(range(1, len(messages) + 1))  # ids in order, each once
        assert proto.conn.in_flight == {}
        sniffer.wait_for(lambda m: m.topic.startswith("burst/"), count=len(messages), timeout=30)
        assert _per_topic(sniffer, "burst/") == {f"burst/t{t:02d}": list(range(PER_TOPIC)) for t in range(TOPICS)}
        proto.end("test done")
        assert recorder.lost == "test done"
        with Sniffer(broker.host, broker.port, ("burst/#",), mqtt5=False) as late:
            late.wait_for(lambda m: m.retain, count=TOPICS)
            assert {m.topic: json.loads(m.payload)["value"] for m in late.snapshot()} == \
                {f"burst/t{t:02d}": PER_TOPIC - 1 for t in range(TOPICS)}


def _publisher(url: str, **kwargs: object) -> MirrorPublisher:
    settings: dict[str, object] = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.3, "window": 512}
    settings.update(kwargs)
    return MirrorPublisher(UnsMirror(interval_ms=0), parse_broker_url(url), "wire-mirror", **settings)  # type: ignore[arg-type]


@pytest.mark.mosquitto
async def test_broker_killed_mid_burst_loses_nothing_the_mirror_accepted_and_never_reorders(tmp_path: Path) -> None:
    """Mosquitto (persistence off) is killed while 200 topics × 60 values stream through the mirror
    and started again on the same port. Before the kill every topic's values arrive in increasing
    order; after it, unconfirmed batches are put back (latest per topic) and every topic is
    published again: the new broker retains exactly the last value offered for every topic, and
    each topic's values on the new broker still only go up."""
    port = free_port()
    topics = [f"kill/t{t:03d}" for t in range(200)]
    publisher = _publisher(f"mqtt://127.0.0.1:{port}")
    mirror = publisher.mirror
    task: asyncio.Task[None] | None = None
    with mosquitto_broker(tmp_path, port=port) as broker, \
            Sniffer(broker.host, broker.port, ("kill/#",), mqtt5=False) as before:
        task = asyncio.create_task(publisher.run())
        await until(lambda: publisher.connected, 10, "the mirror connected")
        assert isinstance(publisher._link, WireLink)
        value = 0
        for value in range(30):
            for i, topic in enumerate(topics):
                mirror._queue(topic, json.dumps({"value": value}).encode(), i, i)
            publisher.wake()
            await asyncio.sleep(0.002)
        os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
        seen_before = _per_topic(before, "kill/")
    assert task is not None
    try:
        for value in range(30, 60):  # values keep coming while the broker is down
            for i, topic in enumerate(topics):
                mirror._queue(topic, json.dumps({"value": value}).encode(), i, i)
            publisher.wake()
            await asyncio.sleep(0.002)
        again = tmp_path / "again"
        again.mkdir()
        with mosquitto_broker(again, port=port) as restarted, \
                Sniffer(restarted.host, restarted.port, ("kill/#",), mqtt5=False) as after:
            await until(lambda: publisher.connections >= 2 and mirror.pending == 0 and publisher.unconfirmed == 0,
                        30, "the mirror reconnected and confirmed everything")
            assert publisher.reconnects >= 1
            after.wait_for(lambda m: json.loads(m.payload)["value"] == 59, count=len(topics), timeout=20)
            with Sniffer(restarted.host, restarted.port, ("kill/#",), mqtt5=False) as late:
                late.wait_for(lambda m: m.retain, count=len(topics))
                assert {m.topic: json.loads(m.payload)["value"] for m in late.snapshot()} == \
                    {topic: 59 for topic in topics}
            seen_after = _per_topic(after, "kill/")
    finally:
        await publisher.close(task, flush_s=0.5)
    for topic, values in [*seen_before.items(), *seen_after.items()]:
        assert values == sorted(values), f"{topic} went backwards: {values}"
    assert set(seen_after) == set(topics)


@pytest.mark.mosquitto
async def test_a_wrong_password_is_a_clear_not_authorised_error_and_loses_nothing(tmp_path: Path) -> None:
    """Mosquitto with a password file refuses the mirror's CONNECT: the attempt ends with the
    broker's reason (classified *not authorised*, which the reconnect policy logs as an error that
    names the credentials), the values wait in the mirror, and the right password delivers them."""
    users = tmp_path / "passwd"
    users.write_text("")
    await asyncio.to_thread(subprocess.run, ["mosquitto_passwd", "-b", str(users), "mirror", "right"], check=True,
                            capture_output=True)
    # as root, Mosquitto would switch to its own user, which cannot read the test's private tmp dir
    with mosquitto_broker(tmp_path, extra_conf=f"password_file {users}\nuser root\n") as broker:
        recorder = _Recorder()
        await open_publisher(parse_broker_url(f"mqtt://mirror:wrong@{broker.host}:{broker.port}"), "bad", recorder)
        await asyncio.wait_for(recorder.down.wait(), 10)
        assert recorder.connack is None
        assert recorder.lost == "refused: not authorised (CONNACK code 0x05)"
        assert classify(recorder.lost) is ErrorClass.NOT_AUTHORISED

        bad = _publisher(f"mqtt://mirror:wrong@{broker.host}:{broker.port}")
        bad.mirror._queue("pw/speed", b'{"value": 7}', 1, 1)
        task = asyncio.create_task(bad.run())
        try:
            await until(lambda: bad.connect_failures >= 2, 10, "two refused CONNECTs")
            assert not bad.connected and bad.connections == 0 and bad.mirror.pending == 1
        finally:
            await bad.close(task, flush_s=0.1)
        good = _publisher(f"mqtt://mirror:right@{broker.host}:{broker.port}")
        good.mirror._queue("pw/speed", b'{"value": 7}', 1, 1)
        task = asyncio.create_task(good.run())
        try:
            await until(lambda: good.connected, 10, "connected with the right password")
            assert await good.flush(10)
            assert good.published == 1 and good.connect_failures == 0
        finally:
            await good.close(task, flush_s=0.5)


async def test_credentials_and_tls_reach_the_embedded_broker(tmp_path: Path) -> None:
    """mqtts:// with a CA file and a user: the wire publisher connects over TLS and delivers."""
    with embedded_broker(tmp_path, users={"m": User("pw")}, demo_anonymous="off", tls=True,
                         websocket=False) as broker:
        publisher = _publisher(broker.url_for("m", "pw", scheme="mqtts"))
        publisher.mirror._queue("tls/speed", b'{"value": 3}', 1, 1)
        task = asyncio.create_task(publisher.run())
        try:
            await until(lambda: publisher.connected, 15, "connected over TLS")
            assert await publisher.flush(15)
            assert publisher.published == 1 and publisher.connections == 1
        finally:
            await publisher.close(task, flush_s=0.5)
        with Sniffer(broker.host, broker.port, ("tls/#",), mqtt5=False, username="m", password="pw") as late:
            assert [(m.payload, m.retain) for m in late.wait_topic("tls/speed")] == [(b'{"value": 3}', True)]


async def test_websocket_urls_keep_the_paho_link_and_deliver(tmp_path: Path) -> None:
    """The wire publisher speaks TCP/TLS only: a ws:// broker URL still goes through paho."""
    from mes_adapter.host.mirror_publisher import _Link

    with embedded_broker(tmp_path) as broker:
        publisher = _publisher(broker.url_for(scheme="ws"))
        publisher.mirror._queue("ws/speed", b'{"value": 4}', 1, 1)
        task = asyncio.create_task(publisher.run())
        try:
            await until(lambda: publisher.connected, 15, "connected over WebSocket")
            assert type(publisher._link) is _Link
            assert await publisher.flush(15)
            assert publisher.published == 1
        finally:
            await publisher.close(task, flush_s=0.5)
        with Sniffer(broker.host, broker.port, ("ws/#",), mqtt5=False) as late:
            assert [(m.payload, m.retain) for m in late.wait_topic("ws/speed")] == [(b'{"value": 4}', True)]
