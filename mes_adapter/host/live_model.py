"""The host's in-memory picture of the plant, and a change stream for the REST API and dashboard.

:class:`LiveModel` applies the tracker's events (births, data, deaths) to a tree of edge nodes,
devices and metrics, and returns the resulting :class:`Change` records; the MQTT shell hands
those to the UNS mirror and to every :meth:`LiveModel.subscribe` stream. Its rules:

* A birth restates every metric of a node or device; metrics the previous birth had and this one
  lacks turn STALE (they are gone from the session, not deleted). When the tracker retires them
  (``MetricsRetired``, after the host's ``retire_grace_s``) they leave the model, and a device
  left with no metric goes too.
* Historical metrics (``is_historical``: store-and-forward replay, back-fill) never overwrite the
  live value; they go to the change stream marked ``historical`` for consumers that want history.
* Within a session an older value never overwrites a newer one (metric timestamps); a birth and a
  death always apply (clocks of host and edge may differ across sessions). Exceptions, because
  the older time is then the truth: whatever follows a *marker* (BAD, STALE, a quality the edge
  degraded, a flagged clock) replaces it: after an OPC UA restart the recovery value keeps the
  source time of its last change, older than the edge's Bad marker; and a sample with a wrong
  clock (``FutureTimestamp`` / ``OldTimestamp`` from the edge) is applied and counted in
  ``flagged_timestamps`` but never holds back the samples after it.
* A template instance in DATA may carry only the members that changed; it is applied on top of
  the last instance (``uns.sparkplug.templates.merge_instance``), so the model holds it whole.
* NDEATH, DDEATH and the host's own disconnect make every affected metric STALE, keeping its last
  value, stamped with the death time (tck-id-operational-behavior-edge-node-termination-host-action-*).

Metric states are immutable: a change carries the very object the model now holds, so a consumer
can keep it without copying. They are named tuples, not frozen dataclasses, because one is built
per change (at 10,000 changes/s a frozen dataclass's ``__init__``, one ``object.__setattr__`` per
field, cost ~2.7 µs against ~0.25 µs for a tuple; issue 20); the DATA path builds them with
``tuple.__new__`` directly. Use ``state._replace(...)`` for a modified copy. All of this runs on
the event loop thread; nothing here is thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from uns.conventions import (
    PROP_ENG_HIGH,
    PROP_ENG_LOW,
    PROP_ENG_UNIT,
    PROP_FUTURE_TIMESTAMP,
    PROP_OLD_TIMESTAMP,
    PROP_STATUS_CODE,
    Quality,
    QualityReason,
    metric_quality,
    quality_reason,
    raw_value,
)
from uns.sparkplug.model import Metric, PropertyValue, Template
from uns.sparkplug.templates import merge_instance

from .jsonable import jsonable
from .tracker import DeviceBorn, DeviceDied, Event, MetricsChanged, MetricsRetired, NodeBorn, NodeDied, NodeKey


class MetricState(NamedTuple):
    """One metric's state (immutable; see the module docstring for why a named tuple)."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    name: str
    value: Any
    datatype: str
    quality: Quality
    #: when this state began: the metric's source timestamp, or the death time once STALE
    timestamp_ms: int
    #: the source timestamp of ``value`` (kept when the metric turns STALE)
    source_timestamp_ms: int
    received_ms: int
    alias: int | None = None
    status_code: int | None = None
    unit: str | None = None
    eng_low: float | None = None
    eng_high: float | None = None
    description: str | None = None
    future_timestamp: bool = False
    is_null: bool = False
    #: why the quality is not GOOD, when the edge (or this host, for a death) said so: a
    #: :class:`uns.conventions.QualityReason` value such as ``out_of_range`` or ``comm_lost``
    quality_reason: str | None = None
    #: the raw source value the edge withheld (``RawValue`` property), as text
    raw_value: str | None = None
    #: the edge flagged the source timestamp as older than its bound (``OldTimestamp``)
    old_timestamp: bool = False

    @property
    def is_marker(self) -> bool:
        """A statement about the tag rather than a trustworthy sample (Bad, STALE, degraded by the
        edge, or a flagged timestamp): the next value replaces it whatever its source timestamp."""
        return (self.quality is Quality.BAD or self.quality is Quality.STALE or self.quality_reason is not None
                or self.future_timestamp or self.old_timestamp)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": jsonable(self.value), "datatype": self.datatype,
                "quality": self.quality.value, "timestamp_ms": self.timestamp_ms,
                "source_timestamp_ms": self.source_timestamp_ms, "received_ms": self.received_ms,
                "alias": self.alias, "status_code": self.status_code, "unit": self.unit,
                "eng_low": self.eng_low, "eng_high": self.eng_high, "description": self.description,
                "quality_reason": self.quality_reason, "raw_value": self.raw_value}


class MetricChange(NamedTuple):
    """One metric's new state (a named tuple like :class:`MetricState`: one per change)."""

    metric: MetricState
    #: True for a historical value: not applied to the live model, not mirrored
    historical: bool = False
    #: True when the state came from a birth (full restatement)
    birth: bool = False
    #: True when that birth is a broker's stored birth certificate: the edge's statement as of its
    #: original birth, not a current one (quality episodes ignore it)
    from_certificate: bool = False


@dataclass(frozen=True, slots=True)
class NodeChange:
    group_id: str
    edge_node_id: str
    online: bool
    at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class DeviceChange:
    group_id: str
    edge_node_id: str
    device_id: str
    online: bool
    at_ms: int
    reason: str


Change = MetricChange | NodeChange | DeviceChange


@dataclass(slots=True)
class DeviceView:
    device_id: str
    online: bool = False
    born_ms: int | None = None
    died_ms: int | None = None
    last_seen_ms: int | None = None
    metrics: dict[str, MetricState] = field(default_factory=dict)


@dataclass(slots=True)
class NodeView:
    group_id: str
    edge_node_id: str
    online: bool = False
    bd_seq: int | None = None
    born_ms: int | None = None
    died_ms: int | None = None
    last_seen_ms: int | None = None
    from_certificate: bool = False
    metrics: dict[str, MetricState] = field(default_factory=dict)
    devices: dict[str, DeviceView] = field(default_factory=dict)


class ChangeStream:
    """One consumer's view of the changes, lossless or conflating, chosen by the consumer.

    * ``lossless=True`` (records, counters, history: consumers that must see every value): nothing
      is ever dropped. ``maxsize`` is a high-water mark: while the stream holds that many changes
      it is :attr:`full`, and the host's MQTT reader waits (:meth:`LiveModel.wait_for_room`)
      before it decodes the next message, so a slow consumer slows reading instead of losing data.
      What the broker delivers meanwhile waits in the MQTT client's queue. A closed stream never
      holds the host back.
    * ``lossless=False`` (dashboards, live views that only want the latest state): bounded; when
      full the oldest change is dropped and counted (``dropped``, ``LiveModel.dropped_changes``).
      Such a consumer conflates by design and must not be used for anything that counts.

    Use as ``async with model.subscribe() as stream: async for change in stream: ...``.
    """

    def __init__(self, model: LiveModel, maxsize: int, lossless: bool = False) -> None:
        self._model = model
        self._buffer: deque[Change] = deque()
        self._maxsize = maxsize
        self.lossless = lossless
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.dropped = 0
        self.closed = False

    def _push_many(self, changes: list[Change]) -> None:
        """Append one event's changes. Past ``maxsize`` a lossless stream keeps them all and is
        :attr:`full`; a conflating one keeps the newest ``maxsize`` and counts the dropped."""
        buffer = self._buffer
        buffer.extend(changes)
        over = len(buffer) - self._maxsize
        if over > 0:
            if self.lossless:
                self._room.clear()
            else:
                for _ in range(over):
                    buffer.popleft()
                self.dropped += over
                self._model.dropped_changes += over
        self._wakeup.set()

    @property
    def full(self) -> bool:
        """True while a lossless stream is at its high-water mark (the host should wait)."""
        return self.lossless and not self.closed and len(self._buffer) >= self._maxsize

    def _taken(self) -> None:
        if len(self._buffer) < self._maxsize:
            self._room.set()

    async def wait_for_room(self) -> None:
        """Return once this stream is below its high-water mark (or closed)."""
        while self.full:
            self._room.clear()
            await self._room.wait()

    async def wait_ready(self, timeout: float) -> None:
        """Return when a change is waiting, the stream closes, or ``timeout`` s passed (takes
        nothing, so no change can be lost to a timeout)."""
        if self._buffer or self.closed:
            return
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def get_nowait(self) -> Change | None:
        if not self._buffer:
            return None
        change = self._buffer.popleft()
        self._taken()
        return change

    async def get(self) -> Change:
        while not self._buffer:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        change = self._buffer.popleft()
        self._taken()
        return change

    async def take(self, limit: int) -> list[Change]:
        """One batch: the next change (waiting for it) and up to ``limit - 1`` more already waiting."""
        changes = [await self.get()]
        while len(changes) < limit and (change := self.get_nowait()) is not None:
            changes.append(change)
        return changes

    def __len__(self) -> int:
        return len(self._buffer)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self

    async def __anext__(self) -> Change:
        return await self.get()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()
        self._room.set()
        self._model._streams.discard(self)

    async def __aenter__(self) -> ChangeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


async def drain(stream: ChangeStream, stopping: asyncio.Event, handle_many: Callable[[list[Change]], None],
                limit: int) -> None:
    """Feed a lossless stream to a synchronous batch handler until ``stopping``, then close it.

    The consumers that write what they take in one transaction per batch (quality episodes, the
    alarm journal) share this loop; it yields to the event loop after each batch so the host's
    reader and the REST API keep their turn while a backlog drains."""
    try:
        while not stopping.is_set():
            handle_many(await stream.take(limit))
            await asyncio.sleep(0)
    finally:
        stream.close()


class LiveModel:
    """Nodes, devices and metrics with value, quality and timestamps; a change stream."""

    def __init__(self, stream_size: int = 10_000) -> None:
        self.stream_size = stream_size
        self._nodes: dict[NodeKey, NodeView] = {}
        self._streams: set[ChangeStream] = set()
        self.dropped_changes = 0
        self.historical_values = 0
        self.out_of_order_values = 0
        #: live values whose source timestamp the edge flagged (FutureTimestamp / OldTimestamp)
        self.flagged_timestamps = 0

    # -- read access (REST, dashboard) ---------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        """The node views (live objects: read, do not modify)."""
        return list(self._nodes.values())

    def node(self, group_id: str, edge_node_id: str) -> NodeView | None:
        return self._nodes.get((group_id, edge_node_id))

    def device(self, group_id: str, edge_node_id: str, device_id: str) -> DeviceView | None:
        node = self._nodes.get((group_id, edge_node_id))
        return None if node is None else node.devices.get(device_id)

    def metric(self, group_id: str, edge_node_id: str, device_id: str | None, name: str) -> MetricState | None:
        table = self._table(group_id, edge_node_id, device_id)
        return None if table is None else table.get(name)

    def metrics(self) -> list[MetricState]:
        out: list[MetricState] = []
        for node in self._nodes.values():
            out.extend(node.metrics.values())
            for device in node.devices.values():
                out.extend(device.metrics.values())
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The whole model as JSON-ready dicts."""
        return [{
            "group_id": n.group_id, "edge_node_id": n.edge_node_id, "online": n.online, "bd_seq": n.bd_seq,
            "born_ms": n.born_ms, "died_ms": n.died_ms, "last_seen_ms": n.last_seen_ms,
            "from_certificate": n.from_certificate,
            "metrics": [m.to_dict() for m in n.metrics.values()],
            "devices": [{"device_id": d.device_id, "online": d.online, "born_ms": d.born_ms,
                         "died_ms": d.died_ms, "last_seen_ms": d.last_seen_ms,
                         "metrics": [m.to_dict() for m in d.metrics.values()]} for d in n.devices.values()],
        } for n in self._nodes.values()]

    def subscribe(self, maxsize: int | None = None, *, lossless: bool = False) -> ChangeStream:
        """A new change stream (``stream_size`` unless ``maxsize``); close it when done.

        ``lossless=True`` for consumers that must see every change (see :class:`ChangeStream`)."""
        stream = ChangeStream(self, maxsize or self.stream_size, lossless)
        self._streams.add(stream)
        return stream

    @property
    def has_room(self) -> bool:
        """False while a lossless stream is full: the reader should :meth:`wait_for_room`."""
        return not any(stream.full for stream in self._streams)

    async def wait_for_room(self) -> None:
        """Wait until no lossless stream is full (back-pressure for the host's MQTT reader)."""
        while not self.has_room:
            for stream in list(self._streams):
                await stream.wait_for_room()

    # -- updates -----------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Change]:
        """Apply one tracker event; returns (and streams) the changes it caused."""
        if isinstance(event, MetricsChanged):
            changes = self._metrics(event)
        elif isinstance(event, NodeBorn):
            changes = self._node_born(event)
        elif isinstance(event, DeviceBorn):
            changes = self._device_born(event)
        elif isinstance(event, NodeDied):
            changes = self._node_died(event)
        elif isinstance(event, DeviceDied):
            changes = self._device_died(event)
        elif isinstance(event, MetricsRetired):
            self._forget(event)
            return []
        else:
            return []
        if self._streams and changes:
            for stream in self._streams:
                stream._push_many(changes)
        return changes

    def _node_view(self, key: NodeKey) -> NodeView:
        node = self._nodes.get(key)
        if node is None:
            node = self._nodes[key] = NodeView(key[0], key[1])
        return node

    def _table(self, group_id: str, edge_node_id: str, device_id: str | None) -> dict[str, MetricState] | None:
        node = self._nodes.get((group_id, edge_node_id))
        if node is None:
            return None
        if device_id is None:
            return node.metrics
        device = node.devices.get(device_id)
        return None if device is None else device.metrics

    def _node_born(self, event: NodeBorn) -> list[Change]:
        node = self._node_view(event.node)
        node.online = True
        node.bd_seq = event.bd_seq
        node.born_ms = node.last_seen_ms = event.at_ms
        node.from_certificate = event.from_certificate
        return [NodeChange(node.group_id, node.edge_node_id, True, event.at_ms,
                           "certificate" if event.from_certificate else "nbirth")]

    def _device_born(self, event: DeviceBorn) -> list[Change]:
        node = self._node_view(event.node)
        device = node.devices.get(event.device_id)
        if device is None:
            device = node.devices[event.device_id] = DeviceView(event.device_id)
        device.online = True
        device.born_ms = device.last_seen_ms = event.at_ms
        return [DeviceChange(node.group_id, node.edge_node_id, event.device_id, True, event.at_ms,
                             "certificate" if event.from_certificate else "dbirth")]

    def _node_died(self, event: NodeDied) -> list[Change]:
        node = self._node_view(event.node)
        changes: list[Change] = []
        if node.online:
            changes.append(NodeChange(node.group_id, node.edge_node_id, False, event.at_ms, event.reason))
        node.online = False
        node.died_ms = event.at_ms
        _stale_all(node.metrics, event.at_ms, changes)
        for device in node.devices.values():
            if device.online:
                changes.append(DeviceChange(node.group_id, node.edge_node_id, device.device_id, False,
                                            event.at_ms, "node_death"))
            device.online = False
            device.died_ms = event.at_ms
            _stale_all(device.metrics, event.at_ms, changes)
        return changes

    def _device_died(self, event: DeviceDied) -> list[Change]:
        node = self._node_view(event.node)
        device = node.devices.get(event.device_id)
        if device is None:
            return []
        changes: list[Change] = []
        if device.online:
            changes.append(DeviceChange(node.group_id, node.edge_node_id, device.device_id, False,
                                        event.at_ms, event.reason))
        device.online = False
        device.died_ms = event.at_ms
        _stale_all(device.metrics, event.at_ms, changes)
        return changes

    def _metrics(self, event: MetricsChanged) -> list[Change]:
        node = self._node_view(event.node)
        node.last_seen_ms = event.received_ms
        if event.device_id is None:
            table = node.metrics
        else:
            device = node.devices.get(event.device_id)
            if device is None:
                device = node.devices[event.device_id] = DeviceView(event.device_id)
            device.last_seen_ms = event.received_ms
            table = device.metrics
        changes: list[Change] = []
        group_id, edge_node_id = event.node
        if event.birth:
            previous = dict(table)
            for metric in event.metrics:
                state = _from_birth(group_id, edge_node_id, event.device_id, metric, event.received_ms)
                if state is None:
                    continue
                previous.pop(state.name, None)
                table[state.name] = state
                changes.append(MetricChange(state, birth=True, from_certificate=event.from_certificate))
            _stale_all(previous, event.received_ms, changes)  # declared before, gone from this birth
            table.update(previous)
            return changes
        # the hot path (one pass per DATA message): locals instead of attribute lookups, and
        # each MetricChange built as the tuple it is
        get = table.get
        append = changes.append
        received_ms = event.received_ms
        for metric in event.metrics:
            name = metric.name
            old = get(name) if name is not None else None
            if old is None:
                continue  # the tracker resolved it against the birth, so this cannot happen
            state = _from_data(old, metric, received_ms)
            if metric.is_historical:
                self.historical_values += 1
                append(MetricChange(state, historical=True))
                continue
            if state.future_timestamp or state.old_timestamp:
                self.flagged_timestamps += 1
            if not _accepts(old, state):
                self.out_of_order_values += 1
                continue
            table[name] = state  # type: ignore[index]
            append(_new(MetricChange, (state, False, False, False)))
        return changes

    def _forget(self, event: MetricsRetired) -> None:
        """Metrics no birth declares any more, past their grace (the tracker's decision): they
        already went STALE; now they leave the model, so forged names cannot pile up in memory."""
        table = self._table(event.node[0], event.node[1], event.device_id)
        if table is None:
            return
        for name in event.names:
            state = table.get(name)
            if state is not None and state.quality is Quality.STALE:
                del table[name]
        node = self._nodes[event.node]
        device = node.devices.get(event.device_id) if event.device_id is not None else None
        if device is not None and not device.online and not device.metrics:
            del node.devices[device.device_id]  # a device no birth declares any more


def _accepts(old: MetricState, new: MetricState) -> bool:
    """The live-value rule: a newer sample replaces an older one; anything replaces a marker (Bad,
    STALE, degraded, flagged clock) or a placeholder, because a marker is the edge's statement and
    a recovery value keeps its real, older source time; and a flagged sample applies (it is the
    latest the edge received) without its wrong clock holding back the samples after it."""
    return (new.source_timestamp_ms >= old.source_timestamp_ms or old.is_marker or _no_value_yet(old)
            or new.future_timestamp or new.old_timestamp)


def _no_value_yet(state: MetricState) -> bool:
    """A null born without a Bad quality: the edge had no value yet (e.g. its OPC UA session was
    not up at the birth). The placeholder carries the birth time, so the first real value, whose
    source timestamp is older, must still replace it; otherwise a counter's baseline is lost."""
    return state.value is None and state.quality is Quality.GOOD


def _stale_all(table: dict[str, MetricState], at_ms: int, changes: list[Change]) -> None:
    for name, state in table.items():
        if state.quality is Quality.STALE:
            continue
        stale = state._replace(quality=Quality.STALE, timestamp_ms=at_ms, quality_reason=QualityReason.COMM_LOST.value)
        table[name] = stale
        changes.append(MetricChange(stale))


@dataclass(frozen=True, slots=True)
class _Flags:
    """What a metric's properties say beyond its value: status, clock flags, the edge's reason."""

    status_code: int | None = None
    future: bool = False
    old: bool = False
    reason: str | None = None
    raw: str | None = None


_NO_FLAGS = _Flags()


def _flags(metric: Metric) -> _Flags:
    props = metric.properties
    if not props:
        return _NO_FLAGS
    status = props.get(PROP_STATUS_CODE)
    status_code = status.value if status is not None and isinstance(status.value, int) else None
    return _Flags(status_code, _flag(props.get(PROP_FUTURE_TIMESTAMP)), _flag(props.get(PROP_OLD_TIMESTAMP)),
                  quality_reason(metric), raw_value(metric))


def _flag(prop: PropertyValue | None) -> bool:
    return prop is not None and prop.value is True


def _number(metric: Metric, key: str) -> float | None:
    prop = metric.properties.get(key) if metric.properties else None
    if prop is None or isinstance(prop.value, bool) or not isinstance(prop.value, (int, float)):
        return None
    return float(prop.value)


def _from_birth(group_id: str, edge_node_id: str, device_id: str | None, metric: Metric,
                received_ms: int) -> MetricState | None:
    if metric.name is None or metric.datatype is None:
        return None
    unit_prop = metric.properties.get(PROP_ENG_UNIT) if metric.properties else None
    timestamp = metric.timestamp if metric.timestamp is not None else received_ms
    flags = _flags(metric)
    return MetricState(
        group_id, edge_node_id, device_id, metric.name, None if metric.is_null else metric.value,
        metric.datatype.name, metric_quality(metric), timestamp, timestamp, received_ms, metric.alias,
        flags.status_code,
        unit_prop.value if unit_prop is not None and isinstance(unit_prop.value, str) else None,
        _number(metric, PROP_ENG_LOW), _number(metric, PROP_ENG_HIGH),
        _text(metric.metadata.description) if metric.metadata is not None else None,
        flags.future, metric.is_null, flags.reason, flags.raw, flags.old,
    )



def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


#: builds a named tuple from its fields in order, without the generated ``__new__`` (hot path)
_new = tuple.__new__


def _data_value(old: MetricState, metric: Metric) -> Any:
    """The value DATA leaves the metric with. A template instance in DATA may carry only the members
    that changed (tck-id-payloads-template-instance-members-data): it applies on top of the last
    instance, so the model (and the UNS) always holds the complete structure."""
    if metric.is_null:
        return None
    if isinstance(metric.value, Template) and isinstance(old.value, Template):
        return merge_instance(old.value, metric.value)
    return metric.value


def _from_data(old: MetricState, metric: Metric, received_ms: int) -> MetricState:
    timestamp = metric.timestamp if metric.timestamp is not None else received_ms
    if not metric.properties:
        # no properties: GOOD (``metric_quality``), no status, flags, reason or raw value
        # (``_flags``); the common case, built without those calls
        return _new(MetricState, (
            old.group_id, old.edge_node_id, old.device_id, old.name, _data_value(old, metric), old.datatype,
            Quality.GOOD, timestamp, timestamp, received_ms, old.alias, None, old.unit, old.eng_low, old.eng_high,
            old.description, False, metric.is_null, None, None, False))
    flags = _flags(metric)
    return _new(MetricState, (
        old.group_id, old.edge_node_id, old.device_id, old.name, _data_value(old, metric),
        old.datatype, metric_quality(metric), timestamp, timestamp, received_ms, old.alias, flags.status_code,
        old.unit, old.eng_low, old.eng_high, old.description, flags.future, metric.is_null, flags.reason,
        flags.raw, flags.old,
    ))
