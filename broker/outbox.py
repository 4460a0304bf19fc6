"""Outgoing PUBLISH delivery for the embedded broker: no task per message, batched socket writes.

Why this exists (issue 20): amqtt 0.12.1 delivers each routed message with
``asyncio.ensure_future(handler.mqtt_publish(...))``: a task per message per subscriber, a
``PublishPacket`` object built and encoded per subscriber, one ``transport.write`` (one ``send``
system call) per packet, and for QoS 1 a future + ``wait_for`` task per message waiting for its
PUBACK. Under py-spy that plumbing was most of the broker's time. Here:

* :class:`EncodedPublish` encodes a routed message once: the QoS 0 packet bytes are shared by every
  QoS 0 subscriber; QoS 1 packets share one prefix and differ only in the packet id.
* :class:`CoalescingWriter` (TCP/TLS) turns the packets written to one connection into one
  socket write: at the next loop turn for an idle connection, at most every :data:`_HOLD_S`
  (0.5 ms) for a busy one. A per-loop-turn batch alone did not help: amqtt handles about one
  incoming packet per turn, so batches stayed at one packet (measured: writes == batches).
* :class:`Outbox` (one per connection) writes each routed message without a task or an await;
  a WebSocket writer (which buffers until ``drain``) gets one batch per loop turn instead.
* QoS 0 is bounded per connection (TCP/TLS): while more than ``qos0_limit`` bytes written to a
  connection wait to be sent (the subscriber stopped reading, or reads slower than it is sent to),
  a QoS 0 message for it is dropped and counted (``uns_broker_qos0_dropped``), like Mosquitto's
  ``max_queued_bytes``. amqtt buffered without limit: one stalled QoS 0 subscriber could fill the
  broker's memory. A message is dropped only when the backlog is *already* over the limit, so one
  message larger than the limit still reaches an idle connection. QoS 1 is never dropped.
* QoS 1 is a bounded in-flight window (:data:`QOS1_WINDOW`): a message is sent with a packet id
  and kept in the session's ``inflight_out`` (amqtt's own redelivery on reconnect of a persistent
  session uses it) until its PUBACK arrives; messages beyond the window wait in order in
  :attr:`Outbox.pending` and are sent as PUBACKs free the window. A slow subscriber therefore
  holds only its own queue: nothing waits on it, and no QoS 1 message is dropped after a timeout
  (amqtt gave up on a PUBACK after 5 s and forgot the message).

Ordering: packets are written in the order they were routed (one list per connection), which is
the order the broker received them; QoS 1 messages beyond the window keep their order in the
pending queue and are written before any newer QoS 1 message. QoS 0 messages are never held
behind the QoS 1 window (MQTT 3.1.1 §4.6 orders messages per QoS level only).

The protocol logic here does no I/O of its own: it only calls ``writer.write`` (or, for a
WebSocket writer that buffers until ``drain``, one drain task per batch under amqtt's write lock).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

from amqtt.adapters import StreamWriterAdapter, WriterAdapter
from amqtt.session import OutgoingApplicationMessage, Session
from websockets.exceptions import ConnectionClosed

#: QoS 1 messages in flight per connection (sent, PUBACK not yet received). paho's default receive
#: side has no limit; Mosquitto's default ``max_inflight_messages`` is 20 and its benchmark config
#: here sets 0 (unlimited). 1,000 keeps a fast subscriber streaming and bounds what a reconnect
#: of a persistent session has to resend.
QOS1_WINDOW = 1000

_PUBLISH = 0x30
_DUP = 0x08
_QOS1 = 0x02
_RETAIN = 0x01


def _remaining_length(length: int) -> bytes:
    """MQTT 3.1.1 §2.2.3 variable byte integer."""
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class EncodedPublish:
    """One routed message, encoded at most once per QoS for all its subscribers."""

    __slots__ = ("_qos0", "_qos1_body", "_topic_field", "data", "retain", "topic")

    def __init__(self, topic: str, data: bytes | bytearray, retain: bool = False) -> None:
        self.topic = topic
        self.data = data if isinstance(data, bytes) else bytes(data)
        self.retain = retain
        encoded = topic.encode("utf-8")
        self._topic_field = len(encoded).to_bytes(2, "big") + encoded
        self._qos0: bytes | None = None
        self._qos1_body: int = len(self._topic_field) + 2 + len(self.data)

    def qos0(self) -> bytes:
        """The QoS 0 PUBLISH packet (built once, shared by every QoS 0 subscriber)."""
        packet = self._qos0
        if packet is None:
            first = _PUBLISH | (_RETAIN if self.retain else 0)
            packet = self._qos0 = b"".join((bytes((first,)),
                                            _remaining_length(len(self._topic_field) + len(self.data)),
                                            self._topic_field, self.data))
        return packet

    def qos1(self, packet_id: int, dup: bool = False) -> bytes:
        """The QoS 1 PUBLISH packet with ``packet_id``."""
        first = _PUBLISH | _QOS1 | (_RETAIN if self.retain else 0) | (_DUP if dup else 0)
        return b"".join((bytes((first,)), _remaining_length(self._qos1_body), self._topic_field,
                         packet_id.to_bytes(2, "big"), self.data))


class CoalescingWriter(WriterAdapter):
    """A TCP/TLS writer that turns every ``write`` of one event-loop turn into one socket write.

    amqtt writes each packet it sends (PUBACK, SUBACK, PINGRESP, ...) with ``write`` followed by
    ``await drain()``; on a stream transport each ``write`` is one ``send`` system call, a quarter
    of the broker's time under load. Here ``write`` appends to a list and the first one of a turn
    schedules :meth:`flush` with ``call_soon``; ``drain`` waits on the transport only when the
    kernel and transport buffers are already full (backpressure, as before), so it usually returns
    at once. Packets stay whole and in the order written; :meth:`close` flushes first.
    """

    def __init__(self, inner: StreamWriterAdapter) -> None:
        self.inner = inner
        self.batches = 0  # socket writes issued (tests check batches < packets under a burst)
        self.writes = 0
        self._chunks: list[bytes | bytearray] = []
        self._chunk_bytes = 0
        self._last_flush = 0.0
        self._loop = asyncio.get_running_loop()
        self._transport = inner._writer.transport  # noqa: SLF001 - amqtt exposes no accessor

    @property
    def is_closed(self) -> bool:
        return self.inner.is_closed

    def write(self, data: bytes | bytearray) -> None:
        if self.inner.is_closed:
            return
        self.writes += 1
        if not self._chunks:
            # an idle connection is written at the next loop turn; one written less than _HOLD_S
            # ago waits for the rest of _HOLD_S, so a busy one is written at most every _HOLD_S
            wait = self._last_flush + _HOLD_S - self._loop.time()
            if wait > 0:
                self._loop.call_later(wait, self.flush)
            else:
                self._loop.call_soon(self.flush)
        self._chunks.append(data)
        self._chunk_bytes += len(data)

    def backlog(self) -> int:
        """Bytes written and not yet handed to the kernel (this batch plus the transport's buffer)."""
        return self._chunk_bytes + self._transport.get_write_buffer_size()

    def flush(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        self._chunk_bytes = 0
        self.batches += 1
        self._last_flush = self._loop.time()
        self.inner.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def drain(self) -> None:
        if self._transport.get_write_buffer_size() > _DRAIN_ABOVE:
            self.flush()
            await self.inner.drain()

    def get_peer_info(self) -> tuple[str, int] | None:
        return self.inner.get_peer_info()

    def get_ssl_info(self) -> ssl.SSLObject | None:
        return self.inner.get_ssl_info()

    async def close(self) -> None:
        self.flush()
        await self.inner.close()


#: the shortest time between two socket writes of one busy connection (seconds). A write on
#: loopback costs ~10 µs of broker CPU; a burst routed over many loop turns (amqtt handles about
#: one incoming packet per turn) becomes one write per 0.5 ms, and an idle connection waits nothing
_HOLD_S = 0.0005
#: transport buffer (bytes) above which ``drain`` waits for the socket: asyncio's own default
#: high-water mark is 64 KiB; a burst to a fast reader should not stop at every 64 KiB
_DRAIN_ABOVE = 1 << 20


class Outbox:
    """The outgoing PUBLISH side of one connection: shared encodings and the QoS 1 window."""

    def __init__(self, session: Session, writer: Any, write_lock: asyncio.Lock,
                 window: int = QOS1_WINDOW, qos0_limit: int | None = None) -> None:
        self.session = session
        self.writer = writer
        self.window = window
        #: a QoS 0 message is dropped while more than this many bytes wait to be sent (TCP/TLS)
        self.qos0_limit = qos0_limit
        self.pending: deque[EncodedPublish] = deque()  # QoS 1 beyond the window, in order
        self.inflight: dict[int, EncodedPublish] = {}
        self.closed = False  # see close()
        self.drained = False  # see take_pending()
        self._write_lock = write_lock
        # a CoalescingWriter batches by itself; any other writer (WebSocket) gets its own batches
        self._direct = isinstance(writer, CoalescingWriter)
        self._chunks: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._drains: set[asyncio.Task[None]] = set()

    def publish(self, message: EncodedPublish, qos: int) -> bool:
        """Queue ``message`` for this connection at ``qos`` (0 or 1); False when a QoS 0 message is
        dropped because the connection's backlog is over :attr:`qos0_limit` (the caller counts it)."""
        if self.closed:  # the connection is ending: QoS 1 waits, in order, for the session's queue
            if qos:
                self.pending.append(message)
            return True
        if qos == 0:
            limit = self.qos0_limit
            if limit is not None and self._direct and self.writer.backlog() > limit:
                return False
            self._write(message.qos0())
        elif self.pending or len(self.inflight) >= self.window:
            self.pending.append(message)
        else:
            self._send_qos1(message)
        return True

    def on_puback(self, packet_id: int) -> bool:
        """A PUBACK arrived: True when it was for a message sent from here (then handled)."""
        if self.inflight.pop(packet_id, None) is None:
            return False
        self.session.inflight_out.pop(packet_id, None)
        pending = self.pending
        while pending and len(self.inflight) < self.window:
            self._send_qos1(pending.popleft())
        return True

    def close(self) -> None:
        """The connection is ending: from now on QoS 1 messages only join :attr:`pending`."""
        self.closed = True

    def take_pending(self) -> list[EncodedPublish]:
        """The QoS 1 messages never sent (the connection ended): the caller queues them offline.
        Afterwards the outbox is :attr:`drained` and the broker queues new ones offline itself."""
        self.drained = True
        taken = list(self.pending)
        self.pending.clear()
        return taken

    def _send_qos1(self, message: EncodedPublish) -> None:
        session = self.session
        packet_id = session.next_packet_id
        app_message = OutgoingApplicationMessage(packet_id, message.topic, 1, message.data, message.retain)
        # amqtt resends what is in inflight_out when a persistent session reconnects, with DUP set
        # when publish_packet is not None (MQTT-3.3.1-1); the packet object itself is not read there
        app_message.publish_packet = _SENT
        session.inflight_out[packet_id] = app_message
        self.inflight[packet_id] = message
        self._write(message.qos1(packet_id))

    def _write(self, packet: bytes) -> None:
        if self._direct:
            self.writer.write(packet)
            return
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(packet)

    def _flush(self) -> None:
        data, self._chunks = b"".join(self._chunks), []
        # a WebSocket writer buffers until drain(), and its drain() drops what is written while it
        # awaits: write and drain under amqtt's own write lock, in order
        task = self._loop.create_task(self._write_locked(data))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _write_locked(self, data: bytes) -> None:
        async with self._write_lock:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, OSError, ConnectionClosed):
                return


class _Sent:
    """Stands for "a PUBLISH was already sent" in ``ApplicationMessage.publish_packet``."""

    retain_flag = False


_SENT: Any = _Sent()
