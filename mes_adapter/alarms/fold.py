"""Pure folding of the edge's ``Alarms/<Name>/<field>`` metrics into one state per condition.

The edge publishes every OPC UA condition event as nine metrics of the cell's device, all with the
event's source time (docs/alarms.md, "On the wire"); the host hands them to us one metric at a time.
:class:`ConditionFolder` keeps the nine fields of each condition and, when asked (:meth:`flush`,
after a drained batch of changes), says which conditions now differ from what it last reported.

Why compare states instead of timestamps: a rebirth restates every condition with the birth's
timestamp, and that must not journal a second copy of an unchanged alarm; a real event always has a
new EventId, so it always differs. Node/device death turns the metrics STALE: that is reported as a
change of ``stale`` only (the alarm's last known state is kept), as for tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: the nine metric names under ``Alarms/<Name>/``
FIELDS = ("Active", "Acked", "Confirmed", "Retain", "Severity", "Message", "State", "ConditionId", "EventId")
_PREFIX = "Alarms"


def condition_field(metric_name: str) -> tuple[str, str] | None:
    """``("TemperatureAlarm", "Active")`` for ``Alarms/TemperatureAlarm/Active``; None for any other metric.

    A name may have several segments: the edge's data-quality alarms are
    ``Alarms/DataQuality/<tag metric>/<Kind>/<field>`` (condition ``DataQuality/<tag metric>/<Kind>``)."""
    parts = metric_name.split("/")
    if len(parts) >= 3 and parts[0] == _PREFIX and parts[-1] in FIELDS and all(parts[1:-1]):
        return "/".join(parts[1:-1]), parts[-1]
    return None


@dataclass(frozen=True, slots=True)
class ConditionKey:
    group_id: str
    edge_node_id: str
    device_id: str | None
    name: str


@dataclass(frozen=True, slots=True)
class ConditionState:
    """One condition as the edge last stated it (the journal row's and the UNS message's source)."""

    active: bool
    acked: bool
    confirmed: bool
    retain: bool
    severity: int
    message: str
    state: str
    condition_id: str
    event_id: str
    stale: bool
    source_ts_ms: int
    received_ms: int

    def same_as(self, other: ConditionState | None) -> bool:
        """Equal apart from the times (a rebirth restating the same event is no change)."""
        return other is not None and replace(self, source_ts_ms=0, received_ms=0) == replace(
            other, source_ts_ms=0, received_ms=0)


@dataclass(slots=True)
class _Partial:
    values: dict[str, Any] = field(default_factory=dict)
    #: the fields of the event being assembled (since the last complete one)
    fresh: set[str] = field(default_factory=set)
    stale: bool = False
    source_ts_ms: int = 0
    received_ms: int = 0


def _state(p: _Partial) -> ConditionState | None:
    v = p.values
    if any(name not in v for name in FIELDS):
        return None  # never stated in full yet
    return ConditionState(
        active=bool(v["Active"]), acked=bool(v["Acked"]), confirmed=bool(v["Confirmed"]), retain=bool(v["Retain"]),
        severity=int(v["Severity"] or 0), message=str(v["Message"] or ""), state=str(v["State"] or ""),
        condition_id=str(v["ConditionId"] or ""), event_id=str(v["EventId"] or ""), stale=p.stale,
        source_ts_ms=p.source_ts_ms, received_ms=p.received_ms)


class ConditionFolder:
    """Nine metrics in, one :class:`ConditionState` per condition out (see module doc).

    An event is complete when all nine fields have arrived since the previous complete one; it is
    queued for :meth:`flush` at once. Neither the source time nor the drain delimits events: a
    flood raises and clears a condition several times within one simulator tick (same source
    time), and one drain can hold hundreds of events of a condition; each is its own state. A
    DATA message split between two drains simply completes in the second."""

    def __init__(self) -> None:
        self._partial: dict[ConditionKey, _Partial] = {}
        self._reported: dict[ConditionKey, ConditionState] = {}
        self._touched: set[ConditionKey] = set()
        #: complete events since the last flush, in arrival order
        self._completed: list[tuple[ConditionKey, ConditionState]] = []
        #: complete condition statements received (every event, and a birth's restatement)
        self.events_seen = 0

    def restore(self, key: ConditionKey, state: ConditionState) -> None:
        """Seed with the journal's last row, so the first birth after a restart journals nothing new."""
        self._reported[key] = state

    def observe(self, key: ConditionKey, field_name: str, value: Any, *, stale: bool, source_ts_ms: int,
                received_ms: int) -> None:
        partial = self._partial.setdefault(key, _Partial())
        partial.stale = stale
        partial.received_ms = received_ms
        self._touched.add(key)
        if stale or value is None:
            return
        if field_name in partial.fresh:
            # a field again before the event was complete: the earlier event came incomplete (the edge
            # never does that, its nine metrics travel together); assemble the new one from here
            partial.fresh.clear()
        partial.values[field_name] = value
        partial.source_ts_ms = source_ts_ms
        partial.fresh.add(field_name)
        if len(partial.fresh) == len(FIELDS):
            partial.fresh.clear()
            state = _state(partial)
            if state is not None:
                self.events_seen += 1
                self._completed.append((key, state))

    def flush(self) -> list[tuple[ConditionKey, ConditionState]]:
        """Every state that differs from the one reported before it, in arrival order: the complete
        events, then a death's ``stale`` mark."""
        changed = []
        for key, state in self._completed:
            if not state.same_as(self._reported.get(key)):
                self._reported[key] = state
                changed.append((key, state))
        self._completed.clear()
        for key in sorted(self._touched, key=lambda k: (k.group_id, k.edge_node_id, k.device_id or "", k.name)):
            partial = self._partial[key]
            previous = self._reported.get(key)
            if not partial.stale or previous is None or previous.stale:
                continue
            state = _state(partial)
            state = replace(previous, stale=True, received_ms=partial.received_ms) if state is None else state
            self._reported[key] = state
            changed.append((key, state))
        self._touched.clear()
        return changed
