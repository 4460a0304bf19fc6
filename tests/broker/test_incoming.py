"""broker/incoming.py, the pure part of the broker's own reader loop (issue 20): packets cut from
the byte stream whatever the read boundaries, the protocol limits, PUBLISH fields.

The same bytes are checked against amqtt's own encoder, so a packet our splitter and parser accept
is the packet amqtt would have decoded."""

from __future__ import annotations

import random

import pytest
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket

from broker.incoming import MalformedPacketError, PacketSplitter, Publish, parse_publish, puback
from broker.packet_limit import StreamGuard

from .test_protocol_limits import packet, text

PUBLISHES = [bytes(PublishPacket.build(f"plant/ä/{i}", b"v" * (i * 37 % 300), i + 1 if i % 3 else None,
                                       i % 5 == 1 and i % 3 != 0, i % 3, i % 4 == 0).to_bytes())
             for i in range(200)]
PACKETS = [*PUBLISHES, b"\x40\x02\x00\x07", b"\xc0\x00", b"\xe0\x00"]  # + PUBACK, PINGREQ, DISCONNECT
STREAM = b"".join(PACKETS)


def cut(stream: bytes, sizes: random.Random) -> list[bytes]:
    chunks, i = [], 0
    while i < len(stream):
        n = sizes.choice((1, 2, 3, 7, 64, 500, 4096))
        chunks.append(stream[i:i + n])
        i += n
    return chunks


@pytest.mark.parametrize("seed", range(5))
def test_any_read_boundaries_give_the_same_packets_in_order(seed: int) -> None:
    splitter = PacketSplitter(None)
    got = [p for chunk in cut(STREAM, random.Random(seed)) for p in splitter.feed(chunk)]
    assert got == [(p[0], _body(p)) for p in PACKETS]
    assert splitter.violation is None


def test_a_large_packet_read_in_many_pieces_comes_out_whole() -> None:
    big = bytes(PublishPacket.build("big/t", bytes(range(256)) * 800, 7, False, 1, False).to_bytes())
    stream = PUBLISHES[0] + big + PUBLISHES[1]
    splitter = PacketSplitter(None)
    got = [p for i in range(0, len(stream), 1000) for p in splitter.feed(stream[i:i + 1000])]
    assert got == [(p[0], _body(p)) for p in (PUBLISHES[0], big, PUBLISHES[1])]


def _body(whole: bytes) -> bytes:
    i = 1
    while whole[i] & 0x80:
        i += 1
    return whole[i + 1:]


def test_publish_fields_match_amqtt_s_encoding() -> None:
    for i, whole in enumerate(PUBLISHES):
        qos = i % 3
        fields = parse_publish(whole[0], _body(whole))
        assert fields == Publish(f"plant/ä/{i}", i + 1 if qos else None, b"v" * (i * 37 % 300), qos,
                                 i % 4 == 0, i % 5 == 1 and qos != 0)
    assert puback(0x1234) == bytes(PubackPacket.build(0x1234).to_bytes())


def test_a_packet_over_the_limit_is_refused_from_its_header_and_those_before_it_are_kept() -> None:
    """The same limit and words as broker.packet_limit.StreamGuard (amqtt's path)."""
    small = packet(0x30, text("a/b") + b"x")
    big_header = b"\x30\xff\xff\x03"  # announces 65,535 bytes: refused before any body byte
    splitter = PacketSplitter(1000)
    assert splitter.feed(small + big_header) == [(0x30, _body(small))]
    guard = StreamGuard(1000)
    guard.feed(small + big_header)
    assert splitter.violation == guard.violation == "a packet of 65539 bytes (max_packet_size_bytes 1000)"


def test_a_remaining_length_past_four_bytes_is_refused() -> None:
    splitter = PacketSplitter(None)
    assert splitter.feed(b"\xc0\x00\x30\xff\xff\xff\xff\x01") == [(0xC0, b"")]
    assert splitter.violation == StreamGuard(None).feed(b"\x30\xff\xff\xff\xff\x01")


def test_wildcard_topics_and_malformed_publishes() -> None:
    assert parse_publish(0x30, text("a/+") + b"x") == StreamGuard(None).feed(packet(0x30, text("a/+") + b"x"))
    assert parse_publish(0x30, text("a/#")) == "a PUBLISH to topic name 'a/#', which has a wildcard (MQTT-3.3.2-2)"
    for first, body in ((0x36, text("a") + b"\x00\x01"),  # QoS 3
                        (0x30, b"\x00"),  # no room for the topic length
                        (0x30, b"\x00\x05abc"),  # topic beyond the end
                        (0x32, text("a") + b"\x00"),  # QoS 1 without a whole packet id
                        (0x30, b"\x00\x02\xff\xfe")):  # not UTF-8
        with pytest.raises(MalformedPacketError):
            parse_publish(first, body)
