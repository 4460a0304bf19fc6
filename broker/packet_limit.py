"""Protocol limits checked on the raw byte stream, with no I/O: packet size and PUBLISH topic names.

Why on the stream, ahead of amqtt's decoder:

* **Size.** amqtt 0.12.1 reads a packet's whole remaining length into memory whatever it is (MQTT
  allows 256 MB) and retains it if asked, so one client could fill the broker's memory with a few
  large PUBLISHes (issue 13: 5 MB messages were accepted and retained). Mosquitto has
  ``max_packet_size``; this is the embedded broker's ``max_packet_size_bytes``. The size counts
  the whole packet (type byte + remaining-length bytes + remaining length), as MQTT 5's Maximum
  Packet Size does, and is known from the fixed header alone: the body of a packet over the
  limit is never read.
* **Wildcards in a PUBLISH topic name** (MQTT-3.3.2-2: the server must close the connection).
  amqtt's decoder raises on such a name *in the middle of the packet*, and its reader loop then
  discards the error and goes on reading the rest of that packet, its payload, as if it were new
  packets: the connection stayed open and a payload could even be parsed as a packet of the
  client's choosing. Seen here, the connection is closed instead.

:class:`StreamGuard` is fed every chunk read from one connection, in order, and follows the
packet boundaries (fixed header: one type byte, then the 1–4 byte remaining-length varint, MQTT
3.1.1 §2.2.3). ``violation`` says what broke a limit; the broker ends the connection there.
Since the broker reads TCP/TLS connections itself (:mod:`broker.incoming`), the guard sees the
CONNECT and WebSocket traffic; the reader loop checks the same limits, with the same words
(:func:`size_violation`, :func:`wildcard_violation`, :func:`malformed_length`).
"""

from __future__ import annotations

_TYPE, _LENGTH, _BODY = 0, 1, 2
_PUBLISH = 3


class StreamGuard:
    """``feed(chunk)`` returns a description of the first violation (also kept in ``violation``)."""

    __slots__ = ("_length", "_length_bytes", "_multiplier", "_publish_head", "_remaining", "_state",
                 "_type", "limit", "packet_size", "violation")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 2:
            raise ValueError("the packet size limit must allow at least a 2-byte packet")
        self.limit = limit
        self.violation: str | None = None
        #: the size of the packet over the limit, when that was the violation
        self.packet_size: int | None = None
        self._state = _TYPE
        self._type = 0
        self._length = 0
        self._length_bytes = 0
        self._multiplier = 1
        self._remaining = 0
        self._publish_head: bytearray | None = None

    def feed(self, chunk: bytes) -> str | None:
        i, n = 0, len(chunk)
        while i < n and self.violation is None:
            if self._state == _TYPE:
                self._type = chunk[i] >> 4
                self._state, self._length, self._length_bytes, self._multiplier = _LENGTH, 0, 0, 1
                i += 1
            elif self._state == _LENGTH:
                byte = chunk[i]
                i += 1
                self._length += (byte & 0x7F) * self._multiplier
                self._multiplier *= 128
                self._length_bytes += 1
                if byte & 0x80:
                    if self._length_bytes < 4:
                        continue
                    # MQTT 3.1.1 §2.2.3: at most four bytes; a fifth would be a malformed packet
                    self.violation = malformed_length()
                    return self.violation
                self._start_body()
            else:
                take = min(self._remaining, n - i)
                if self._publish_head is not None:
                    self._watch_topic(chunk[i:i + take])
                self._remaining -= take
                i += take
                if self._remaining == 0:
                    self._state = _TYPE
        return self.violation

    def _start_body(self) -> None:
        size = 1 + self._length_bytes + self._length
        if self.limit is not None and size > self.limit:
            self.packet_size = size
            self.violation = size_violation(size, self.limit)
            return
        self._remaining = self._length
        self._publish_head = bytearray() if self._type == _PUBLISH else None
        self._state = _BODY if self._remaining else _TYPE

    def _watch_topic(self, data: bytes) -> None:
        """Collect a PUBLISH's topic length and name (nothing of its payload), then check the name."""
        head = self._publish_head
        assert head is not None
        while data:
            need = 2 if len(head) < 2 else 2 + int.from_bytes(head[:2], "big")
            if len(head) >= need:
                break
            take = data[:need - len(head)]
            head.extend(take)
            data = data[len(take):]
        if len(head) < 2 or len(head) < 2 + int.from_bytes(head[:2], "big"):
            return
        topic = bytes(head[2:])
        self._publish_head = None
        if b"+" in topic or b"#" in topic:
            self.violation = wildcard_violation(topic.decode("utf-8", "replace"))


def malformed_length() -> str:
    """MQTT 3.1.1 §2.2.3: a remaining length has at most four bytes."""
    return "a malformed remaining length (continues past its fourth byte)"


def size_violation(size: int, limit: int) -> str:
    return f"a packet of {size} bytes (max_packet_size_bytes {limit})"


def wildcard_violation(topic: str) -> str:
    return f"a PUBLISH to topic name {topic!r}, which has a wildcard (MQTT-3.3.2-2)"


__all__ = ["StreamGuard", "malformed_length", "size_violation", "wildcard_violation"]
