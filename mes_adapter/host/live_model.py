"""The host's in-memory picture of the plant, and a change stream for the REST API and dashboard.

:class:`LiveModel` applies the tracker's events (births, data, deaths) to a tree of edge nodes,
devices and metrics, and returns the resulting :class:`Change` records; the MQTT shell hands
those to the UNS mirror and to every :meth:`LiveModel.subscribe` stream. Its rules:

* A birth restates every metric of a node or device; metrics the previous birth had and this one
  lacks turn STALE (they are gone from the session, not deleted).
* Historical metrics (``is_historical``: store-and-forward replay, back-fill) never overwrite the
  live value; they go to the change stream marked ``historical`` for consumers that want history.
* Within a session an older value never overwrites a newer one (metric timestamps); a birth and a
  death always apply (clocks of host and edge may differ across sessions).
* NDEATH, DDEATH and the host's own disconnect make every affected metric STALE, keeping its last
  value, stamped with the death time (tck-id-operational-behavior-edge-node-termination-host-action-*).

Metric states are frozen: a change carries the very object the model now holds, so a consumer
can keep it without copying. All of this runs on the event loop thread; nothing here is
thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from uns.conventions import (
    PROP_ENG_HIGH,
    PROP_ENG_LOW,
    PROP_ENG_UNIT,
    PROP_FUTURE_TIMESTAMP,
    PROP_STATUS_CODE,
    Quality,
    metric_quality,
)
from uns.sparkplug.model import Metric

from .jsonable import jsonable
from .tracker import DeviceBorn, DeviceDied, Event, MetricsChanged, NodeBorn, NodeDied, NodeKey


@dataclass(frozen=True, slots=True)
class MetricState:
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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": jsonable(self.value), "datatype": self.datatype,
                "quality": self.quality.value, "timestamp_ms": self.timestamp_ms,
                "source_timestamp_ms": self.source_timestamp_ms, "received_ms": self.received_ms,
                "alias": self.alias, "status_code": self.status_code, "unit": self.unit,
                "eng_low": self.eng_low, "eng_high": self.eng_high, "description": self.description}


@dataclass(frozen=True, slots=True)
class MetricChange:
    metric: MetricState
    #: True for a historical value: not applied to the live model, not mirrored
    historical: bool = False
    #: True when the state came from a birth (full restatement)
    birth: bool = False


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

    def _push(self, change: Change) -> None:
        if len(self._buffer) >= self._maxsize:
            if self.lossless:
                self._room.clear()
            else:
                self._buffer.popleft()
                self.dropped += 1
                self._model.dropped_changes += 1
        self._buffer.append(change)
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


class LiveModel:
    """Nodes, devices and metrics with value, quality and timestamps; a change stream."""

    def __init__(self, stream_size: int = 10_000) -> None:
        self.stream_size = stream_size
        self._nodes: dict[NodeKey, NodeView] = {}
        self._streams: set[ChangeStream] = set()
        self.dropped_changes = 0
        self.historical_values = 0
        self.out_of_order_values = 0

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
        else:
            return []
        if self._streams and changes:
            for stream in self._streams:
                for change in changes:
                    stream._push(change)
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
                changes.append(MetricChange(state, birth=True))
            _stale_all(previous, event.received_ms, changes)  # declared before, gone from this birth
            table.update(previous)
            return changes
        for metric in event.metrics:
            name = metric.name
            old = table.get(name) if name is not None else None
            if old is None:
                continue  # the tracker resolved it against the birth, so this cannot happen
            state = _from_data(old, metric, event.received_ms)
            if metric.is_historical:
                self.historical_values += 1
                changes.append(MetricChange(state, historical=True))
                continue
            if (old.quality is not Quality.STALE and not _no_value_yet(old)
                    and state.source_timestamp_ms < old.source_timestamp_ms):
                self.out_of_order_values += 1
                continue
            table[name] = state  # type: ignore[index]
            changes.append(MetricChange(state))
        return changes


def _no_value_yet(state: MetricState) -> bool:
    """A null born without a Bad quality: the edge had no value yet (e.g. its OPC UA session was
    not up at the birth). The placeholder carries the birth time, so the first real value, whose
    source timestamp is older, must still replace it; otherwise a counter's baseline is lost."""
    return state.value is None and state.quality is Quality.GOOD


def _stale_all(table: dict[str, MetricState], at_ms: int, changes: list[Change]) -> None:
    for name, state in table.items():
        if state.quality is Quality.STALE:
            continue
        stale = replace(state, quality=Quality.STALE, timestamp_ms=at_ms)
        table[name] = stale
        changes.append(MetricChange(stale))


def _props(metric: Metric) -> tuple[int | None, bool]:
    props = metric.properties
    if not props:
        return None, False
    status = props.get(PROP_STATUS_CODE)
    future = props.get(PROP_FUTURE_TIMESTAMP)
    status_code = status.value if status is not None and isinstance(status.value, int) else None
    return status_code, bool(future is not None and future.value is True)


def _number(metric: Metric, key: str) -> float | None:
    prop = metric.properties.get(key) if metric.properties else None
    if prop is None or isinstance(prop.value, bool) or not isinstance(prop.value, (int, float)):
        return None
    return float(prop.value)


def _from_birth(group_id: str, edge_node_id: str, device_id: str | None, metric: Metric,
                received_ms: int) -> MetricState | None:
    if metric.name is None or metric.datatype is None:
        return None
    status_code, future = _props(metric)
    unit_prop = metric.properties.get(PROP_ENG_UNIT) if metric.properties else None
    timestamp = metric.timestamp if metric.timestamp is not None else received_ms
    return MetricState(
        group_id, edge_node_id, device_id, metric.name, None if metric.is_null else metric.value,
        metric.datatype.name, metric_quality(metric), timestamp, timestamp, received_ms, metric.alias,
        status_code,
        unit_prop.value if unit_prop is not None and isinstance(unit_prop.value, str) else None,
        _number(metric, PROP_ENG_LOW), _number(metric, PROP_ENG_HIGH),
        _text(metric.metadata.description) if metric.metadata is not None else None,
        future, metric.is_null,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _from_data(old: MetricState, metric: Metric, received_ms: int) -> MetricState:
    status_code, future = _props(metric)
    timestamp = metric.timestamp if metric.timestamp is not None else received_ms
    return MetricState(
        old.group_id, old.edge_node_id, old.device_id, old.name, None if metric.is_null else metric.value,
        old.datatype, metric_quality(metric), timestamp, timestamp, received_ms, old.alias, status_code,
        old.unit, old.eng_low, old.eng_high, old.description, future, metric.is_null,
    )
