"""uns.mqtt_wire's rules without I/O: bytes in, bytes and events out, and whose fault each error is.

That the packets are right for real brokers is shown by tests/host/test_mirror_wire.py (Mosquitto
3.1.1 and 5, the embedded broker); here are the cases a healthy broker never produces."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from uns.mqtt_wire import (
    ConnAck,
    ConnectRefusedError,
    MqttLocalProtocolError,
    MqttRemoteProtocolError,
    PingResp,
    PubAcks,
    PublisherConnection,
    ServerDisconnect,
    State,
    encode_connect,
)


@dataclass
class Msg:
    topic: str
    payload: bytes


def _connected(protocol: str = "3.1.1") -> PublisherConnection:
    conn = PublisherConnection(protocol)
    conn.connect("c1")
    connack = b"\x20\x02\x00\x00" if protocol == "3.1.1" else b"\x20\x03\x00\x00\x00"
    assert conn.receive_data(connack) == [ConnAck(False)]
    assert conn.state is State.CONNECTED
    return conn


def test_connect_packet_carries_clean_session_keepalive_and_credentials() -> None:
    assert encode_connect("ab", keepalive_s=30) == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02ab"
    assert encode_connect("ab", keepalive_s=5, username="u", password="p", protocol="5") == (
        b"\x10\x15\x00\x04MQTT\x05\xc2\x00\x05\x00\x00\x02ab\x00\x01u\x00\x01p")
    with pytest.raises(MqttLocalProtocolError, match="user name to send a password"):
        encode_connect("ab", password="p")


def test_publish_batch_encodes_qos1_retained_packets_with_ids_in_order_and_a_fence() -> None:
    conn = _connected()
    data, last = conn.publish_batch([Msg("a/b", b"1"), Msg("a/b", b"2")], 1)
    assert data == b"\x33\x08\x00\x03a/b\x00\x011" + b"\x33\x08\x00\x03a/b\x00\x022"
    assert last == 2 and list(conn.in_flight) == [1, 2]
    data, last = conn.publish_batch([Msg("x", b"v"), Msg("x", b"w")], 0, last_qos=1)  # QoS 0 + a QoS 1 fence
    assert data == b"\x31\x04\x00\x01xv" + b"\x33\x06\x00\x01x\x00\x03w"
    assert last == 3 and list(conn.in_flight) == [1, 2, 3]
    v5 = _connected("5")
    data, _ = v5.publish_batch([Msg("x", b"v")], 1)
    assert data == b"\x33\x07\x00\x01x\x00\x01\x00v"  # property length 0


def test_pubacks_split_across_reads_are_grouped_and_leave_nothing_in_flight() -> None:
    conn = _connected()
    conn.publish_batch([Msg("t", b"%d" % i) for i in range(3)], 1)
    assert conn.receive_data(b"\x40\x02\x00\x01\x40") == [PubAcks([1])]
    assert conn.receive_data(b"\x02\x00") == []
    assert conn.receive_data(b"\x02\x40\x02\x00\x03\xd0\x00") == [PubAcks([2, 3]), PingResp()]
    assert conn.in_flight == {}


def test_a_puback_for_an_id_not_in_flight_is_the_brokers_fault_and_ends_in_error() -> None:
    conn = _connected()
    with pytest.raises(MqttRemoteProtocolError, match="packet id 7, which is not in flight"):
        conn.receive_data(b"\x40\x02\x00\x07")
    assert conn.state is State.ERROR
    with pytest.raises(MqttLocalProtocolError, match="state error"):
        conn.receive_data(b"\x40\x02\x00\x01")


def test_a_packet_a_publisher_never_subscribed_for_is_the_brokers_fault() -> None:
    conn = _connected()
    with pytest.raises(MqttRemoteProtocolError, match="packet of type 3"):
        conn.receive_data(b"\x30\x04\x00\x01xv")


def test_publishing_beyond_the_window_or_before_connack_is_our_fault() -> None:
    early = PublisherConnection()
    early.connect("c")
    with pytest.raises(MqttLocalProtocolError, match="wait for the CONNACK"):
        early.publish_batch([Msg("t", b"1")], 1)
    conn = PublisherConnection("5")
    conn.connect("c")
    # CONNACK properties: Topic Alias Maximum 10 (skipped), Receive Maximum 2
    assert conn.receive_data(b"\x20\x09\x00\x00\x06\x22\x00\x0a\x21\x00\x02") == [ConnAck(False, 2)]
    conn.publish_batch([Msg("t", b"1")], 1)
    assert conn.room == 1
    with pytest.raises(MqttLocalProtocolError, match="2 QoS 1 messages but room for 1"):
        conn.publish_batch([Msg("t", b"2"), Msg("t", b"3")], 1)
    with pytest.raises(MqttLocalProtocolError, match="not a topic name"):
        _connected().publish_batch([Msg("a/+", b"1")], 1)


@pytest.mark.parametrize(("protocol", "connack", "message"), [
    ("3.1.1", b"\x20\x02\x00\x04", "refused: bad user name or password (CONNACK code 0x04)"),
    ("3.1.1", b"\x20\x02\x00\x05", "refused: not authorised (CONNACK code 0x05)"),
    ("5", b"\x20\x03\x00\x86\x00", "refused: bad user name or password (CONNACK code 0x86)"),
])
def test_a_refused_connect_names_the_brokers_reason(protocol: str, connack: bytes, message: str) -> None:
    conn = PublisherConnection(protocol)
    conn.connect("c")
    with pytest.raises(ConnectRefusedError) as refused:
        conn.receive_data(connack)
    assert str(refused.value) == message
    assert conn.state is State.CLOSED


def test_packet_ids_wrap_after_65535_and_skip_zero() -> None:
    conn = _connected()
    conn._next_id = 65535
    _, last = conn.publish_batch([Msg("t", b"1")], 1)
    _, after = conn.publish_batch([Msg("t", b"2")], 1)
    assert (last, after) == (65535, 1)
    assert conn.receive_data(b"\x40\x02\xff\xff\x40\x02\x00\x01") == [PubAcks([65535, 1])]


def test_mqtt5_server_disconnect_and_refused_publish_are_reported() -> None:
    conn = _connected("5")
    conn.publish_batch([Msg("t", b"1")], 1)
    assert conn.receive_data(b"\x40\x04\x00\x01\x87\x00") == [PubAcks([1], [(1, 0x87)])]
    assert conn.receive_data(b"\xe0\x01\x8b") == [ServerDisconnect(0x8B)]
    assert conn.state is State.CLOSED
