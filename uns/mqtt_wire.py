"""MQTT 3.1.1 / 5 for a client that only publishes: packets and window state, without any I/O.

Why hand-written: the UNS mirror publishes ~10,000 retained messages/s. Through paho, 73 % of the
host's CPU per change went to paho itself (its PUBACK handling, per-message locks and its
packet queue: ~40 µs of ~60). A publisher needs very little of MQTT: CONNECT, PUBLISH (QoS 0
and 1), PUBACK, PINGREQ/PINGRESP and DISCONNECT. Encoding a batch of PUBLISH packets into one
``bytes`` and decoding a buffer full of PUBACKs at once costs a few µs per message.

The rules this module enforces (h11 style: the caller feeds bytes in and writes bytes out; every
violation leaves the connection in :attr:`State.ERROR` and raises an error that says whose fault
it is):

1. **States.** ``NEW`` → :meth:`PublisherConnection.connect` → ``CONNECTING`` → a CONNACK with
   code 0 → ``CONNECTED`` → :meth:`~PublisherConnection.disconnect` or a server DISCONNECT →
   ``CLOSED``. A refused CONNACK → ``CLOSED`` and :class:`ConnectRefusedError` (with the broker's code
   and its meaning: a wrong password is a configuration problem, not a network one).
2. **Our fault** (:class:`MqttLocalProtocolError`): publishing before CONNECTED or after CLOSED, QoS 2,
   more QoS 1 messages in flight than the window (65,535 packet ids, or less if an MQTT 5 broker
   sets Receive Maximum), a topic or packet MQTT cannot carry.
3. **The broker's fault** (:class:`MqttRemoteProtocolError`): a packet a server may not send to a
   publisher (PUBLISH without a subscription, SUBACK, ...), a PUBACK for a packet id not in
   flight, a malformed length, a second CONNACK.
4. **Packet ids** are given out in order 1..65535 and wrap; an id still in flight is never reused
   (rule 2 bounds the window so that cannot happen).
5. **No I/O and no clock**: keep-alive timing belongs to the caller; :meth:`ping` writes a
   PINGREQ and :attr:`PublisherConnection.pings_outstanding` says how many are unanswered.

What it does not do: receive messages (no SUBSCRIBE), QoS 2, MQTT 5 topic aliases or
authentication exchanges, and session resumption (it always connects with a clean session: the
caller keeps what is unacknowledged and decides what to send again on a new connection; a
retained-value mirror resends the *latest* value per topic, which a DUP resend of a dead session
could reorder).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from uns.errors import UnsError

__all__ = ["ConnAck", "ConnectRefusedError", "MqttLocalProtocolError", "MqttRemoteProtocolError", "MqttWireError",
           "PingResp", "PubAcks", "Publishable", "PublisherConnection", "ServerDisconnect", "State", "encode_connect"]

_H = struct.Struct(">H")
_PACK_H = _H.pack
_MAX_PACKET_ID = 65535
_MAX_REMAINING = 268_435_455

#: CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3)
CONNACK_311 = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
               4: "bad user name or password", 5: "not authorised"}
#: CONNACK reason codes of MQTT 5 that a broker may send (section 3.2.2.2)
CONNACK_5 = {0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
             0x83: "implementation specific error", 0x84: "unsupported protocol version",
             0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
             0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8C: "bad authentication method",
             0x90: "topic name invalid", 0x95: "packet too large", 0x97: "quota exceeded",
             0x99: "payload format invalid", 0x9A: "retain not supported", 0x9B: "QoS not supported",
             0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded"}


class MqttWireError(UnsError):
    """Root of this module's errors."""


class MqttLocalProtocolError(MqttWireError):
    """We (the caller) broke a rule: a bug on our side, or a message MQTT cannot carry."""


class MqttRemoteProtocolError(MqttWireError):
    """The broker sent something MQTT does not allow here: its fault; close the connection."""


class ConnectRefusedError(MqttWireError):
    """The broker answered CONNECT with a refusal; ``code`` is its return/reason code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"refused: {reason} (CONNACK code {code:#04x})")
        self.code = code
        self.reason = reason


class State(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    #: MQTT 5 Receive Maximum (QoS 1 messages the broker takes in flight); 65,535 when absent
    receive_maximum: int = _MAX_PACKET_ID


@dataclass(slots=True)
class PubAcks:
    """PUBACKs of one :meth:`PublisherConnection.receive_data` call, in arrival order."""

    packet_ids: list[int] = field(default_factory=list)
    #: (packet id, MQTT 5 reason code >= 0x80): the broker did not accept that message
    refused: list[tuple[int, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class ServerDisconnect:
    """An MQTT 5 server DISCONNECT (the broker ends the connection and says why)."""

    code: int


class Publishable(Protocol):
    """What :meth:`PublisherConnection.publish_batch` sends (e.g. the mirror's messages, unchanged)."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


Event = ConnAck | PubAcks | PingResp | ServerDisconnect


def _varint(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


#: the remaining-length bytes of packets up to 4 KiB, computed once (a mirror message is ~150 bytes:
#: one list index per PUBLISH instead of a call)
_REMAINING_CACHED = 4096
_REMAINING_LENGTH = [_varint(n) for n in range(_REMAINING_CACHED)]


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > _MAX_PACKET_ID:
        raise MqttLocalProtocolError(f"an MQTT string is at most 65,535 bytes, not {len(raw)}")
    return _PACK_H(len(raw)) + raw


def encode_connect(client_id: str, *, protocol: str = "3.1.1", keepalive_s: int = 30,
                   username: str | None = None, password: str | None = None) -> bytes:
    """A CONNECT packet with a clean session (3.1.1) / clean start and no expiry (5), no Will."""
    if protocol not in ("3.1.1", "5"):
        raise MqttLocalProtocolError(f"MQTT protocol {protocol!r}: expected '3.1.1' or '5'")
    if not 0 <= keepalive_s <= _MAX_PACKET_ID:
        raise MqttLocalProtocolError(f"keep-alive {keepalive_s} s is outside 0..65535")
    if password is not None and username is None:
        raise MqttLocalProtocolError("MQTT needs a user name to send a password")
    flags = 0x02  # clean session / clean start
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
        if password is not None:
            flags |= 0x40
            payload += _string(password)
    level = 4 if protocol == "3.1.1" else 5
    variable = _string("MQTT") + bytes((level, flags)) + _PACK_H(keepalive_s)
    if level == 5:
        variable += b"\x00"  # no properties
    body = variable + payload
    return b"\x10" + _varint(len(body)) + body


class PublisherConnection:
    """One MQTT connection's protocol state for a publisher (see the module doc for the rules)."""

    def __init__(self, protocol: str = "3.1.1") -> None:
        if protocol not in ("3.1.1", "5"):
            raise MqttLocalProtocolError(f"MQTT protocol {protocol!r}: expected '3.1.1' or '5'")
        self.protocol = protocol
        self._v5 = protocol == "5"
        self.state = State.NEW
        self._buffer = b""
        self._next_id = 1
        #: QoS 1 packet ids sent and not yet acknowledged (insertion order = send order)
        self.in_flight: dict[int, None] = {}
        self.receive_maximum = _MAX_PACKET_ID
        self.pings_outstanding = 0
        #: encoded topic name (length prefix included) per topic: mirror topics repeat
        self._topics: dict[str, bytes] = {}

    # -- what we send ----------------------------------------------------------------------------

    def connect(self, client_id: str, *, keepalive_s: int = 30, username: str | None = None,
                password: str | None = None) -> bytes:
        if self.state is not State.NEW:
            self._fail_local(f"CONNECT in state {self.state.value}: a connection connects once")
        data = encode_connect(client_id, protocol=self.protocol, keepalive_s=keepalive_s, username=username,
                              password=password)
        self.state = State.CONNECTING
        return data

    @property
    def room(self) -> int:
        """QoS 1 messages that may still be sent before the window is full."""
        return self.receive_maximum - len(self.in_flight)

    def publish_batch(self, messages: Sequence[Publishable], qos: int, *, retain: bool = True,
                      last_qos: int | None = None) -> tuple[bytes, int]:
        """PUBLISH packets for ``messages`` as one ``bytes`` (one socket write); returns it and the
        packet id of the last message (0 if it is QoS 0). ``last_qos`` overrides the last message's
        QoS (a QoS 1 *fence* after QoS 0 messages: its PUBACK confirms the batch, MQTT 4.6)."""
        if self.state is not State.CONNECTED:
            self._fail_local(f"PUBLISH in state {self.state.value}: wait for the CONNACK")
        if qos not in (0, 1) or last_qos not in (None, 0, 1):
            self._fail_local("this publisher sends QoS 0 and 1 only")
        count = len(messages)
        ones = count if qos == 1 else 0
        if last_qos is not None and count:
            ones += (last_qos == 1) - (qos == 1)
        if ones > self.room:
            self._fail_local(f"{ones} QoS 1 messages but room for {self.room} in flight "
                             f"(window {self.receive_maximum})")
        topics = self._topics
        if len(topics) > 200_000:
            topics.clear()  # topics come and go (retired tags): bound the cache
        in_flight = self.in_flight
        props = b"\x00" if self._v5 else b""
        extra = len(props)
        pack = _PACK_H
        lengths = _REMAINING_LENGTH
        parts: list[bytes] = []
        append = parts.append
        next_id = self._next_id
        pid = 0
        last = count - 1
        first1, first0 = (b"\x33", b"\x31") if retain else (b"\x32", b"\x30")
        for i, message in enumerate(messages):
            topic, payload = message.topic, message.payload
            name = topics.get(topic)
            if name is None:
                if not topic or "+" in topic or "#" in topic or "\x00" in topic:
                    self._fail_local(f"{topic!r} is not a topic name a message may be published to")
                name = topics[topic] = _string(topic)
            q = qos if i != last or last_qos is None else last_qos
            length = len(name) + len(payload) + extra + (2 if q else 0)
            size = lengths[length] if length < _REMAINING_CACHED else _varint(length)
            if q:
                pid = next_id
                next_id = 1 if next_id == _MAX_PACKET_ID else next_id + 1
                in_flight[pid] = None
                head = first1 + size + name + pack(pid)
            else:
                pid = 0
                head = first0 + size + name
            if length > _MAX_REMAINING:
                self._fail_local(f"a message to {topic!r} of {len(payload)} bytes is larger than MQTT allows")
            append(head + props if extra else head)
            append(payload)
        self._next_id = next_id
        return b"".join(parts), pid

    def ping(self) -> bytes:
        if self.state is not State.CONNECTED:
            self._fail_local(f"PINGREQ in state {self.state.value}")
        self.pings_outstanding += 1
        return b"\xc0\x00"

    def disconnect(self) -> bytes:
        """A DISCONNECT (normal), if connected; the connection is CLOSED either way."""
        was = self.state
        self.state = State.CLOSED
        if was is not State.CONNECTED:
            return b""
        return b"\xe0\x02\x00\x00" if self._v5 else b"\xe0\x00"

    # -- what the broker sends ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the socket; returns the complete packets' events (acks grouped)."""
        if self.state in (State.ERROR, State.NEW):
            self._fail_local(f"data received in state {self.state.value}")
        buf = self._buffer + data if self._buffer else data
        events: list[Event] = []
        acks: PubAcks | None = None
        in_flight = self.in_flight
        pos, end = 0, len(buf)
        while end - pos >= 2:
            kind = buf[pos]
            length = buf[pos + 1]
            start = pos + 2
            if length & 0x80:
                length, start = self._long_length(buf, pos)
                if start < 0:
                    break  # the length itself is not complete yet
            stop = start + length
            if stop > end:
                break
            pos = stop
            if kind == 0x40:  # PUBACK
                if length < 2:
                    self._fail_remote(f"PUBACK of {length} bytes")
                pid = (buf[start] << 8) | buf[start + 1]
                if in_flight.pop(pid, 0) is not None:
                    self._fail_remote(f"PUBACK for packet id {pid}, which is not in flight")
                if acks is None:
                    acks = PubAcks()
                    events.append(acks)
                acks.packet_ids.append(pid)
                if length > 2 and buf[start + 2] >= 0x80:
                    acks.refused.append((pid, buf[start + 2]))
                continue
            acks = None
            if kind == 0x20:
                events.append(self._connack(buf[start:stop]))
            elif kind == 0xD0:
                if self.pings_outstanding:
                    self.pings_outstanding -= 1
                events.append(PingResp())
            elif kind == 0xE0 and self._v5:
                self.state = State.CLOSED
                events.append(ServerDisconnect(buf[start] if length else 0))
            else:
                self._fail_remote(f"a packet of type {kind >> 4} (flags {kind & 0x0F:#x}) that a broker "
                                  "may not send to a publisher that subscribed to nothing")
        self._buffer = buf[pos:] if pos < end else b""
        return events

    def _long_length(self, buf: bytes, pos: int) -> tuple[int, int]:
        value, shift, at = 0, 0, pos + 1
        while True:
            if at >= len(buf):
                return 0, -1
            digit = buf[at]
            value |= (digit & 0x7F) << shift
            at += 1
            if not digit & 0x80:
                return value, at
            shift += 7
            if shift > 21:
                self._fail_remote("a remaining length of more than 4 bytes")

    def _connack(self, body: bytes) -> ConnAck:
        if self.state is not State.CONNECTING:
            self._fail_remote(f"CONNACK in state {self.state.value}")
        if len(body) < 2:
            self._fail_remote(f"CONNACK of {len(body)} bytes")
        code = body[1]
        if code:
            self.state = State.CLOSED
            reasons = CONNACK_5 if self._v5 else CONNACK_311
            raise ConnectRefusedError(code, reasons.get(code, "unknown reason"))
        receive_maximum = _MAX_PACKET_ID
        if self._v5:
            receive_maximum = self._connack_receive_maximum(body[2:])
        self.receive_maximum = receive_maximum
        self.state = State.CONNECTED
        return ConnAck(bool(body[0] & 1), receive_maximum)

    def _connack_receive_maximum(self, props: bytes) -> int:
        """Receive Maximum (0x21) from CONNACK properties; every other property is skipped."""
        if not props:
            return _MAX_PACKET_ID
        length, at = self._long_length(b"\x00" + props, 0)
        if at < 0 or at - 1 + length > len(props):
            self._fail_remote("CONNACK properties longer than the packet")
        at -= 1
        end = at + length
        found = _MAX_PACKET_ID
        while at < end:
            ident = props[at]
            at += 1
            size = _PROPERTY_SIZES.get(ident)
            if size is None:
                self._fail_remote(f"CONNACK property {ident:#04x} is not an MQTT 5 CONNACK property")
            if ident == 0x21:
                found = (props[at] << 8) | props[at + 1]
                if not found:
                    self._fail_remote("Receive Maximum 0")
            if size > 0:
                at += size
            elif size == _VARINT:
                _, after = self._long_length(b"\x00" + props[at:], 0)
                at += after - 1
            elif size == _PAIR:
                at += 2 + ((props[at] << 8) | props[at + 1])
                at += 2 + ((props[at] << 8) | props[at + 1])
            else:  # a string or binary: two-byte length, then the bytes
                at += 2 + ((props[at] << 8) | props[at + 1])
        return found

    def _fail_local(self, why: str) -> None:
        self.state = State.ERROR
        raise MqttLocalProtocolError(why)

    def _fail_remote(self, why: str) -> None:
        self.state = State.ERROR
        raise MqttRemoteProtocolError(why)


_VARINT, _PREFIXED, _PAIR = -1, -2, -3
#: MQTT 5 properties a CONNACK may carry, and their sizes (bytes, or how to find the size)
_PROPERTY_SIZES = {0x11: 4, 0x12: _PREFIXED, 0x13: 2, 0x15: _PREFIXED, 0x16: _PREFIXED, 0x1A: _PREFIXED,
                   0x1C: _PREFIXED, 0x1F: _PREFIXED, 0x21: 2, 0x22: 2, 0x24: 1, 0x25: 1, 0x26: _PAIR,
                   0x27: 4, 0x28: 1, 0x29: 1, 0x2A: 1, 0x0B: _VARINT}
