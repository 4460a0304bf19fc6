"""OPC UA Alarms & Conditions as Sparkplug metrics: the event filter and the mapping, no I/O.

**Shape on the wire** (README "wire conventions", docs/alarms.md). Each configured condition is a
fixed group of metrics under its cell's device, declared in every DBIRTH whether or not it was
ever raised, so the aliases never change and a host always sees the whole set:

============================  ========  ===================================================
``Alarms/<Name>/Active``      Boolean   ActiveState/Id
``Alarms/<Name>/Acked``       Boolean   AckedState/Id
``Alarms/<Name>/Confirmed``   Boolean   ConfirmedState/Id (true when the server has none)
``Alarms/<Name>/Retain``      Boolean   Retain: the server still has something to say
``Alarms/<Name>/Severity``    UInt16    Severity (1..1000)
``Alarms/<Name>/Message``     String    Message text
``Alarms/<Name>/State``       String    LimitState/CurrentState text (High, HighHigh...); "" otherwise
``Alarms/<Name>/ConditionId`` String    the condition's NodeId (what Acknowledge is called on)
``Alarms/<Name>/EventId``     String    EventId as lowercase hex (what Acknowledge needs)
============================  ========  ===================================================

Every event publishes the whole group with the event's source ``Time`` as the metric timestamp,
so the nine values of one event always travel together. A metric group rather than a Template:
every Sparkplug consumer (and our UNS mirror) already handles scalar metrics, Templates are not.

**Refresh.** ConditionRefresh answers RefreshStart, the last event of every retained condition,
RefreshEnd. A configured condition not re-announced between the two has nothing left to say on
the server (Retain false), so it is set to the *cleared* state (inactive, acked, confirmed, not
retained, State ""; Severity, Message, ConditionId and EventId keep the last occurrence) with
the RefreshEnd's arrival time as timestamp: no ghost active alarm survives an outage. A
RefreshRequiredEvent (the server lost events) asks for the same round while connected:
:meth:`AlarmBook.take_refresh_request` tells the session to call ConditionRefresh. So does an
EventQueueOverflowEvent (the server's queue for our monitored item was full and it discarded
events): the lost occurrences cannot be recovered, but they are counted
(``uns_edge_alarm_events_total{outcome="queue_overflow"}``), logged every time, and the states are
restated. ``received`` counts every event the monitored items delivered, the first stage against
which the later ones (published, journaled) are counted.

**Bad input** (events without the fields we need, events that are not conditions, sources or
condition names the config does not know) is counted in :class:`AlarmStats` and logged once per
distinct kind and key; nothing raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asyncua import ua

from uns.sparkplug.datatypes import DataType

from .config import AlarmConditionConfig, AlarmsConfig
from .model import MetricDefinition, MetricUpdate
from .validation import datetime_to_ms

log = logging.getLogger(__name__)

PREFIX = "Alarms"
#: metric suffix -> Sparkplug datatype, in birth order
METRICS: tuple[tuple[str, DataType], ...] = (
    ("Active", DataType.Boolean), ("Acked", DataType.Boolean), ("Confirmed", DataType.Boolean),
    ("Retain", DataType.Boolean), ("Severity", DataType.UInt16), ("Message", DataType.String),
    ("State", DataType.String), ("ConditionId", DataType.String), ("EventId", DataType.String),
)

_T = ua.ObjectIds
#: (declaring type, browse path) of every field we select; the key of a field is the path joined by "/"
SELECTED: tuple[tuple[int, tuple[str, ...]], ...] = (
    (_T.BaseEventType, ("EventId",)), (_T.BaseEventType, ("EventType",)),
    (_T.BaseEventType, ("SourceNode",)), (_T.BaseEventType, ("SourceName",)),
    (_T.BaseEventType, ("Time",)), (_T.BaseEventType, ("Severity",)), (_T.BaseEventType, ("Message",)),
    (_T.ConditionType, ("ConditionName",)), (_T.ConditionType, ("Retain",)),
    (_T.AlarmConditionType, ("ActiveState", "Id")), (_T.AcknowledgeableConditionType, ("AckedState", "Id")),
    (_T.AcknowledgeableConditionType, ("ConfirmedState", "Id")),
    (_T.ExclusiveLimitAlarmType, ("LimitState", "CurrentState")),
)
#: the ConditionId: the NodeId attribute of the ConditionType with an empty browse path (Part 9 5.5.2)
CONDITION_ID = "NodeId"
REFRESH_START = ua.NodeId(_T.RefreshStartEventType)
REFRESH_END = ua.NodeId(_T.RefreshEndEventType)
#: a server that lost events asks for ConditionRefresh (Part 9 5.11.1)
REFRESH_REQUIRED = ua.NodeId(_T.RefreshRequiredEventType)
#: a server whose event queue for our monitored item overflowed discarded events (Part 4 5.12.1.5):
#: the states we hold may be wrong, so the answer is the same as to RefreshRequired
QUEUE_OVERFLOW = ua.NodeId(_T.EventQueueOverflowEventType)
#: fields without which a condition event cannot be published
REQUIRED = ("EventId", "Time", "Severity", "Retain", "ActiveState/Id", "AckedState/Id")


def event_filter() -> ua.EventFilter:
    """The EventFilter of every alarm monitored item: the fields above plus the ConditionId.

    Each field names the type that declares it (servers such as node-opcua check the path against
    that type); no WhereClause, so RefreshStart/RefreshEnd and every condition type pass, and
    anything else is counted as not a condition."""
    flt = ua.EventFilter()
    for type_id, path in SELECTED:
        op = ua.SimpleAttributeOperand()
        op.TypeDefinitionId = ua.NodeId(type_id)
        op.BrowsePath = [ua.QualifiedName(name, 0) for name in path]
        op.AttributeId = ua.AttributeIds.Value
        flt.SelectClauses.append(op)
    op = ua.SimpleAttributeOperand()
    op.TypeDefinitionId = ua.NodeId(_T.ConditionType)
    op.BrowsePath = []
    op.AttributeId = ua.AttributeIds.NodeId
    flt.SelectClauses.append(op)
    return flt


def metric_name(condition: str, suffix: str) -> str:
    return f"{PREFIX}/{condition}/{suffix}"


def definitions(alarms: AlarmsConfig, device_of: Callable[[str], str | None]) -> list[MetricDefinition]:
    """The birth declarations of every configured condition (nine metrics each)."""
    return [MetricDefinition(device_id=device_of(c.cell), name=metric_name(c.name, suffix), datatype=datatype,
                             description=f"OPC UA condition {c.name}: {suffix}")
            for c in alarms.conditions for suffix, datatype in METRICS]


@dataclass
class AlarmStats:
    received: int = 0  # every event of the monitored items, whatever it is (the first stage of a count)
    events: int = 0  # condition events published
    refreshes: int = 0  # RefreshEnd seen
    refresh_requests: int = 0  # RefreshRequiredEvent seen (each answered with a ConditionRefresh)
    sessions_lost: int = 0  # sessions that ended with the event subscription (its queued events lost)
    queue_overflows: int = 0  # EventQueueOverflowEvent seen: the server discarded events (each answered with a refresh)
    cleared_by_refresh: int = 0
    not_conditions: int = 0  # events that are neither a condition nor a refresh marker
    malformed: int = 0  # condition events missing a required field
    unknown_sources: int = 0  # SourceName/SourceNode not in the config
    unknown_conditions: int = 0  # known source, ConditionName not configured

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ConditionState:
    """What the metric group of one condition states now."""

    active: bool = False
    acked: bool = True
    confirmed: bool = True
    retain: bool = False
    severity: int = 0
    message: str = ""
    state: str = ""
    condition_id: str = ""
    event_id: str = ""
    timestamp: int = 0

    def values(self) -> tuple[object, ...]:
        return (self.active, self.acked, self.confirmed, self.retain, self.severity, self.message, self.state,
                self.condition_id, self.event_id)

    def cleared(self, timestamp: int) -> ConditionState:
        return ConditionState(severity=self.severity, message=self.message, condition_id=self.condition_id,
                              event_id=self.event_id, timestamp=timestamp)


@dataclass
class _Entry:
    config: AlarmConditionConfig
    device_id: str
    state: ConditionState = field(default_factory=ConditionState)


class AlarmBook:
    """The state of every configured condition of one endpoint, fed with received event fields.

    ``apply(fields)`` takes one event as ``{field key: value}`` (keys as in :data:`SELECTED`, plus
    ``NodeId``) and returns the metric updates to publish. ``source_nodes`` maps resolved
    SourceNode strings (``ns=2;s=...``) to configured sources; set by the I/O side after connect."""

    def __init__(self, alarms: AlarmsConfig, device_of: Callable[[str], str | None], *,
                 stats: AlarmStats | None = None) -> None:
        self.config = alarms
        self.stats = stats if stats is not None else AlarmStats()
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._by_source_name: dict[str, str] = {}
        self._by_source_node: dict[str, str] = {}
        for c in alarms.conditions:
            device = device_of(c.cell)
            if device is None:  # config validation makes every cell a device; keep the type honest
                raise ValueError(f"cell {c.cell!r} is no Sparkplug device")
            self._entries[(c.cell, c.name)] = _Entry(c, device)
            if c.source_node is None:
                self._by_source_name[c.source_name or c.cell] = c.cell
        self._refresh_seen: set[tuple[str, str]] | None = None
        self._refresh_wanted = False
        self._logged: set[tuple[str, str]] = set()

    @property
    def devices(self) -> list[str]:
        return sorted({e.device_id for e in self._entries.values()})

    def set_source_nodes(self, resolved: Mapping[str, str]) -> None:
        """``{"ns=2;s=Line1/Filler": cell}`` for the conditions configured with ``source_node``."""
        self._by_source_node = dict(resolved)

    def state(self, cell: str, name: str) -> ConditionState:
        return self._entries[(cell, name)].state

    def latest(self, device_id: str | None, name: str) -> tuple[str, str] | None:
        """``(ConditionId, newest EventId hex)`` of a configured condition of a device, what an
        Acknowledge or Confirm command calls with (empty strings before its first event); None
        when the device has no such condition here."""
        for entry in self._entries.values():
            if entry.device_id == device_id and entry.config.name == name:
                return entry.state.condition_id, entry.state.event_id
        return None

    def current(self, device_id: str) -> list[MetricUpdate]:
        """Every metric of the device's conditions as it stands (the DBIRTH's values)."""
        return [u for e in self._entries.values() if e.device_id == device_id for u in self._updates(e)]

    @property
    def refreshing(self) -> bool:
        return self._refresh_seen is not None

    def take_refresh_request(self) -> bool:
        """True once per RefreshRequiredEvent round: the server lost events, the session must call
        ConditionRefresh; its RefreshEnd then clears what it does not restate (the reconnect rule)."""
        wanted, self._refresh_wanted = self._refresh_wanted, False
        return wanted

    def apply(self, fields: Mapping[str, Any], now_ms: int) -> list[MetricUpdate]:
        self.stats.received += 1
        event_type = fields.get("EventType")
        if event_type == REFRESH_START:
            self._refresh_seen = set()
            return []
        if event_type == REFRESH_END:
            return self._end_refresh(now_ms)
        if event_type == REFRESH_REQUIRED:
            self.stats.refresh_requests += 1
            self._refresh_wanted = True
            return []
        if event_type == QUEUE_OVERFLOW:
            # the events it stands for are gone: say so every time (it is data loss), restate the states
            self.stats.queue_overflows += 1
            self._refresh_wanted = True
            log.warning("the server's event queue overflowed and discarded condition events (%d overflow(s) "
                        "so far): their occurrences are lost; ConditionRefresh restates the states",
                        self.stats.queue_overflows)
            return []
        if fields.get("ConditionName") is None and fields.get(CONDITION_ID) is None:
            self.stats.not_conditions += 1
            self._once("not-condition", str(event_type), "event of type %s is not a condition; ignored")
            return []
        missing = [k for k in REQUIRED if fields.get(k) is None]
        if missing or fields.get("ConditionName") is None:
            self.stats.malformed += 1
            what = ", ".join(missing or ["ConditionName"])
            self._once("malformed", what, "condition event without %s; ignored")
            return []
        cell = self._cell_of(fields)
        if cell is None:
            self.stats.unknown_sources += 1
            self._once("source", f"{fields.get('SourceName')!r} ({_node_text(fields.get('SourceNode'))})",
                       "condition event from source %s, which is not in the alarms config; ignored")
            return []
        key = (cell, str(fields["ConditionName"]))
        entry = self._entries.get(key)
        if entry is None:
            self.stats.unknown_conditions += 1
            self._once("condition", f"{cell}/{key[1]}", "condition %s is not in the alarms config; ignored")
            return []
        if self._refresh_seen is not None:
            self._refresh_seen.add(key)
        entry.state = _state_of(fields, now_ms)
        self.stats.events += 1
        return self._updates(entry)

    def _end_refresh(self, now_ms: int) -> list[MetricUpdate]:
        seen, self._refresh_seen = self._refresh_seen or set(), None
        self.stats.refreshes += 1
        out: list[MetricUpdate] = []
        for key, entry in self._entries.items():
            if key in seen:
                continue
            cleared = entry.state.cleared(now_ms)
            if cleared.values() != entry.state.values():
                self.stats.cleared_by_refresh += 1
                log.info("condition %s of %s was not in the ConditionRefresh: cleared", entry.config.name,
                         entry.config.cell)
                entry.state = cleared
                out += self._updates(entry)
            elif entry.state.timestamp == 0:
                entry.state = cleared  # never seen: the refresh time states "nothing to say"
        return out

    def _cell_of(self, fields: Mapping[str, Any]) -> str | None:
        """The configured cell of an event's source: SourceNode first (entries with ``source_node``),
        then SourceName."""
        node = fields.get("SourceNode")
        if node is not None and self._by_source_node:
            found = self._by_source_node.get(_node_text(node))
            if found is not None:
                return found
        name = fields.get("SourceName")
        return self._by_source_name.get(str(name)) if name is not None else None

    def _updates(self, entry: _Entry) -> list[MetricUpdate]:
        st = entry.state
        return [MetricUpdate(entry.device_id, metric_name(entry.config.name, suffix), value, st.timestamp)
                for (suffix, _), value in zip(METRICS, st.values(), strict=True)]

    def _once(self, kind: str, key: str, message: str) -> None:
        if (kind, key) not in self._logged:
            self._logged.add((kind, key))
            log.warning(message, key)


def _node_text(node: Any) -> str:
    return node.to_string() if isinstance(node, ua.NodeId) else str(node)


def _text(value: Any) -> str:
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    return value if isinstance(value, str) else ""


def _state_of(fields: Mapping[str, Any], now_ms: int) -> ConditionState:
    time = fields["Time"]
    ts = datetime_to_ms(time) if isinstance(time, datetime) else None
    event_id = fields["EventId"]
    confirmed = fields.get("ConfirmedState/Id")
    condition_id = fields.get(CONDITION_ID)
    return ConditionState(
        active=bool(fields["ActiveState/Id"]), acked=bool(fields["AckedState/Id"]),
        confirmed=True if confirmed is None else bool(confirmed), retain=bool(fields["Retain"]),
        severity=max(0, min(int(fields["Severity"]), 65535)), message=_text(fields.get("Message")),
        state=_text(fields.get("LimitState/CurrentState")),
        condition_id=_node_text(condition_id) if condition_id is not None else "",
        event_id=bytes(event_id).hex() if isinstance(event_id, bytes | bytearray) else str(event_id),
        timestamp=ts if ts is not None else now_ms)


def field_keys() -> Sequence[str]:
    """The keys :meth:`AlarmBook.apply` reads (for the I/O side and tests)."""
    return [*("/".join(path) for _, path in SELECTED), CONDITION_ID]
