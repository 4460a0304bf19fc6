"""Incoming MQTT packets cut from a connection's byte stream, with no I/O (issue 20).

Why: amqtt 0.12.1's reader loop reads every packet with several awaited reads (the type byte,
each remaining-length byte, then the body through a stream adapter), builds a packet object, and
handles it in a new task; each QoS 1 PUBLISH is then acknowledged through ``_send_packet`` (write
lock, keep-alive timer, plugin event). Under cProfile at QoS 1 that path was the broker's largest
cost: about five awaited reads per packet received. The embedded broker's own reader loop
(:meth:`broker.amqtt_ext.KeepAliveBrokerHandler._reader_loop`) instead reads whatever the socket
has (up to :data:`READ_SIZE`), and :class:`PacketSplitter` cuts it into whole packets here.

The protocol limits of :mod:`broker.packet_limit` hold on this path too, checked in the same
places: a packet whose fixed header announces more than the limit is refused before its body is
read, and a PUBLISH topic name with a wildcard (MQTT-3.3.2-2) is refused by :func:`parse_publish`.
The packets before a violation are still returned, in order, so nothing already received is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsBrokerError
from .packet_limit import malformed_length, size_violation, wildcard_violation

#: bytes asked of the socket per read (asyncio's StreamReader returns what it has, up to this)
READ_SIZE = 1 << 16

PUBLISH, PUBACK, PINGREQ = 3, 4, 12


class MalformedPacketError(UnsBrokerError, ValueError):
    """A packet whose fields contradict its length (the connection is closed: the stream after it
    can no longer be trusted to be cut at packet boundaries)."""


class PacketSplitter:
    """``feed(data)`` returns the whole packets completed by ``data`` as ``(first byte, body)``.

    ``violation`` is set (and nothing after it returned) once a packet breaks the size limit or
    its remaining length is malformed (MQTT 3.1.1 §2.2.3: at most four bytes). The reads of a
    packet larger than one read are kept apart and joined once, when it is whole (joining at
    every read would copy a 4 MiB packet ~64 times)."""

    __slots__ = ("_have", "_need", "_parts", "limit", "violation")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.violation: str | None = None
        self._parts: list[bytes] = []  # the start of an unfinished packet, in reads
        self._have = 0  # bytes in _parts
        self._need = 0  # bytes of the unfinished packet (0: its header is not whole yet)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buffer = b"".join(self._parts)
            self._parts, self._have, self._need = [], 0, 0
        else:
            buffer = data
        packets: list[tuple[int, bytes]] = []
        size, i, limit = len(buffer), 0, self.limit
        while i < size:
            length, shift, j = 0, 0, i + 1
            while True:  # remaining length, MQTT 3.1.1 §2.2.3
                if j >= size:
                    self._keep(buffer[i:], 0)
                    return packets
                byte = buffer[j]
                j += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift == 28:
                    self.violation = malformed_length()
                    return packets
            if limit is not None and j - i + length > limit:
                self.violation = size_violation(j - i + length, limit)
                return packets
            end = j + length
            if end > size:
                self._keep(buffer[i:], end - i)
                return packets
            packets.append((buffer[i], buffer[j:end]))
            i = end
        return packets

    def _keep(self, start: bytes, need: int) -> None:
        self._parts, self._have, self._need = [start], len(start), need


@dataclass(frozen=True, slots=True)
class Publish:
    """The fields of one incoming PUBLISH."""

    topic: str
    packet_id: int | None
    payload: bytes
    qos: int
    retain: bool
    dup: bool


def parse_publish(first: int, body: bytes) -> Publish | str:
    """A PUBLISH's fields, or the protocol violation that must close the connection (a wildcard in
    the topic name). Raises :class:`MalformedPacketError` when the fields do not fit the body."""
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise MalformedPacketError("PUBLISH with QoS 3 (MQTT-3.3.1-4)")
    if len(body) < 2:
        raise MalformedPacketError("PUBLISH shorter than its topic length")
    end = 2 + ((body[0] << 8) | body[1])
    if end + (2 if qos else 0) > len(body):
        raise MalformedPacketError("PUBLISH topic or packet id beyond the packet's end")
    try:
        topic = body[2:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacketError("PUBLISH topic name is not UTF-8 (MQTT-1.5.3-1)") from exc
    if "+" in topic or "#" in topic:
        return wildcard_violation(topic)
    if qos:
        return Publish(topic, (body[end] << 8) | body[end + 1], body[end + 2:], qos, bool(first & 0x01),
                       bool(first & 0x08))
    return Publish(topic, None, body[end:], 0, bool(first & 0x01), bool(first & 0x08))


def puback(packet_id: int) -> bytes:
    """The PUBACK packet for ``packet_id`` (MQTT 3.1.1 §3.4)."""
    return bytes((0x40, 2, packet_id >> 8, packet_id & 0xFF))


PINGRESP = b"\xd0\x00"

__all__ = ["PINGREQ", "PINGRESP", "PUBACK", "PUBLISH", "READ_SIZE", "MalformedPacketError", "PacketSplitter",
           "Publish", "parse_publish", "puback"]
