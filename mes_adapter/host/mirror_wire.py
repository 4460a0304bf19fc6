"""The mirror's connection on :mod:`uns.mqtt_wire`: the same link contract as the paho one, on the loop.

Why: through paho the mirror cost ~40 µs of host CPU per message, most of it paho's per-message
PUBACK handling, locks and queue (issue 20). Here a batch from the mirror becomes one socket
write, and a read full of PUBACKs is handled in one pass; only each batch's last packet id (its
*fence*) is looked up, because a broker acknowledges one connection's QoS 1 messages in order
(MQTT 3.1.1 section 4.6), so the fence's PUBACK confirms the batch and all before it.

The contract with :class:`~.mirror_publisher.MirrorPublisher` is :class:`~.mirror_link.MirrorLink`'s (``up``,
``ended``, ``why``, ``changed``, ``send``, ``confirmed``, ``unconfirmed``,
``unconfirmed_messages``, ``acked``/``sent``/``wake_at``), so the publisher's promises hold
unchanged: a fresh connection (clean session) each time, every unconfirmed batch put back into
the mirror when a connection ends (latest value per topic, never older over newer), retained
topics queued again on each new connection. An MQTT 5 broker's Receive Maximum smaller than the
mirror's window holds the rest of a batch here until PUBACKs make room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING

from uns.mqtt_wire import ConnAck, PubAcks
from uns.mqtt_wire_aio import PublisherTransport, open_publisher
from uns.sparkplug.model import now_ms

from .mirror import MirrorMessage
from .mirror_link import Batch, MirrorLink

if TYPE_CHECKING:
    from .mirror_publisher import MirrorPublisher

log = logging.getLogger("uns.host.mirror")

#: PUBACKs are read at most once per this many seconds (uns.mqtt_wire_aio): one read per batch
#: instead of ~10 at 10,000 changes/s; a mirror value's confirmation comes at most 1 ms later
ACK_READ_PAUSE_S = 0.001


class WireLink(MirrorLink):
    """One connection of the mirror over :class:`uns.mqtt_wire_aio.PublisherTransport`."""

    def __init__(self, owner: MirrorPublisher, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(owner)
        self._loop = loop
        self.proto: PublisherTransport | None = None
        self._opening: asyncio.Task[None] | None = None
        #: batches not yet fully written (Receive Maximum), oldest first
        self._held: deque[Batch] = deque()

    def start(self) -> None:
        self._opening = self._loop.create_task(self._open())

    async def _open(self) -> None:
        owner = self._owner
        try:
            self.proto = await open_publisher(owner.url, owner.client_id, self, protocol=owner.protocol,
                                              keepalive_s=owner.keepalive_s, read_pause_s=ACK_READ_PAUSE_S)
        except (OSError, ValueError) as exc:
            self._set_ended(f"connect failed (broker not reachable): {exc}")
        if self.ended and self.proto is not None:
            self.proto.end(self.why)

    def stop(self) -> None:
        """Thread-safe (the publisher calls it through ``asyncio.to_thread``, as for paho)."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: the host has stopped
            self._loop.call_soon_threadsafe(self._close)

    def _close(self) -> None:
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self.proto is not None:
            self.proto.end(self.why or "closing")

    # -- PublisherListener ---------------------------------------------------------------------

    def on_connack(self, connack: ConnAck) -> None:
        if connack.receive_maximum < self._owner.window:
            log.info("UNS mirror: the broker takes %d QoS 1 messages in flight (Receive Maximum)",
                     connack.receive_maximum)
        if not self.ended:
            self.up = True
            self.changed.set()
            self._owner.wake()

    def on_acks(self, acks: PubAcks) -> None:
        if acks.refused:
            log.warning("UNS mirror: the broker refused %d message(s), e.g. packet id %d with reason %#04x",
                        len(acks.refused), *acks.refused[0])
        fences = self.fences
        if fences:
            at = now_ms()
            for pid in acks.packet_ids:
                record = fences.get(pid)
                if record is not None:
                    self.acks.append((pid, at))
                    self.acked = record.upto
        if self._held:
            self._write_held()
        if self.acked >= self.wake_at:
            self.wake_at = 1 << 62
            self._owner.wake()

    def on_lost(self, why: str) -> None:
        self._set_ended(why)

    # -- the contract with MirrorPublisher -----------------------------------------------------

    def alive(self) -> bool:
        return not self.ended

    def send(self, batch: list[MirrorMessage], qos: int) -> None:
        self.sent += len(batch)
        record = Batch(batch, upto=self.sent)
        self._track(record)
        self._held.append(record)
        self._write_held()

    def _write_held(self) -> None:
        proto = self.proto
        if proto is None or self.ended:
            return
        conn = proto.conn
        qos = self._owner.qos
        held = self._held
        while held:
            record = held[0]
            rest = len(record.messages) - record.written
            room = conn.room
            count = rest if rest <= room or (qos == 0 and room >= 1) else room
            if count <= 0:
                return
            chunk = record.messages if count == len(record.messages) else \
                record.messages[record.written:record.written + count]
            last = count == rest
            data, mid = conn.publish_batch(chunk, qos, last_qos=1 if last else None)
            proto.write(data)
            record.written += count
            if not last:
                return
            held.popleft()
            record.fence_mid = mid
            self.fences[mid] = record

    def unconfirmed_messages(self) -> list[MirrorMessage]:
        self._held.clear()
        return super().unconfirmed_messages()
