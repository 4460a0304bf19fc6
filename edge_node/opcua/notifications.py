"""Data changes straight from the PublishResponse bytes: one batch per publish, no per-item objects.

Why: at 10,000 tags and 20,000 changes/s (bench/edge_pipeline.py, py-spy, 2026-12-03) asyncua's
generic decoding of PublishResponses was ~36 % of the edge's CPU (13.5 µs per notification measured
alone: a ``MonitoredItemNotification``, ``DataValue``, ``Variant``, ``StatusCode`` and two
``datetime`` per change, an enum lookup per Variant), and its iterator path another ~10 % (a
``DataChangeNotif`` and a frozen ``DataChangeEvent`` per item, one ``asyncio.Queue`` put/get per
item). The edge needs none of those objects: it wants (client handle, value, status, source ms,
server ms). Here a data change notification is decoded into exactly that, a
:class:`~edge_node.validation.RawSample` per item, and handed over as one :class:`DataChangeBatch`
per notification, which the source processes in bounded slices (edge_node.opcua.source).

Scalar Boolean and numeric values (the bulk of a plant) are read here with ``struct``; every other
Variant (strings, arrays, structures, LocalizedText ...) is decoded by asyncua's own
``variant_from_binary`` at its offset, so those values are exactly what asyncua produces.
Timestamps become ms since the epoch from the 100 ns ticks directly (no ``datetime``; the OPC UA
null date and earlier → None, as :func:`edge_node.validation.datetime_to_ms` says).

The asyncua internals this relies on (asyncua 2.1; tests/edge_node/test_opcua_notifications.py fails
if an upgrade changes any of them), both overridden on one instance, never on the class:

1. ``UaSession.publish(acks)`` sends a ``PublishRequest`` with ``_send_request(request, timeout=0)``
   and returns the decoded ``PublishResponse``; its publish loop reads only ``SubscriptionId``,
   ``NotificationMessage.SequenceNumber`` and ``NotificationData``, then calls the subscription's
   ``publish_callback``. Our ``publish`` decodes responses of *our* data subscriptions with
   :func:`decode_publish_response` (others, e.g. the alarm subscription's: asyncua's decoder);
2. ``Subscription._explode_datachange(notification)`` is what ``publish_callback`` calls per
   ``DataChangeNotification`` to make queue events; ours yields one :class:`DataChangeBatch` (from a
   :class:`DataChanges` of 1, or from an asyncua-decoded notification after a Republish).

Because of 2., asyncua's per-item bookkeeping (``Subscription._monitored_items``: a
``SubscriptionItemData`` and a ``Node`` per item, read only by the per-item notification path we
replace and by asyncua's own re-subscription, which the edge does not use: it builds a new Client per
session) is not needed; :func:`create_items` creates monitored items without it (~300 bytes and a few
µs per item, 15 MB at 50,000 tags). ``Subscription.unsubscribe`` accepts items it never registered.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import (
    Primitives,
    extensionobject_from_binary,
    from_binary,
    nodeid_from_binary,
    struct_from_binary,
    variant_from_binary,
)
from asyncua.ua.uaerrors import UaStructParsingError

from ..validation import RawSample, datetime_to_ms

log = logging.getLogger("edge_node.opcua.notifications")

#: the binary encoding id of a DataChangeNotification inside NotificationData (OPC UA Part 6)
DATA_CHANGE_ENCODING = ua.NodeId(ua.ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
#: 100 ns ticks from the OPC UA epoch (1601-01-01) to the Unix epoch
_EPOCH_TICKS = 116_444_736_000_000_000

_HANDLE_MASK = struct.Struct("<IB").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_I64 = struct.Struct("<q").unpack_from
_U16_SIZE = 2
#: scalar Variant encoding byte (no array bits) -> (unpack, size): Boolean .. Double (Part 6 §5.1.2)
_SCALARS: dict[int, tuple[Callable[[bytes, int], tuple[Any, ...]], int]] = {
    code: (struct.Struct(fmt).unpack_from, struct.calcsize(fmt))
    for code, fmt in {1: "<?", 2: "<b", 3: "<B", 4: "<h", 5: "<H", 6: "<i", 7: "<I", 8: "<q", 9: "<Q",
                      10: "<f", 11: "<d"}.items()
}

Change = tuple[int, RawSample]
"""One monitored item's notification: its client handle and its value as a RawSample."""


@dataclass
class DataChanges(ua.DataChangeNotification):
    """A DataChangeNotification decoded here: its changes are in ``items``, ``MonitoredItems`` stays
    empty. A subclass so that asyncua's ``publish_callback`` routes it to ``_explode_datachange``."""

    items: list[Change] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DataChangeBatch:
    """What the data subscription's queue carries instead of one DataChangeEvent per item: every
    change of one notification, in the server's order. ``replayed``: retrieved by Republish."""

    items: list[Change]
    replayed: bool = False


def decode_data_changes(raw: bytes) -> tuple[DataChanges, int]:
    """The body of a DataChangeNotification → (:class:`DataChanges`, bytes read)."""
    items, pos = _data_values(raw, 4, _I32(raw, 0)[0], handles=True)
    buf = Buffer(raw, pos)
    diagnostics = from_binary(list[ua.DiagnosticInfo], buf)
    return DataChanges(DiagnosticInfos=diagnostics, items=items), buf.cur_pos


def _data_values(raw: bytes, pos: int, count: int, *, handles: bool) -> tuple[list[Any], int]:
    """``count`` DataValues from ``pos`` → (samples, position after them). ``handles``: each is the
    body of a MonitoredItemNotification (a UInt32 client handle first) and comes as a :data:`Change`;
    otherwise each is a bare DataValue (a ReadResponse's results) and comes as a RawSample."""
    items: list[Any] = []
    append = items.append
    scalars = _SCALARS
    new = tuple.__new__  # RawSample(...) through NamedTuple's generated __new__ costs a frame more
    epoch = _EPOCH_TICKS
    handle = 0
    for _ in range(max(count, 0)):
        if handles:
            handle, mask = _HANDLE_MASK(raw, pos)
            pos += 5
        else:
            mask = raw[pos]
            pos += 1
        value = None
        status = 0
        source = server = None
        if mask & 1:
            kind = raw[pos]
            scalar = scalars.get(kind)
            if scalar is not None:
                value = scalar[0](raw, pos + 1)[0]
                pos += 1 + scalar[1]
            elif kind == 0:
                pos += 1
            else:  # anything but a plain scalar: asyncua's own decoding, exactly
                buf = Buffer(raw, pos)
                value = variant_from_binary(buf).Value
                pos = buf.cur_pos
        if mask & 2:
            status = _U32(raw, pos)[0]
            pos += 4
        if mask & 4:  # inline _ticks_to_ms: two per change
            ticks = _I64(raw, pos)[0]
            source = (ticks - epoch) // 10_000 if ticks > 0 else None
            pos += 8
        if mask & 8:
            ticks = _I64(raw, pos)[0]
            server = (ticks - epoch) // 10_000 if ticks > 0 else None
            pos += 8
        if mask & 16:
            pos += _U16_SIZE
        if mask & 32:
            pos += _U16_SIZE
        sample = new(RawSample, (value, status, source, server))
        append((handle, sample) if handles else sample)
    return items, pos


async def read_samples(client: Client, node_ids: Sequence[ua.NodeId]) -> list[RawSample]:
    """The current Value of each of ``node_ids`` (one Read, timestamps Both) as RawSamples, decoded
    from the ReadResponse bytes like the notifications (asyncua would build a DataValue, Variant,
    StatusCode and two datetimes per node: at 50,000 tags ~4 s of the edge's start, issue 20).
    The request and the response header go through asyncua (a bad ServiceResult raises its error)."""
    request = ua.ReadRequest()
    params = request.Parameters
    params.TimestampsToReturn = ua.TimestampsToReturn.Both
    value_attribute = ua.AttributeIds.Value
    for node_id in node_ids:
        params.NodesToRead.append(ua.ReadValueId(NodeId=node_id, AttributeId=value_attribute))
    data = await client.uaclient.session._send_request(request)
    nodeid_from_binary(data)  # the response's TypeId
    struct_from_binary(ua.ResponseHeader, data).ServiceResult.check()
    raw = bytes(data)
    samples, _pos = _data_values(raw, 4, _I32(raw, 0)[0], handles=False)
    if len(samples) != len(node_ids):
        raise UaStructParsingError(f"a Read of {len(node_ids)} node(s) answered {len(samples)} value(s)")
    return samples


def _notification(data: Buffer) -> Any:
    """One NotificationData ExtensionObject: DataChanges for data changes, else asyncua's object."""
    probe = data.copy()
    typeid = nodeid_from_binary(probe)
    encoding = ord(probe.read(1))
    if typeid != DATA_CHANGE_ENCODING or not encoding & 1:
        return extensionobject_from_binary(data)
    length = Primitives.Int32.unpack(probe)
    if length < 0:
        return extensionobject_from_binary(data)
    consumed = len(data) - len(probe)
    changes, _used = decode_data_changes(probe.read(length))  # NotEnoughData when truncated
    data.skip(consumed + length)
    return changes


def decode_publish_response(data: Buffer, compact: Collection[int]) -> ua.PublishResponse:
    """A PublishResponse as asyncua decodes it, except that the data change notifications of the
    subscriptions in ``compact`` are :class:`DataChanges`."""
    start = data.copy()
    typeid = nodeid_from_binary(data)
    header = struct_from_binary(ua.ResponseHeader, data)
    subscription_id = Primitives.UInt32.unpack(data)
    if subscription_id not in compact:
        return struct_from_binary(ua.PublishResponse, start)
    available = from_binary(list[ua.UInt32], data)
    more = Primitives.Boolean.unpack(data)
    sequence = Primitives.UInt32.unpack(data)
    publish_time = Primitives.DateTime.unpack(data)
    notifications = [_notification(data) for _ in range(max(Primitives.Int32.unpack(data), 0))]
    results = from_binary(list[ua.StatusCode], data)
    diagnostics = from_binary(list[ua.DiagnosticInfo], data)
    message = ua.NotificationMessage(SequenceNumber=sequence, PublishTime=publish_time,
                                     NotificationData=notifications)
    return ua.PublishResponse(TypeId=typeid, ResponseHeader=header, Parameters=ua.PublishResult(
        SubscriptionId=subscription_id, AvailableSequenceNumbers=available, MoreNotifications=more,
        NotificationMessage=message, Results=results, DiagnosticInfos=diagnostics))


async def create_items(sub: Subscription, requests: list[ua.MonitoredItemCreateRequest]) -> list[int | ua.StatusCode]:
    """Create monitored items on ``sub`` (timestamps Both): per request its MonitoredItemId, or
    the StatusCode the server refused it with (what ``Subscription.create_monitored_items``
    returns), without registering them in asyncua's per-item map (see the module docstring)."""
    params = ua.CreateMonitoredItemsParameters(SubscriptionId=sub.subscription_id, ItemsToCreate=requests,
                                               TimestampsToReturn=ua.TimestampsToReturn.Both)
    results = await sub.server.create_monitored_items(params)  # the session's CreateMonitoredItems
    if len(results) != len(requests):
        raise UaStructParsingError(f"{len(requests)} monitored item(s) asked for, {len(results)} result(s)")
    return [result.MonitoredItemId if result.StatusCode.is_good() else result.StatusCode for result in results]


def samples_of(notification: ua.DataChangeNotification) -> list[Change]:
    """An asyncua-decoded DataChangeNotification (after a Republish) as changes."""
    return [(item.ClientHandle, sample_of(item.Value)) for item in notification.MonitoredItems]


def sample_of(dv: ua.DataValue) -> RawSample:
    """An asyncua DataValue as a library-neutral :class:`RawSample` (what :func:`decode_data_changes`
    makes of the same bytes)."""
    status = dv.StatusCode.value if dv.StatusCode is not None else 0
    value = dv.Value.Value if dv.Value is not None else None
    return RawSample(value=value, status_code=status, source_ts_ms=datetime_to_ms(dv.SourceTimestamp),
                     server_ts_ms=datetime_to_ms(dv.ServerTimestamp))


class BatchDelivery:
    """Our data subscription's notifications as batches, bounded in *notifications* queued.

    ``limit`` is the endpoint's ``queue_maxsize`` (notifications, not batches): a batch that would
    take the backlog past it is dropped with a warning, like asyncua's ``OverflowPolicy.WARN`` did
    per item. The consumer calls :meth:`done` with each batch it finished."""

    def __init__(self, client: Client, sub: Subscription, limit: int) -> None:
        self.subscription = sub
        self.limit = limit
        self.pending = 0
        self.dropped = 0
        #: batches queued, those decoded here (not after a Republish), and the largest one (changes)
        self.batches = 0
        self.compact_batches = 0
        self.largest = 0
        session = client.uaclient.session
        compact: set[int] | None = getattr(session, "_uns_compact_subscriptions", None)
        if compact is None:  # the first data subscription of this session: take over its publish
            compact = set()
            session._uns_compact_subscriptions = compact
            session.publish = _compact_publish(session, compact)
        assert sub.subscription_id is not None
        compact.add(sub.subscription_id)
        sub._explode_datachange = self._explode

    def _explode(self, notification: Any) -> Iterator[DataChangeBatch]:
        compact = isinstance(notification, DataChanges)
        items = notification.items if compact else samples_of(notification)
        if not items:
            return
        if self.pending + len(items) > self.limit:
            self.dropped += len(items)
            log.warning("subscription %s: %d notifications queued, %d more dropped (queue_maxsize %d)",
                        self.subscription.subscription_id, self.pending, len(items), self.limit)
            return
        self.pending += len(items)
        self.batches += 1
        self.compact_batches += compact
        self.largest = max(self.largest, len(items))
        yield DataChangeBatch(items, self.subscription._replaying)

    def done(self, batch: DataChangeBatch) -> None:
        self.pending -= len(batch.items)


def _compact_publish(session: Any, compact: Collection[int]) -> Callable[[Iterable[Any]], Any]:
    """``UaSession.publish`` as asyncua 2.1 writes it, decoding with :func:`decode_publish_response`."""

    async def publish(acks: list[ua.SubscriptionAcknowledgement]) -> ua.PublishResponse:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await session._send_request(request, timeout=0)
        try:
            return decode_publish_response(data, compact)
        except Exception as ex:
            log.exception("cannot decode a PublishResponse")
            raise UaStructParsingError from ex

    return publish
