"""What one connection of the UNS mirror keeps about its batches, whichever MQTT client carries it.

:class:`~.mirror_publisher.MirrorPublisher` hands a link batches of retained messages and asks it
which are confirmed (``confirmed``) and, when the connection ends, which are not
(``unconfirmed_messages``, put back into the mirror). A broker acknowledges one connection's QoS 1
messages in order (MQTT 3.1.1 section 4.6), so each batch is sent with a QoS 1 last message, its
*fence*, and the fence's PUBACK confirms the batch and every batch before it. The bookkeeping is
the same for the paho link and for the :mod:`uns.mqtt_wire` link; only how messages reach the
socket and how PUBACKs come back differ (the subclasses).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .mirror import MirrorMessage

if TYPE_CHECKING:
    from .mirror_publisher import MirrorPublisher


@dataclass(slots=True)
class Batch:
    messages: list[MirrorMessage]
    #: packet id of the batch's last (QoS 1) message, once it is written
    fence_mid: int = 0
    #: messages sent on the link up to and including this batch (``acked`` once it is confirmed)
    upto: int = 0
    #: messages of this batch written so far (less than all only while Receive Maximum holds it)
    written: int = 0


class MirrorLink:
    """The batch bookkeeping and the end-of-link contract shared by both links (module docstring)."""

    def __init__(self, owner: MirrorPublisher) -> None:
        self._owner = owner
        self.up = False
        self.ended = False
        self.why = ""
        self.changed = asyncio.Event()
        #: (packet id, confirmation time ms), in arrival order (paho appends from its network thread:
        #: a deque's append and popleft are thread-safe)
        self.acks: deque[tuple[int, int]] = deque()
        #: messages confirmed on this link (through paho: its on_publish calls, QoS 0 ones when written)
        self.acked = 0
        #: messages handed to this link
        self.sent = 0
        #: the owner is woken once ``acked`` reaches this (one wake per many acks)
        self.wake_at = 1 << 62
        self.batches: deque[Batch] = deque()
        self.fences: dict[int, Batch] = {}
        self.unconfirmed = 0

    def _set_ended(self, why: str) -> None:
        if not self.ended:
            self.ended, self.up = True, False
            self.why = why
            self.changed.set()
            self._owner.wake()

    def _track(self, record: Batch) -> None:
        """A batch was handed to the link: count it until its fence (or a later one) is confirmed."""
        self.batches.append(record)
        self.unconfirmed += len(record.messages)

    def confirmed(self) -> list[tuple[Batch, int]]:
        """Batches whose fence PUBACK arrived (with its time); earlier batches are confirmed with it."""
        out: list[tuple[Batch, int]] = []
        acks, fences, batches = self.acks, self.fences, self.batches
        while acks:
            mid, at = acks.popleft()
            record = fences.pop(mid, None)
            if record is None:
                continue  # a QoS 1 message inside a batch, or a QoS 0 one written to the socket
            while batches:
                head = batches.popleft()
                fences.pop(head.fence_mid, None)
                self.unconfirmed -= len(head.messages)
                out.append((head, at))
                if head is record:
                    break
        return out

    def unconfirmed_messages(self) -> list[MirrorMessage]:
        """Every message not confirmed, in order; the link forgets them (the owner puts them back)."""
        out = [m for record in self.batches for m in record.messages]
        self.batches.clear()
        self.fences.clear()
        self.unconfirmed = 0
        return out
