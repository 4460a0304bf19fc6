"""Protocol limits of both brokers: wildcard topic names and the maximum packet size (issue 13, item 5).

* MQTT-3.3.2-2 / MQTT-4.7.3-1: a PUBLISH topic name must not contain ``+`` or ``#``; the server
  closes the connection. amqtt dropped the message but left the socket open (its message loop
  stopped, so the client looked connected and nothing it sent went anywhere).
* ``max_packet_size_bytes`` (embedded) / ``max_packet_size`` (Mosquitto, written by ``uns init``):
  a packet over the limit closes the connection; nothing of it is delivered or retained. amqtt
  buffered and retained 5 MB messages. Under MQTT 5 (Mosquitto only: amqtt 0.12.1 refuses protocol
  level 5) the limit is advertised in CONNACK (Maximum Packet Size) and a bigger packet gets
  DISCONNECT 0x95 "Packet too large".

Raw sockets, so the exact bytes on the wire are under the test's control, against real brokers
(``uns broker run``, Mosquitto) as subprocesses.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from broker.config import DEFAULT_MAX_PACKET_SIZE
from broker.packet_limit import StreamGuard
from tests.support.embedded_broker import embedded_broker
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker

pytestmark = pytest.mark.timeout(60)

LIMIT = 1024


# ---- raw MQTT -------------------------------------------------------------------------------------------

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def text(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect_packet(client_id: str, *, v5: bool = False, will: tuple[str, bytes] | None = None) -> bytes:
    flags = 0x02 | (0x04 | 0x08 if will else 0)  # clean session; Will QoS 1
    header = text("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", 30) + (b"\x00" if v5 else b"")
    payload = text(client_id)
    if will:
        payload += (b"\x00" if v5 else b"") + text(will[0]) + struct.pack("!H", len(will[1])) + will[1]
    return packet(0x10, header + payload)


def publish_packet(topic: str, payload: bytes, *, retain: bool = False, v5: bool = False) -> bytes:
    return packet(0x30 | (0x01 if retain else 0), text(topic) + (b"\x00" if v5 else b"") + payload)


def subscribe_packet(topic_filter: str, *, v5: bool = False) -> bytes:
    return packet(0x82, struct.pack("!H", 1) + (b"\x00" if v5 else b"") + text(topic_filter) + b"\x00")


def publish_of_size(total: int, topic: str = "big/t", *, retain: bool = False) -> bytes:
    """A QoS 0 PUBLISH whose whole packet (fixed header included) is exactly ``total`` bytes."""
    for payload_len in range(total, -1, -1):
        candidate = publish_packet(topic, b"x" * payload_len, retain=retain)
        if len(candidate) == total:
            return candidate
    raise ValueError(total)


class Raw:
    """A raw MQTT connection; ``read_packet`` returns (first byte, body) or None when closed."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)

    def send(self, data: bytes) -> None:
        """Send; a broker that closes the connection in the middle (a refused 5 MB packet) is fine:
        ``is_closed`` reports it."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _read(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except (ConnectionResetError, BrokenPipeError):
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def read_packet(self) -> tuple[int, bytes] | None:
        first = self._read(1)
        if first is None:
            return None
        length, multiplier = 0, 1
        while True:
            byte = self._read(1)
            if byte is None:
                return None
            length += (byte[0] & 0x7F) * multiplier
            multiplier *= 128
            if not byte[0] & 0x80:
                break
        body = self._read(length) if length else b""
        return None if body is None else (first[0], body)

    def connect(self, client_id: str, **kwargs: object) -> bytes:
        self.send(connect_packet(client_id, **kwargs))  # type: ignore[arg-type]
        got = self.read_packet()
        assert got is not None and got[0] == 0x20, f"no CONNACK: {got}"
        assert got[1][1] == 0, f"CONNACK refused: {got[1]!r}"
        return got[1]

    def subscribe(self, topic_filter: str, **kwargs: bool) -> None:
        self.send(subscribe_packet(topic_filter, **kwargs))
        got = self.read_packet()
        assert got is not None and got[0] == 0x90, f"no SUBACK: {got}"

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True once the broker has closed the connection (any packets before that are skipped)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                got = self.read_packet()
                if got is None:
                    return True
        except TimeoutError:
            return False

    def messages(self, wait: float = 0.5) -> list[tuple[str, int]]:
        """(topic, payload size) of the PUBLISHes that arrive within ``wait`` seconds."""
        self.sock.settimeout(wait)
        out = []
        try:
            while True:
                got = self.read_packet()
                if got is None:
                    break
                first, body = got
                if first >> 4 == 3:
                    n = struct.unpack("!H", body[:2])[0]
                    out.append((body[2:2 + n].decode(), len(body) - 2 - n))
        except TimeoutError:
            pass
        return out

    def close(self) -> None:
        self.sock.close()


@contextmanager
def raw(broker: BrokerEndpoint, client_id: str, **kwargs: object) -> Iterator[Raw]:
    conn = Raw(broker.host, broker.port)
    try:
        conn.connect(client_id, **kwargs)
        yield conn
    finally:
        conn.close()


@contextmanager
def both_brokers(tmp_path: Path, limit: int | None = LIMIT) -> Iterator[list[BrokerEndpoint]]:
    extra = {"max_packet_size_bytes": limit} if limit else {}
    with embedded_broker(tmp_path / "embedded", websocket=False, extra_config=extra) as ours, \
            mosquitto_broker(tmp_path, extra_conf=f"max_packet_size {limit}" if limit else "") as mosq:
        yield [ours, mosq]


# ---- the size watcher itself (no I/O) ---------------------------------------------------------------------

def test_the_guard_measures_whole_packets_across_any_chunking() -> None:
    stream = publish_of_size(LIMIT) + publish_of_size(LIMIT + 1)
    for chunk in (1, 3, 64, len(stream)):
        guard = StreamGuard(LIMIT)
        for i in range(0, len(stream), chunk):
            if guard.feed(stream[i:i + chunk]) is not None:
                break
        assert guard.packet_size == LIMIT + 1
        assert guard.violation == f"a packet of {LIMIT + 1} bytes (max_packet_size_bytes {LIMIT})"
    # flagged from the fixed header alone: the body of a huge packet is never needed
    huge = StreamGuard(LIMIT)
    assert huge.feed(b"\x30" + varint(10_000_000)) is not None and huge.packet_size == 1 + 4 + 10_000_000
    assert StreamGuard(LIMIT).feed(b"\xc0\x00" * 100) is None  # PINGREQs: 2 bytes each
    assert StreamGuard(None).feed(publish_packet("big/t", b"x" * 100_000)) is None  # no size limit


def test_the_guard_refuses_a_remaining_length_longer_than_four_bytes() -> None:
    for chunk in (1, 6):
        guard = StreamGuard(None)  # no size limit: the length itself is malformed
        stream = b"\x30\xff\xff\xff\xff\x01"
        verdicts = [guard.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
        assert guard.violation == "a malformed remaining length (continues past its fourth byte)"
        assert verdicts[-1] == guard.violation
    # the largest legal length (four bytes, the last without the continuation bit) is fine
    assert StreamGuard(None).feed(b"\x30\xff\xff\xff\x7f") is None


def test_the_guard_sees_a_wildcard_topic_name_in_any_chunking() -> None:
    # the payload holds a whole PINGREQ-looking and wildcard-looking text: only the topic name counts
    stream = publish_packet("ok/topic", b"a/+/# \xc0\x00") + publish_packet("a/+/b", b"payload")
    for chunk in (1, 2, 5, len(stream)):
        guard = StreamGuard(LIMIT)
        verdicts = [guard.feed(stream[i:i + chunk]) for i in range(0, len(stream), chunk)]
        assert guard.violation == "a PUBLISH to topic name 'a/+/b', which has a wildcard (MQTT-3.3.2-2)"
        assert verdicts.count(None) < len(verdicts)
    subscribe = StreamGuard(LIMIT)
    assert subscribe.feed(subscribe_packet("a/+/#") + publish_packet("a/b", b"x")) is None  # filters may


# ---- wildcards in a topic name ------------------------------------------------------------------------------

@pytest.mark.parametrize("topic", ["a/+/b", "a/#", "+", ""])  # "": MQTT-4.7.3-1, checked after decoding
def test_a_publish_to_a_wildcard_topic_name_closes_the_connection(tmp_path: Path, topic: str) -> None:
    with both_brokers(tmp_path) as brokers:
        for broker in brokers:
            with raw(broker, "watcher") as watcher, raw(broker, "bad", will=("will/bad", b"gone")) as bad:
                watcher.subscribe("#")
                bad.send(publish_packet(topic, b"wild"))
                assert bad.is_closed(), f"{broker.kind}: the connection stayed open (MQTT-3.3.2-2)"
                # nothing was delivered; the Will was, as for any close without DISCONNECT
                assert watcher.messages() == [("will/bad", 4)], broker.kind


# ---- the maximum packet size ---------------------------------------------------------------------------------

def test_a_packet_over_the_limit_closes_the_connection_and_nothing_is_kept(tmp_path: Path) -> None:
    """Exactly the limit passes on both. Mosquitto 2.0.11 leaves the remaining-length bytes out of
    its count (measured: with ``max_packet_size 1024`` it accepts a 1,026-byte packet), so "over"
    here is 8 bytes over, which both close; the embedded broker's exact boundary is checked below."""
    with both_brokers(tmp_path) as brokers:
        for broker in brokers:
            with raw(broker, "watcher") as watcher, raw(broker, "sender") as sender:
                watcher.subscribe("big/#")
                sender.send(publish_of_size(LIMIT, "big/fits", retain=True))  # exactly the limit: fine
                sender.send(publish_of_size(LIMIT + 8, "big/over", retain=True))
                assert sender.is_closed(), f"{broker.kind}: a packet over the limit was accepted"
                got = watcher.messages()
                assert [t for t, _ in got] == ["big/fits"], (broker.kind, got)
            with raw(broker, "late") as late:  # only the packet that fitted was retained
                late.subscribe("big/#")
                assert [t for t, _ in late.messages()] == ["big/fits"], broker.kind


def test_the_embedded_limit_counts_the_whole_packet(tmp_path: Path) -> None:
    with embedded_broker(tmp_path, websocket=False, extra_config={"max_packet_size_bytes": LIMIT}) as broker:
        with raw(broker, "sender") as sender:
            sender.send(publish_of_size(LIMIT))
            sender.send(b"\xc0\x00")  # PINGREQ: the connection is still there after the packet that fits
            got = sender.read_packet()
            assert got == (0xD0, b""), got
            sender.send(publish_of_size(LIMIT + 1))
            assert sender.is_closed()
    log = broker.log_path.read_text() if broker.log_path else ""
    assert f"sent a packet of {LIMIT + 1} bytes (max_packet_size_bytes {LIMIT}): closing it" in log


def test_an_oversized_connect_is_closed_before_its_body_is_read(tmp_path: Path) -> None:
    with both_brokers(tmp_path) as brokers:
        for broker in brokers:
            conn = Raw(broker.host, broker.port)
            try:
                conn.send(b"\x10" + varint(50_000_000))  # a CONNECT announcing 50 MB, body never sent
                assert conn.is_closed(), broker.kind
            finally:
                conn.close()


def test_a_remaining_length_past_four_bytes_closes_the_connection(tmp_path: Path) -> None:
    """MQTT 3.1.1 §2.2.3 allows at most four length bytes: a fifth makes the packet malformed."""
    with both_brokers(tmp_path) as brokers:
        for broker in brokers:
            with raw(broker, "sender") as sender:
                sender.send(b"\x30\xff\xff\xff\xff\x01")
                assert sender.is_closed(), broker.kind


def test_the_default_limit_refuses_the_5_mb_message_of_the_issue(tmp_path: Path) -> None:
    with embedded_broker(tmp_path, websocket=False) as broker, raw(broker, "watcher") as watcher, \
            raw(broker, "sender") as sender:
        watcher.subscribe("big/#")
        sender.send(publish_packet("big/five-mb", b"x" * (5 * 1024 * 1024), retain=True))
        assert sender.is_closed()
        assert watcher.messages() == []
    log = broker.log_path.read_text() if broker.log_path else ""
    assert f"bytes (max_packet_size_bytes {DEFAULT_MAX_PACKET_SIZE}): closing it" in log


def test_mqtt5_gets_the_limit_in_connack_and_disconnect_0x95(tmp_path: Path) -> None:
    """MQTT 5 on Mosquitto (amqtt 0.12.1 has no MQTT 5): Maximum Packet Size (0x27) in CONNACK,
    and DISCONNECT with reason 0x95 for a bigger packet."""
    with mosquitto_broker(tmp_path, extra_conf=f"max_packet_size {LIMIT}") as mosq:
        conn = Raw(mosq.host, mosq.port)
        try:
            connack = conn.connect("v5", v5=True)
            assert b"\x27" + struct.pack("!I", LIMIT) in connack[2:], connack
            conn.send(publish_packet("big/over", b"x" * LIMIT, v5=True))
            got = conn.read_packet()
            assert got is not None and got[0] == 0xE0 and got[1][0] == 0x95, got
            assert conn.is_closed()
        finally:
            conn.close()


def test_uns_init_gives_both_brokers_the_same_limit(tmp_path: Path) -> None:
    from unshub.cli.stack import Profile, write_stack_config  # the generator behind `uns init`

    write_stack_config(tmp_path, Profile.LOCAL)
    broker_yaml = yaml.safe_load((tmp_path / "broker.yaml").read_text())
    mosquitto_conf = (tmp_path / "mosquitto.conf").read_text().splitlines()
    assert broker_yaml["max_packet_size_bytes"] == DEFAULT_MAX_PACKET_SIZE == 4 * 1024 * 1024
    assert f"max_packet_size {DEFAULT_MAX_PACKET_SIZE}" in mosquitto_conf
