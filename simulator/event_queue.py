"""An event queue that says when it overflows: the EventQueueOverflowEvent asyncua's server leaves out.

asyncua 2.1's server keeps a queue per event monitored item (the client's QueueSize, capped at
10,000) and, when it is full, drops the oldest event *silently*: the client cannot tell a quiet
line from lost alarms. OPC UA Part 4 (5.12.1.5, "Event queue overflow") says the server puts an
EventQueueOverflowEventType event in the queue instead, so the client knows events were lost and
can ask for ConditionRefresh. :func:`install` wraps asyncua's enqueue in this process so it does:

* the first overflow of a queue puts the overflow event in place of the oldest event (the marker
  does not count against the queue size); while it is still queued, further overflows discard the
  oldest event after it (one marker stands for every loss until the client has taken the queue);
* every discarded event is counted in :data:`STATS` and logged (WARNING, at most once a second per
  subscription with the running count), so a loss is never silent on our side either.

The simulator installs it when it builds its server; it changes asyncua's server classes for the
whole process (a test that runs another asyncua server beside the simulator gets the same, more
truthful, queue). Clients (the edge node) never use these classes.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.event_objects import EventQueueOverflowEvent
from asyncua.server.internal_subscription import InternalSubscription

log = logging.getLogger(__name__)


@dataclass
class QueueStats:
    discarded: int = 0  # condition (or other) events dropped from a full queue
    overflows: int = 0  # EventQueueOverflowEvents queued


STATS = QueueStats()
_MARK = "_uns_overflow_marker"


def _marker(sub: InternalSubscription, mid: int) -> ua.EventFieldList | None:
    """The overflow event as the monitored item's EventFilter selects it (None: item gone)."""
    mdata = sub.monitored_item_srv._monitored_items.get(mid)  # noqa: SLF001 - asyncua has no accessor
    if mdata is None or mdata.filter is None:
        return None
    event = EventQueueOverflowEvent(sourcenode=ua.NodeId(ua.ObjectIds.Server),
                                    message="event queue overflow: events were discarded", severity=1000)
    event.EventId = os.urandom(16)
    event.Time = event.ReceiveTime = datetime.now(UTC)
    event.SourceName = "Server"
    fields = ua.EventFieldList()
    fields.ClientHandle = mdata.client_handle
    fields.EventFields = event.to_event_fields(mdata.filter.SelectClauses)
    return fields


def install() -> None:
    """Wrap :meth:`InternalSubscription._enqueue_event` once per process (see module doc)."""
    original = InternalSubscription._enqueue_event  # noqa: SLF001
    if getattr(original, "_uns_overflow", False):
        return

    async def _enqueue_event(self: InternalSubscription, mid: int, eventdata: Any, size: int,
                             queue: dict[int, list[Any]]) -> None:
        items = queue.get(mid)
        if queue is not self._triggered_events or not size or items is None:  # noqa: SLF001
            await original(self, mid, eventdata, size, queue)
            return
        markers: dict[int, Any] = self.__dict__.setdefault(_MARK, {})
        marked = items[0] is markers.get(mid)
        if len(items) - marked < size:  # the marker does not count against the queue size
            items.append(eventdata)
            return
        STATS.discarded += 1
        if marked:
            items.pop(1)  # the oldest event after the marker
        else:
            marker = _marker(self, mid)
            if marker is None:
                items.pop(0)
            else:
                items[0] = markers[mid] = marker  # in place of the oldest event
                STATS.overflows += 1
        items.append(eventdata)
        now = time.monotonic()
        last: dict[int, float] = self.__dict__.setdefault("_uns_overflow_logged", {})
        if now - last.get(mid, 0.0) >= 1.0:
            last[mid] = now
            log.warning("event queue of monitored item %d (subscription %s) is full (%d): the oldest event was "
                        "discarded and an EventQueueOverflowEvent queued; %d event(s) discarded in this process",
                        mid, self.data.SubscriptionId, size, STATS.discarded)

    _enqueue_event._uns_overflow = True  # type: ignore[attr-defined]
    InternalSubscription._enqueue_event = _enqueue_event  # type: ignore[method-assign]  # noqa: SLF001
