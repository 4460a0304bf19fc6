"""Loss and ordering through the embedded broker's delivery hot path (issue 20, broker/outbox.py).

The hot path delivers without a task per message, writes each connection's packets in batches and
keeps a bounded QoS 1 window per subscriber. These bursts go through the real broker process with
real clients (paho, and raw sockets where a test needs a subscriber that stops reading or drops
its connection) and fail on any lost, duplicated or reordered message (MQTT 3.1.1 §4.6: messages
of one QoS from one publisher arrive in order).
"""

from __future__ import annotations

import queue
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.observability.scrape import value
from tests.support.embedded_broker import EmbeddedBrokerEndpoint, embedded_broker
from tests.support.net import free_port

from .clients import Collector, collector
from .test_protocol_limits import Raw, packet, text

BURST = 3000  # more than broker.outbox.QOS1_WINDOW (1,000): the pending queue is used
TOPIC = "burst/t"
PER_MESSAGE_LIMIT_S = 30.0  # a limit for a stuck test, not a timing assertion


def seq(i: int) -> bytes:
    return f"{i:06d}".encode()


EXPECTED = [seq(i) for i in range(BURST)]


def received(col: Collector, count: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < count:
        try:
            message = col.messages.get(timeout=PER_MESSAGE_LIMIT_S)
        except queue.Empty:
            break
        if message.topic == TOPIC:
            out.append(message.payload)
    return out


def publish_burst(pub: Collector, qos: int, count: int = BURST) -> None:
    infos = [pub.client.publish(TOPIC, seq(i), qos=qos) for i in range(count)]
    for info in infos:
        info.wait_for_publish(PER_MESSAGE_LIMIT_S)


class RawSubscriber(Raw):
    """A subscriber that reads (and PUBACKs) only when the test says so."""

    @classmethod
    def with_small_window(cls, host: str, port: int) -> RawSubscriber:
        """A connection with a 4 KiB receive buffer set before connecting (no autotuning), so what
        the broker sends to it and it does not read piles up in the broker soon."""
        conn = cls.__new__(cls)
        conn.sock = socket.socket()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.sock.settimeout(5)
        conn.sock.connect((host, port))
        return conn

    def hello(self, client_id: str, *, clean: bool, user: tuple[str, str] | None = None) -> bytes:
        flags = (0x02 if clean else 0x00) | (0xC0 if user else 0x00)
        body = text("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + text(client_id)
        if user:
            body += text(user[0]) + text(user[1])
        self.send(packet(0x10, body))
        got = self.read_packet()
        assert got is not None and got[0] == 0x20 and got[1][1] == 0, f"no CONNACK: {got}"
        return got[1]

    def subscribe_qos1(self, topic_filter: str) -> None:
        self.send(packet(0x82, struct.pack("!H", 1) + text(topic_filter) + b"\x01"))
        got = self.read_packet()
        assert got is not None and got[0] == 0x90 and got[1][2] == 1, f"no SUBACK granting QoS 1: {got}"

    def read_publishes(self, count: int) -> list[tuple[bytes, bool]]:
        """(payload, DUP flag) of the next ``count`` PUBLISHes of TOPIC, each QoS 1 one acknowledged."""
        self.sock.settimeout(PER_MESSAGE_LIMIT_S)
        out: list[tuple[bytes, bool]] = []
        while len(out) < count:
            got = self.read_packet()
            assert got is not None, f"connection closed after {len(out)} of {count} messages"
            first, body = got
            if first >> 4 != 3:
                continue
            n = struct.unpack("!H", body[:2])[0]
            topic, rest = body[2:2 + n].decode(), body[2 + n:]
            if (first >> 1) & 0x03:
                packet_id, rest = rest[:2], rest[2:]
                self.send(packet(0x40, packet_id))
            if topic == TOPIC:
                out.append((rest, bool(first & 0x08)))
        return out


@contextmanager
def raw_subscriber(broker: EmbeddedBrokerEndpoint, client_id: str, *, clean: bool = True,
                   user: tuple[str, str] | None = None) -> Iterator[RawSubscriber]:
    conn = RawSubscriber(broker.host, broker.port)
    try:
        conn.hello(client_id, clean=clean, user=user)
        conn.subscribe_qos1(TOPIC)
        yield conn
    finally:
        conn.close()


@pytest.mark.parametrize("qos", [0, 1])
def test_a_burst_reaches_every_subscriber_whole_and_in_order(embedded: EmbeddedBrokerEndpoint, qos: int) -> None:
    """Three subscribers (two TCP, one WebSocket: the outbox's two write paths) and one publisher."""
    with collector(embedded.url) as first, collector(embedded.url) as second, \
            collector(embedded.url_for(scheme="ws")) as over_ws, collector(embedded.url) as pub:
        for sub in (first, second, over_ws):
            assert sub.subscribe(TOPIC, qos) == qos
        publish_burst(pub, qos)
        for sub in (first, second, over_ws):
            assert received(sub, BURST) == EXPECTED
        assert first.drain(0.3) == []  # and nothing more (no duplicate)


@pytest.mark.parametrize("qos", [0, 1])
def test_a_burst_sent_with_its_disconnect_in_one_write_is_routed_whole(embedded: EmbeddedBrokerEndpoint,
                                                                      qos: int) -> None:
    """Every PUBLISH read before a DISCONNECT is routed (amqtt's message loop ended at the
    DISCONNECT with the messages it had already read still queued: the burst lost its tail)."""
    publishes = b"".join(packet(0x30 | (qos << 1), text(TOPIC) + (struct.pack("!H", i + 1) if qos else b"") + seq(i))
                         for i in range(BURST))
    with collector(embedded.url) as sub:
        assert sub.subscribe(TOPIC, qos) == qos
        pub = RawSubscriber(embedded.host, embedded.port)
        try:
            pub.hello("burst-then-bye", clean=True)
            pub.send(publishes + b"\xe0\x00")  # the whole burst and DISCONNECT
            assert pub.is_closed(timeout=PER_MESSAGE_LIMIT_S)  # the broker ends the connection
        finally:
            pub.close()
        assert received(sub, BURST) == EXPECTED


def test_a_subscriber_that_stops_reading_stalls_nobody_and_loses_nothing(embedded: EmbeddedBrokerEndpoint) -> None:
    """QoS 1: the stalled subscriber's window fills (1,000 in flight, the rest pending in order);
    the others get the whole burst meanwhile; once it reads, it gets every message once, in order."""
    with raw_subscriber(embedded, "stalled") as stalled, collector(embedded.url) as fast, \
            collector(embedded.url) as pub:
        assert fast.subscribe(TOPIC, 1) == 1
        publish_burst(pub, 1)
        assert received(fast, BURST) == EXPECTED  # while "stalled" has read nothing
        got = stalled.read_publishes(BURST)
        assert [payload for payload, _ in got] == EXPECTED
        assert not any(dup for _, dup in got)
        stalled.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            stalled.read_packet()  # nothing beyond the burst


def test_a_subscriber_dropping_its_connection_mid_burst_affects_no_other(embedded: EmbeddedBrokerEndpoint) -> None:
    with raw_subscriber(embedded, "leaver") as leaver, collector(embedded.url) as stays, \
            collector(embedded.url) as pub:
        assert stays.subscribe(TOPIC, 1) == 1
        first = [pub.client.publish(TOPIC, seq(i), qos=1) for i in range(BURST // 2)]
        assert [payload for payload, _ in leaver.read_publishes(100)] == EXPECTED[:100]
        leaver.sock.shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT, mid-burst
        leaver.close()
        rest = [pub.client.publish(TOPIC, seq(i), qos=1) for i in range(BURST // 2, BURST)]
        for info in first + rest:
            info.wait_for_publish(PER_MESSAGE_LIMIT_S)
        assert received(stays, BURST) == EXPECTED
        # the broker still routes: a new subscriber gets a new message
        with collector(embedded.url) as late:
            assert late.subscribe(TOPIC, 1) == 1
            pub.publish(TOPIC, b"after", qos=1)
            assert late.wait_for(TOPIC).payload == b"after"
            assert stays.wait_for(TOPIC).payload == b"after"


def test_a_persistent_subscriber_that_drops_mid_burst_gets_the_rest_in_order_on_reconnect(
        secured: EmbeddedBrokerEndpoint) -> None:
    """MQTT 3.1.2.4 / MQTT-4.4.0-1: the unacknowledged messages are resent (DUP set) and those
    never sent are queued for the session; read in arrival order, the first copies are the whole
    burst in order. Duplicates are allowed only for messages that were in flight at the drop.
    (amqtt keeps no offline queue for anonymous clients, hence a user here.)"""
    admin = ("admin", "admin-pw")
    url = secured.url_for(*admin)
    with raw_subscriber(secured, "persistent-1", clean=False, user=admin) as sub:
        pass  # the session (and its subscription) exists now; the client is away
    with raw_subscriber(secured, "persistent-1", clean=False, user=admin) as sub, collector(url) as witness, \
            collector(url) as pub:
        assert witness.subscribe(TOPIC, 1) == 1
        infos = [pub.client.publish(TOPIC, seq(i), qos=1) for i in range(BURST)]
        before = sub.read_publishes(200)
        sub.sock.shutdown(socket.SHUT_RDWR)
        sub.close()
        for info in infos:
            info.wait_for_publish(PER_MESSAGE_LIMIT_S)
        assert received(witness, BURST) == EXPECTED  # the whole burst has been routed
    time.sleep(0.5)  # let the broker see the dropped connection before the session comes back
    conn = RawSubscriber(secured.host, secured.port)
    try:
        connack = conn.hello("persistent-1", clean=False, user=admin)
        assert connack[0] & 0x01 == 1  # session present
        after: list[tuple[bytes, bool]] = []
        seen = {payload for payload, _ in before}
        while len(seen) < BURST:
            (payload, dup), = conn.read_publishes(1)
            after.append((payload, dup))
            if payload in seen:
                assert dup, f"{payload!r} delivered twice without DUP"
            seen.add(payload)
    finally:
        conn.close()
    first_copies = list(dict.fromkeys([payload for payload, _ in before + after]))
    assert first_copies == EXPECTED


QOS0_LIMIT = 65_536  # max_queued_qos0_bytes of the broker below (its least allowed value)
PAD = b"p" * 4096  # 2,000 messages of ~4 KiB: far more than the kernel's socket buffers hold


def test_a_qos0_subscriber_that_stops_reading_is_bounded_and_every_drop_is_counted(tmp_path: Path) -> None:
    """max_queued_qos0_bytes: QoS 0 to a subscriber that stopped reading is dropped once its unsent
    backlog is over the limit, and counted (/metrics); what it was sent arrives whole and in order;
    a QoS 1 subscriber of the same messages loses nothing (QoS 1 is never dropped)."""
    count = 2000
    expected = [seq(i) + PAD for i in range(count)]
    metrics_port = free_port()
    with embedded_broker(tmp_path, websocket=False, metrics_port=metrics_port,
                         extra_config={"max_queued_qos0_bytes": QOS0_LIMIT}) as broker:
        stalled = RawSubscriber.with_small_window(broker.host, broker.port)
        try:
            stalled.hello("stalled-qos0", clean=True)
            stalled.send(packet(0x82, struct.pack("!H", 1) + text(TOPIC) + b"\x00"))  # QoS 0
            assert stalled.read_packet() == (0x90, b"\x00\x01\x00")
            with collector(broker.url) as reliable, collector(broker.url) as pub:
                assert reliable.subscribe(TOPIC, 1) == 1
                infos = [pub.client.publish(TOPIC, payload, qos=1) for payload in expected]
                for info in infos:
                    info.wait_for_publish(PER_MESSAGE_LIMIT_S)
                assert received(reliable, count) == expected  # every message routed, none lost at QoS 1
            metrics = httpx.get(f"{broker.metrics_url}/metrics", timeout=5).text
            dropped = int(value(metrics, "uns_broker_qos0_dropped_total") or 0)
            assert 0 < dropped < count
            got = [payload for payload, _ in stalled.read_publishes(count - dropped)]
            assert got[0] == expected[0]
            indexes = [expected.index(payload) for payload in got]
            assert indexes == sorted(set(indexes))  # in order, none twice
            stalled.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                stalled.read_packet()  # and exactly count - dropped of them
        finally:
            stalled.close()


def connect_with_will(client_id: str, keep_alive: int) -> bytes:
    """CONNECT, clean session, Will "gone" on will/<client id> at QoS 1."""
    body = (text("MQTT") + bytes([4, 0x02 | 0x04 | 0x08]) + struct.pack("!H", keep_alive) + text(client_id)
            + text(f"will/{client_id}") + text("gone"))
    return packet(0x10, body)


@pytest.mark.parametrize("how", ["closes", "freezes"])
def test_a_publisher_that_vanishes_mid_burst_gets_its_will_after_every_message_it_sent(
        embedded: EmbeddedBrokerEndpoint, how: str) -> None:
    """Sparkplug's NDEATH is a QoS 1 Will (tck-id-payloads-ndeath-will-message-qos; the host marks the node
    offline on it, tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline):
    a client that stops in the middle of a packet of a QoS 1 burst, by closing its socket without
    DISCONNECT or by freezing until 1.5 x its 1 s keep-alive passed, gets its Will published, after
    every message it sent whole (all acknowledged), in order."""
    client_id = f"vanisher-{how}"
    burst = b"".join(packet(0x32, text(TOPIC) + struct.pack("!H", i + 1) + seq(i)) for i in range(BURST))
    with collector(embedded.url) as sub:
        assert sub.subscribe(TOPIC, 1) == 1
        assert sub.subscribe(f"will/{client_id}", 1) == 1
        raw = Raw(embedded.host, embedded.port)
        try:
            raw.send(connect_with_will(client_id, keep_alive=1 if how == "freezes" else 60))
            assert raw.read_packet() == (0x20, b"\x00\x00")
            raw.send(burst + packet(0x32, text(TOPIC) + b"\x0f\xff" + b"never")[:7])  # and half a packet
            raw.sock.settimeout(PER_MESSAGE_LIMIT_S)
            acks = [raw.read_packet() for _ in range(BURST)]
            assert acks == [(0x40, struct.pack("!H", i + 1)) for i in range(BURST)]
            if how == "closes":
                raw.sock.shutdown(socket.SHUT_RDWR)  # gone, no DISCONNECT
            else:
                assert raw.is_closed(timeout=PER_MESSAGE_LIMIT_S)  # the broker closes it
        finally:
            raw.close()
        got = [sub.messages.get(timeout=PER_MESSAGE_LIMIT_S) for _ in range(BURST + 1)]
        assert [(m.topic, m.payload) for m in got] == [(TOPIC, p) for p in EXPECTED] + [(f"will/{client_id}", b"gone")]
        assert sub.drain(0.3) == []
