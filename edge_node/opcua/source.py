"""The OPC UA side of the edge node: one supervised session per endpoint, feeding validated updates.

Life of an :class:`OpcUaSource` (one per endpoint), forever until cancelled:

1. build a **new** asyncua Client (never reconnect the same instance: it can hang,
   FreeOpcUa/opcua-asyncio#1660) with the endpoint's security, connect, resolve ``nsu=`` node ids;
2. read every tag's current DataValue and announce each device it feeds with
   :class:`DeviceOnline` (→ DBIRTH with those values); node-level tags are submitted as updates;
3. create one iterator-mode subscription, one monitored item per tag with the server-side
   deadband (``DataChangeFilter``); items whose filter the server refuses are recreated without
   it (the client-side deadband in :mod:`edge_node.validation` always applies anyway);
4. pump notifications through the tag validators into the sink while a watchdog reads
   ``Server/ServerStatus/State`` every ``keepalive_interval_s`` and checks the subscription still
   publishes (keep-alives included);
5. on any failure: :class:`DeviceOffline` for every device of the endpoint (→ DDEATH), node-level
   tags become Bad (``BadNoCommunication``, ``QualityReason`` comm_lost), the Client is dropped, and
   we wait a jittered exponential backoff before going back to 1. Step 2 then publishes the
   current value and quality of *every* tag again (validators reset, ``force``: no duplicate or
   deadband suppression on the first value of a session); the initial notifications that repeat
   the values just read are suppressed as duplicates by the validators.

While connected, tags with ``max_age_s`` / ``frozen_after_s`` are checked every second.

Structured tags (``datatype: Template`` / ``DataSet``, docs/templates.md): their types are read at
each connect (:mod:`edge_node.opcua.structures`); an object instance tag has no value of its own, so
its member variables are read and monitored under their own client handles and combined into one
instance per change (:mod:`edge_node.object_instances`). While connected the types are read again
every ``type_check_interval_s``; when one changed (a PLC download changed a UDT or a function block)
the session stays up: the new definitions go to the sink (the node rebirths with the new versions),
the member variables an object type gained are monitored (those it lost are not), and the
structured tags are read again and re-announced (a DBIRTH with complete instances of the new type).
Why a periodic re-read and not the server's GeneralModelChangeEvent: docs/templates.md.

The sink is anything with the :class:`SourceSink` shape; the app passes
``edge_node.mqtt_client.SparkplugEdgeClient``. A sink that raises is logged, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asyncua import Client, ua
from asyncua.common.subscription import OverflowPolicy, StatusChangeEvent, Subscription

from uns.aio import run_until_first_done
from uns.commands.template_members import born_members
from uns.sparkplug.datatypes import DataType

from ..alarms import AlarmBook
from ..backoff import Backoff
from ..config import STRUCTURE_TAG_TYPES, DeadbandKind, OpcUaEndpointConfig, TagConfig
from ..heap import trim_heap
from ..model import DeviceOffline, DeviceOnline, MetricUpdate, TemplatesDefined
from ..object_instances import ObjectInstance
from ..quality_alarms import QualityAlarmBook
from ..templates import TemplateMappingError
from ..validation import (
    BAD_NODE_ID_UNKNOWN,
    DEFAULT_MAX_SOURCE_AGE_MS,
    Outcome,
    RawSample,
    TagValidator,
    ValidationStats,
)
from .alarms import AlarmSubscription
from .connection import OpcUaConnection, SessionDeadError, silence_check, watch_server_state
from .notifications import BatchDelivery, Change, DataChangeBatch, create_items, read_samples, sample_of
from .security import UntrustedServerCertificate
from .structures import StructureTypes, describe_structure_types, object_members, read_structure_types

log = logging.getLogger("edge_node.opcua_source")  # its name before edge_node.opcua

#: StatusCodes a server answers when it cannot apply a DataChangeFilter (deadband)
_FILTER_REFUSED = frozenset({
    ua.StatusCodes.BadDeadbandFilterInvalid, ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported, ua.StatusCodes.BadMonitoredItemFilterInvalid,
})
_BAD_DECODING = 0x80070000  # BadDecodingError: a structure value that does not map to its template
_CHUNK = 1000  # nodes per Read / CreateMonitoredItems request (servers cap these)
_AGE_CHECK_S = 1.0  # how often max_age_s / frozen_after_s are checked (their resolution)
#: changes processed per event-loop turn: a publish of 10,000 changes is handled in slices with
#: the loop free in between (the Sparkplug publisher's tick, the next PublishResponse), so one burst
#: does not hold every other task for its whole length (p99 at 50,000 tags, issue 20)
_SLICE = 500


class SourceSink(Protocol):
    """What the source feeds: the Sparkplug edge client (or a test double)."""

    def submit(self, update: MetricUpdate) -> None: ...

    def set_current(self, update: MetricUpdate) -> None: ...

    async def device_online(self, event: DeviceOnline) -> None: ...

    async def device_offline(self, event: DeviceOffline) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class SourceStats:
    connects: int = 0
    connect_failures: int = 0
    #: connect attempts refused because of the server's certificate (also in connect_failures)
    certificate_rejections: int = 0
    disconnects: int = 0
    #: keep-alive reads unanswered in time while the subscriptions still delivered (session kept)
    keepalive_late: int = 0
    notifications: int = 0
    monitored_items: int = 0
    server_deadband_refused: int = 0
    unknown_nodes: int = 0
    sink_errors: int = 0
    #: structured tags refused because their type has no template form (edge_node.templates)
    structure_errors: int = 0
    #: template types noticed changed on the server while connected (each one a rebirth)
    type_changes: int = 0
    connected: bool = False
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BoundTag:
    """A tag with its Sparkplug device, validator and, while connected, its resolved NodeId."""

    tag: TagConfig
    device_id: str | None
    validator: TagValidator
    handle: int
    node_id: ua.NodeId | None = None
    subscribed: bool = False


@dataclass
class _Announce:
    devices: dict[str, list[MetricUpdate]] = field(default_factory=dict)
    node_updates: list[MetricUpdate] = field(default_factory=list)


class OpcUaSource:
    """A supervised OPC UA session for one endpoint. ``await run()`` until cancelled."""

    def __init__(self, endpoint: OpcUaEndpointConfig, tags: Sequence[tuple[TagConfig, str | None]],
                 sink: SourceSink, *, data_dir: Path, stats: ValidationStats | None = None,
                 future_tolerance_ms: int = 1000, max_source_age_ms: int = DEFAULT_MAX_SOURCE_AGE_MS,
                 clock: Callable[[], int] = now_ms, alarm_book: AlarmBook | None = None,
                 quality_book: QualityAlarmBook | None = None) -> None:
        self.endpoint = endpoint
        #: the edge's data-quality events as alarms (edge_node.quality_alarms), when configured
        self.quality = quality_book
        self.sink = sink
        self.data_dir = data_dir
        self.clock = clock
        self.validation_stats = stats if stats is not None else ValidationStats()
        self.stats = SourceStats()
        self.bound = [
            BoundTag(tag, device, TagValidator(tag, device, stats=self.validation_stats,
                                               future_tolerance_ms=future_tolerance_ms,
                                               max_source_age_ms=max_source_age_ms), handle=i + 1)
            for i, (tag, device) in enumerate(tags)
        ]
        self._by_handle = {b.handle: b for b in self.bound}
        #: tags with max_age_s or frozen_after_s: checked every second while connected
        self._aging = [b for b in self.bound if b.tag.max_age_s is not None or b.tag.frozen_after_s is not None]
        self.devices: list[str] = sorted({b.device_id for b in self.bound if b.device_id is not None})
        self.backoff = Backoff(endpoint.reconnect_min_s, endpoint.reconnect_max_s)
        self.connected = asyncio.Event()
        #: set the first time the current values were read and handed over (the first NBIRTH waits for it)
        self.first_read = asyncio.Event()
        self.has_node_tags = any(b.device_id is None for b in self.bound)
        #: OPC UA Alarms & Conditions of this endpoint (edge_node.opcua.alarms), when configured
        self.alarms = (AlarmSubscription(endpoint, endpoint.alarms, alarm_book, self._submit, clock)
                       if alarm_book is not None and endpoint.alarms is not None else None)
        self._announced = False
        #: the data subscription's batches of changes, set at each connect (edge_node.opcua.notifications)
        self._delivery: BatchDelivery | None = None
        #: structured tags (datatype Template / DataSet): their types are read at every connect
        self._structured = [b for b in self.bound if b.tag.datatype in STRUCTURE_TAG_TYPES]
        self._types: StructureTypes | None = None
        #: the first NBIRTH waits for this source's first read: it declares the template definitions
        self.has_structured_tags = bool(self._structured)
        #: handle -> the decoded structure last published Good (DATA then carries only what changed)
        self._last_structure: dict[int, Any] = {}
        #: object instance tags (handle -> their members' samples) and member handle -> (tag handle, member)
        self._objects: dict[int, ObjectInstance] = {}
        self._members: dict[int, tuple[int, str]] = {}
        #: (tag handle, member) -> member handle, kept for the source's life: a monitored item keeps its
        #: handle when its object's type changes while connected; and member handle -> its item id
        self._member_handles: dict[tuple[int, str], int] = {}
        self._member_items: dict[int, int] = {}
        self.connection = OpcUaConnection(endpoint, data_dir, label=f"endpoint {endpoint.name}",
                                          session=self._session, on_error=self._failed, on_closed=self._closed,
                                          on_lost=self._lost, backoff=self.backoff)

    # -- supervisor (the loop itself: edge_node.opcua.connection) ----------------------------

    async def run(self) -> None:
        """Connect, stream, and reconnect forever; returns only by cancellation."""
        await self.connection.run()

    def _failed(self, exc: Exception) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if self._announced:
            log.warning("endpoint %s: session lost: %s", self.endpoint.name, self.stats.last_error)
        else:
            self.stats.connect_failures += 1
            log.warning("endpoint %s (%s): cannot connect: %s", self.endpoint.name, self.endpoint.url,
                        self.stats.last_error)
        if isinstance(exc, UntrustedServerCertificate):
            self.stats.certificate_rejections += 1

    def _closed(self) -> None:
        self.connected.clear()
        self.stats.connected = False

    async def _lost(self) -> None:
        if self._announced:
            self.stats.disconnects += 1
            if self.alarms is not None:
                self.alarms.session_lost()
            await self._announce_offline(self.stats.last_error or "session ended")

    async def _session(self, client: Client) -> None:
        self.stats.connects += 1
        await self._resolve_node_ids(client)
        if self._structured:
            await self._read_types(client)
        announce = await self._read_current(client)
        if self.alarms is not None:  # subscribe + ConditionRefresh first: the DBIRTH states the true alarm set
            await self.alarms.start(client)
            for device in self.alarms.book.devices:
                announce.devices.setdefault(device, []).extend(self.alarms.book.current(device))
        await self._announce_online(announce)
        queue_size = self.endpoint.queue_maxsize or max(10_000, 20 * len(self.bound))
        # the queue holds batches (one per publish); BatchDelivery bounds the notifications in them
        sub = await client.create_subscription(self.endpoint.publishing_interval_ms, None,
                                               queue_maxsize=queue_size, overflow=OverflowPolicy.WARN)
        self._delivery = BatchDelivery(client, sub, queue_size)
        await self._create_items(sub)
        self.stats.connected = True
        self.connected.set()
        self.backoff.reset()
        trim_heap()  # what the reads, the births and the item requests left free (edge_node.heap)
        log.info("endpoint %s: connected to %s, %d tag(s) (%d monitored), devices %s", self.endpoint.name,
                 self.endpoint.url, len(self.bound), self.stats.monitored_items, self.devices)
        await self._pump(client, sub)

    def template_members(self, device_id: str | None, metric: str) -> dict[str, DataType] | None:
        """The members (path -> datatype) this source publishes for a template instance metric, as
        its current types say; None when it reads no such template tag (or its type is unknown)."""
        bound = next((b for b in self._structured if b.device_id == device_id and b.tag.metric == metric
                      and b.tag.datatype is DataType.Template), None)
        node = (self._types.nodes.get(bound.node_id) if self._types is not None and bound is not None
                and bound.node_id is not None else None)
        if node is None or self._types is None:
            return None
        return born_members(self._types.catalog.definition(node.type_id))

    # -- connect steps ------------------------------------------------------------------------

    async def _resolve_node_ids(self, client: Client) -> None:
        """Parse node ids; ``nsu=`` ones get this server's namespace index (it can change on restart)."""
        namespaces: list[str] | None = None
        for bound in self.bound:
            parsed = ua.NodeId.from_string(bound.tag.node_id)
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                if namespaces is None:
                    namespaces = list(await client.get_namespace_array())
                if uri not in namespaces:
                    bound.node_id = None
                    continue
                parsed = ua.NodeId(parsed.Identifier, namespaces.index(uri), parsed.NodeIdType)
            elif isinstance(parsed, ua.ExpandedNodeId):
                parsed = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
            bound.node_id = parsed

    async def _read_types(self, client: Client) -> None:
        """The structure types of the structured tags, from the server; then the NBIRTH's definitions.

        A tag whose type the server cannot describe (or that is not a structured variable) is
        refused by name and left out (no node id: it is published Bad), the others keep flowing."""
        wanted = {b.handle: b.node_id for b in self._structured if b.node_id is not None}
        try:
            self._types = await read_structure_types(client, list(wanted.values()))
        except TemplateMappingError:
            good = []
            for handle, node_id in wanted.items():
                try:
                    await read_structure_types(client, [node_id])
                    good.append(node_id)
                except TemplateMappingError as exc:
                    self.stats.structure_errors += 1
                    log.error("endpoint %s: %s cannot be a template: %s", self.endpoint.name,
                              self._by_handle[handle].tag.metric, exc)
                    self._by_handle[handle].node_id = None
            self._types = await read_structure_types(client, good)
        await self._bind_objects(client)
        definitions = TemplatesDefined(tuple(self._types.catalog.definition_metrics(self.clock())))
        handler = getattr(self.sink, "templates_defined", None)
        if handler is not None:
            await self._sink_call(handler(definitions))

    async def _bind_objects(self, client: Client) -> None:
        """Object instance tags: find their member variables, each monitored under its own handle
        (edge_node.object_instances combines them into one instance)."""
        self._objects.clear()
        self._members.clear()
        assert self._types is not None
        for bound in self._structured:
            node = self._types.nodes.get(bound.node_id) if bound.node_id is not None else None
            if node is None or node.kind != "object":
                continue
            names = [m.name for m in self._types.catalog.shape(node.type_id).members]
            try:
                members = await object_members(client, node.node_id, names)
            except TemplateMappingError as exc:
                self.stats.structure_errors += 1
                log.error("endpoint %s: %s cannot be a template: %s", self.endpoint.name, bound.tag.metric, exc)
                bound.node_id = None
                continue
            self._objects[bound.handle] = ObjectInstance(members)
            for name in members:
                key = (bound.handle, name)
                handle = self._member_handles.setdefault(key, len(self.bound) + 1 + len(self._member_handles))
                self._members[handle] = key

    def _member_nodes(self) -> dict[int, ua.NodeId]:
        """Member handle -> the member variable it monitors."""
        return {h: self._objects[tag].members[name] for h, (tag, name) in self._members.items()}

    def _mapped(self, bound: BoundTag, sample: RawSample) -> RawSample:
        """A structured tag's sample with its value mapped to a complete Template or a DataSet."""
        if bound.tag.datatype not in STRUCTURE_TAG_TYPES or sample.value is None or self._types is None:
            return sample
        node = self._types.nodes.get(bound.node_id) if bound.node_id is not None else None
        if node is None:
            return RawSample(None, BAD_NODE_ID_UNKNOWN, sample.source_ts_ms, sample.server_ts_ms)
        try:
            catalog = self._types.catalog
            value = (catalog.dataset(node.type_id, sample.value) if node.array
                     else catalog.instance(node.type_id, sample.value))
        except TemplateMappingError as exc:
            log.error("endpoint %s: a value of %s does not map: %s", self.endpoint.name, bound.tag.metric, exc)
            return RawSample(None, _BAD_DECODING, sample.source_ts_ms, sample.server_ts_ms)
        return RawSample(value, sample.status_code, sample.source_ts_ms, sample.server_ts_ms)

    def _changes_only(self, bound: BoundTag, raw: Any, update: MetricUpdate, *, full: bool) -> MetricUpdate | None:
        """Report by exception inside a template: after a complete instance, DATA carries only the
        members that changed (docs/templates.md); None when none did. A DataSet goes whole."""
        if bound.tag.datatype is not DataType.Template:
            return update
        last = self._last_structure.pop(bound.handle, None)
        if update.is_null or update.value is None:
            return update  # Bad: the next Good value is complete again
        self._last_structure[bound.handle] = raw
        if full or last is None or self._types is None or bound.node_id not in self._types.nodes:
            return update
        delta = self._types.catalog.delta(self._types.nodes[bound.node_id].type_id, last, raw)
        if delta is None:
            return None
        update.value = delta
        return update

    async def _read_current(self, client: Client, tags: Sequence[BoundTag] | None = None) -> _Announce:
        """Read the current value of ``tags`` (default every tag) for a (re)announcement."""
        announce = _Announce()
        now = self.clock()
        tags = self.bound if tags is None else tags
        handles = {b.handle for b in tags}
        values = await self._read_values(client, [(h, n) for h, n in self._item_nodes()
                                                  if self._members.get(h, (h, ""))[0] in handles])
        for member_handle, (handle, member) in self._members.items():
            if handle not in handles:
                continue
            sample = values.get(member_handle) or RawSample(None, BAD_NODE_ID_UNKNOWN)
            self._objects[handle].update(member, sample)
        for handle in handles & self._objects.keys():
            self._objects[handle].read = True
        for bound in tags:
            bound.validator.reset()
            instance = self._objects.get(bound.handle)
            sample = (instance.sample() if instance is not None
                      else values.get(bound.handle) or RawSample(None, BAD_NODE_ID_UNKNOWN))
            raw = sample.value
            sample = self._mapped(bound, sample)
            if sample.status_code == BAD_NODE_ID_UNKNOWN:
                self.stats.unknown_nodes += 1
                log.error("endpoint %s: node %s (%s) is unknown to the server", self.endpoint.name,
                          bound.tag.node_id, bound.tag.metric)
            outcome = bound.validator.process(sample, now, force=True)
            self._log_outcome(outcome)
            if self.quality is not None:  # the birth below states the result
                self.quality.observe(bound.device_id, bound.tag.metric, outcome, now)
            if outcome.update is not None:
                outcome.update = self._changes_only(bound, raw, outcome.update, full=True)
            if outcome.update is None:
                continue
            if bound.device_id is None:
                announce.node_updates.append(outcome.update)
            else:
                announce.devices.setdefault(bound.device_id, []).append(outcome.update)
        if self.quality is not None:
            for device in self.devices:
                announce.devices.setdefault(device, []).extend(self.quality.current(device, now))
        return announce

    def _item_nodes(self) -> list[tuple[int, ua.NodeId]]:
        """(client handle, node id) of every node read and monitored: each tag's node, except that an
        object instance tag (which has no value of its own) is its member variables."""
        items = [(b.handle, b.node_id) for b in self.bound if b.node_id is not None and b.handle not in self._objects]
        items += [(member_handle, self._objects[handle].members[member])
                  for member_handle, (handle, member) in self._members.items()]
        return items

    @staticmethod
    async def _read_values(client: Client, items: list[tuple[int, ua.NodeId]]) -> dict[int, RawSample]:
        """Client handle -> the node's current value, read :data:`_CHUNK` nodes per request."""
        values: dict[int, RawSample] = {}
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            samples = await read_samples(client, [node_id for _handle, node_id in chunk])
            values.update(zip([handle for handle, _node_id in chunk], samples, strict=True))
        return values

    async def _announce_online(self, announce: _Announce, devices: Sequence[str] | None = None) -> None:
        self._announced = True
        for device in self.devices if devices is None else devices:
            await self._sink_call(self.sink.device_online(DeviceOnline(device, announce.devices.get(device, []))))
        for update in announce.node_updates:
            self._submit(update, current=True)
        self.first_read.set()

    async def _announce_offline(self, reason: str) -> None:
        self._announced = False
        for device in self.devices:
            await self._sink_call(self.sink.device_offline(DeviceOffline(device, reason)))
        now = self.clock()
        for bound in self.bound:
            if bound.device_id is None:
                outcome = bound.validator.comm_lost(now)
                self._log_outcome(outcome)
                if outcome.update is not None:
                    self._submit(outcome.update)
            else:
                bound.validator.reset()

    async def _create_items(self, sub: Subscription) -> None:
        wanted = [b for b in self.bound if b.node_id is not None and b.handle not in self._objects]
        for bound in self.bound:
            bound.subscribed = False
        self._member_items.clear()
        await self._create_member_items(sub, list(self._members))
        refused: list[BoundTag] = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            results = await create_items(
                sub, [self._item_request(b, with_filter=self.endpoint.server_deadband) for b in chunk])
            refused += self._check_items(chunk, results, filtered=self.endpoint.server_deadband)
        if refused:
            self.stats.server_deadband_refused += len(refused)
            log.info("endpoint %s: server refused the deadband filter of %d tag(s); deadband applied "
                     "client-side", self.endpoint.name, len(refused))
            for start in range(0, len(refused), _CHUNK):
                chunk = refused[start:start + _CHUNK]
                results = await create_items(sub, [self._item_request(b, with_filter=False) for b in chunk])
                self._check_items(chunk, results, filtered=False)
        self.stats.monitored_items = sum(1 for b in self.bound if b.subscribed)

    async def _create_member_items(self, sub: Subscription, member_handles: list[int]) -> None:
        """One monitored item per member variable of each object instance tag (no deadband: deadbands
        do not apply to structured tags); the tag counts as subscribed when every member is."""
        items = [(h, self._objects[self._members[h][0]].members[self._members[h][1]],
                  self._by_handle[self._members[h][0]]) for h in member_handles]
        failed: set[int] = set()
        for start in range(0, len(items), _CHUNK):
            chunk = items[start:start + _CHUNK]
            results = await create_items(
                sub, [self._item_request(bound, with_filter=False, node_id=node_id, handle=h)
                      for h, node_id, bound in chunk])
            for (h, node_id, bound), result in zip(chunk, results, strict=False):
                if isinstance(result, ua.StatusCode):
                    failed.add(bound.handle)
                    log.error("endpoint %s: cannot monitor member %s of %s: %s", self.endpoint.name,
                              node_id.to_string(), bound.tag.metric, result.name)
                else:
                    self._member_items[h] = result
        for handle in {self._members[h][0] for h in member_handles}:
            self._by_handle[handle].subscribed = handle not in failed

    def _check_items(self, chunk: list[BoundTag], results: list[Any], *, filtered: bool) -> list[BoundTag]:
        refused: list[BoundTag] = []
        for bound, result in zip(chunk, results, strict=False):
            if isinstance(result, ua.StatusCode):
                if filtered and result.value in _FILTER_REFUSED and bound.tag.deadband is not None:
                    refused.append(bound)
                else:
                    log.error("endpoint %s: cannot monitor %s (%s): %s", self.endpoint.name, bound.tag.node_id,
                              bound.tag.metric, result.name)
            else:
                bound.subscribed = True
        return refused

    def _item_request(self, bound: BoundTag, *, with_filter: bool, node_id: ua.NodeId | None = None,
                      handle: int | None = None) -> ua.MonitoredItemCreateRequest:
        """The monitored item of a tag (or, with ``node_id`` and ``handle``, of an object member)."""
        tag = bound.tag
        rv = ua.ReadValueId()
        rv.NodeId = bound.node_id if node_id is None else node_id
        rv.AttributeId = ua.AttributeIds.Value
        params = ua.MonitoringParameters()
        params.ClientHandle = bound.handle if handle is None else handle
        sampling = tag.sampling_interval_ms
        params.SamplingInterval = self.endpoint.sampling_interval_ms if sampling is None else sampling
        params.QueueSize = self.endpoint.queue_size
        params.DiscardOldest = True
        if with_filter and tag.deadband is not None:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            if tag.deadband.kind is DeadbandKind.PERCENT:
                flt.DeadbandType = ua.DeadbandType.Percent
                flt.DeadbandValue = tag.deadband.value
            else:
                scale = abs(tag.linear[0]) or 1.0
                flt.DeadbandType = ua.DeadbandType.Absolute
                flt.DeadbandValue = tag.deadband.value / scale  # the server compares raw values
            params.Filter = flt
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = rv
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = params
        return request

    # -- streaming ----------------------------------------------------------------------------

    async def _pump(self, client: Client, sub: Subscription) -> None:
        tasks = [asyncio.create_task(self._consume(sub), name=f"opcua-consume-{self.endpoint.name}"),
                 asyncio.create_task(self._watchdog(client, sub), name=f"opcua-watchdog-{self.endpoint.name}")]
        if self.alarms is not None:
            tasks.append(asyncio.create_task(self.alarms.consume(), name=f"opcua-alarms-{self.endpoint.name}"))
        if self._aging:
            tasks.append(asyncio.create_task(self._check_ages(), name=f"opcua-ages-{self.endpoint.name}"))
        if self._structured and self.endpoint.type_check_interval_s is not None:
            tasks.append(asyncio.create_task(self._watch_types(client, sub), name=f"opcua-types-{self.endpoint.name}"))
        await run_until_first_done(*tasks)  # raises the failure that ended the session
        raise SessionDeadError("notification stream ended")

    async def _watch_types(self, client: Client, sub: Subscription) -> None:
        """While connected: read the template tags' types every ``type_check_interval_s``; when they
        differ from those published, take the new ones on without dropping the session."""
        assert self.endpoint.type_check_interval_s is not None
        while True:
            await asyncio.sleep(self.endpoint.type_check_interval_s)
            if await self._types_changed(client):
                await self._retype(client, sub)

    async def _types_changed(self, client: Client) -> bool:
        """Do the types of the (mapped) template tags differ from the published ones? A type that no
        longer maps counts as changed: :meth:`_retype` then refuses its tags by name."""
        if self._types is None:
            return False
        nodes = [b.node_id for b in self._structured if b.node_id is not None]
        try:
            now = await describe_structure_types(client, nodes)
        except TemplateMappingError:
            return True
        return type_signature(now) != type_signature(self._types)

    async def _retype(self, client: Client, sub: Subscription) -> None:
        """A type changed on the server: new definitions (the sink rebirths the node with them), the
        object members gained monitored and those lost dropped, the structured tags read again and
        their devices re-announced (complete instances of the new version). Other tags are untouched."""
        self.stats.type_changes += 1
        before = self._member_nodes()
        await self._read_types(client)
        log.warning("endpoint %s: a template type changed on the server; rebirth with %s", self.endpoint.name,
                    self._types.catalog.versions if self._types is not None else {})
        after = self._member_nodes()
        stale = [h for h, node_id in before.items() if after.get(h) != node_id]  # gone, or another variable now
        items = [self._member_items.pop(h) for h in stale if h in self._member_items]
        if items:
            await sub.unsubscribe(items)
        await self._create_member_items(sub, [h for h in after if h not in before or h in stale])
        self.stats.monitored_items = sum(1 for b in self.bound if b.subscribed)
        tags = list(self._structured)
        devices = sorted({b.device_id for b in tags if b.device_id is not None})
        await self._announce_online(await self._read_current(client, tags), devices)

    async def _check_ages(self) -> None:
        """While connected: tags silent for ``max_age_s`` turn STALE, unchanged for ``frozen_after_s``
        UNCERTAIN (:meth:`TagValidator.check_age`); the next sample or change brings them back."""
        while True:
            await asyncio.sleep(_AGE_CHECK_S)
            now = self.clock()
            for bound in self._aging:
                outcome = bound.validator.check_age(now)
                if outcome.update is not None:
                    log.warning("endpoint %s: %s is %s", self.endpoint.name, bound.tag.metric,
                                bound.validator.degraded)
                    self._submit(outcome.update)
                    self._quality_alarms(bound, outcome, now)

    async def _consume(self, sub: Subscription) -> None:
        """Every batch of changes (one per publish, edge_node.opcua.notifications) in the server's
        order, :data:`_SLICE` changes per loop turn."""
        delivery = self._delivery
        assert delivery is not None
        async for event in sub:
            if isinstance(event, DataChangeBatch):
                items = event.items
                try:
                    for start in range(0, len(items), _SLICE):
                        if start:
                            await asyncio.sleep(0)  # let the publisher and the publish loop run
                        self._changes(items, start, start + _SLICE)
                finally:
                    delivery.done(event)
            elif isinstance(event, StatusChangeEvent):
                status = event.notification.Status
                if status is not None and not status.is_good():
                    raise SessionDeadError(f"subscription status {status.name}")

    def _changes(self, items: list[Change], start: int, stop: int) -> None:
        """Validate and hand over ``items[start:stop]``; one clock reading for the slice."""
        now = self.clock()
        members = self._members
        by_handle = self._by_handle
        slice_ = items[start:stop]
        self.stats.notifications += len(slice_)
        for handle, sample in slice_:
            member = members.get(handle)
            bound = by_handle.get(member[0] if member is not None else handle)
            if bound is None:
                continue
            try:
                if member is not None:  # a member of an object instance tag: the whole instance
                    instance = self._objects.get(member[0])
                    if instance is None:  # being bound again (a type change): its read follows
                        continue
                    instance.update(member[1], sample)
                    if not instance.read:  # not complete yet: the read that follows announces it
                        continue
                    sample = instance.sample()
                raw = sample.value
                outcome = bound.validator.process(self._mapped(bound, sample), now)
                if outcome.update is not None:
                    outcome.update = self._changes_only(bound, raw, outcome.update, full=False)
            except Exception:  # a malformed value from the peer must not stop the stream
                log.exception("endpoint %s: cannot process a value of %s", self.endpoint.name,
                              bound.tag.metric)
                continue
            if outcome.event is not None or outcome.drop is not None:
                self._log_outcome(outcome)
            if outcome.update is not None:
                self._submit(outcome.update)
            if self.quality is not None:
                self._quality_alarms(bound, outcome, now)

    async def _watchdog(self, client: Client, sub: Subscription) -> None:
        keepalive_count = int(sub.parameters.RequestedMaxKeepAliveCount or 1)
        alarm_sub = self.alarms.subscription if self.alarms is not None else None

        def heard() -> float | None:
            times = [t for t in (sub.last_publish_at, alarm_sub.last_publish_at if alarm_sub else None) if t]
            return max(times, default=None)

        def late() -> None:
            self.stats.keepalive_late += 1

        # the session has one publish request in flight (asyncua), so an alarm flood's responses can
        # starve the data subscription's keep-alives for seconds: either subscription publishing
        # proves the session; once the flood ends the data subscription's own keep-alives resume
        await watch_server_state(client, self.endpoint, heard=heard, on_late=late,
                                 check=silence_check(self.endpoint, heard, keepalive_count))

    # -- helpers ------------------------------------------------------------------------------

    def _quality_alarms(self, bound: BoundTag, outcome: Outcome, now: int) -> None:
        """The alarm changes a tag's outcome makes, after the tag's own update (quality_alarms)."""
        if self.quality is not None and (outcome.event is not None or outcome.update is not None):
            for update in self.quality.observe(bound.device_id, bound.tag.metric, outcome, now):
                self._submit(update)

    def _submit(self, update: MetricUpdate, *, current: bool = False) -> None:
        try:
            if current:
                self.sink.set_current(update)
            else:
                self.sink.submit(update)
        except Exception:
            self.stats.sink_errors += 1
            log.exception("endpoint %s: the sink refused an update of %s", self.endpoint.name, update.name)

    async def _sink_call(self, awaitable: Any) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.sink_errors += 1
            log.exception("endpoint %s: the sink failed a device announcement", self.endpoint.name)

    def _log_outcome(self, outcome: Outcome) -> None:
        if outcome.event is not None:
            log.warning("quality event: %s", outcome.event.describe(),
                        extra={"quality_event": outcome.event.kind.value, "metric": outcome.event.metric,
                               "device_id": outcome.event.device_id,
                               "status_code": outcome.event.status_code,
                               "started_ms": outcome.event.started_ms, "duration_ms": outcome.event.duration_ms})
        if outcome.drop is not None and outcome.drop.log:
            log.warning("dropped (%s): %s", outcome.drop.reason.value, outcome.drop.detail)


def type_signature(types: StructureTypes) -> tuple[dict[str, str], dict[ua.NodeId, tuple[ua.NodeId, bool]]]:
    """What must stay equal for the published definitions to stay right: every template's version
    and each tag node's type (a variable can be given another DataType)."""
    return types.catalog.versions, {n: (node.type_id, node.array) for n, node in types.nodes.items()}


#: an asyncua DataValue as a library-neutral RawSample (the reads at connect; changes: notifications)
to_sample = sample_of
