"""Data changes decoded from the PublishResponse bytes and delivered in batches (edge_node.opcua.notifications).

Three layers: the decoder against asyncua's own decoding of the same bytes (every part of the
response, every kind of value); the notification bound of :class:`BatchDelivery`; and a burst of
changes through a real asyncua server into the source, delivered complete and in order per tag with
exact values and qualities. The last one fails if an asyncua upgrade stops routing responses
through the two methods we override (``UaSession.publish``, ``Subscription._explode_datachange``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from edge_node.config import loads_edge_config
from edge_node.opcua import source as source_module
from edge_node.opcua.notifications import (
    BatchDelivery,
    DataChangeBatch,
    DataChanges,
    decode_publish_response,
    read_samples,
    sample_of,
)
from edge_node.validation import RawSample
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.edge_node.recording_sink import RecordingSink
from tests.edge_node.running import running_source
from uns.conventions import PROP_QUALITY, PROP_STATUS_CODE

pytestmark = pytest.mark.timeout(90)

WHEN = dt.datetime(2026, 12, 3, 3, 20, 1, 123000, tzinfo=dt.UTC)
WHEN_MS = 1_796_268_001_123
VALUES = [
    ua.Variant(1.5, ua.VariantType.Double), ua.Variant(True, ua.VariantType.Boolean),
    ua.Variant(-3, ua.VariantType.SByte), ua.Variant(200, ua.VariantType.Byte),
    ua.Variant(-30_000, ua.VariantType.Int16), ua.Variant(60_000, ua.VariantType.UInt16),
    ua.Variant(-2**31, ua.VariantType.Int32), ua.Variant(2**32 - 1, ua.VariantType.UInt32),
    ua.Variant(2**63 - 1, ua.VariantType.Int64), ua.Variant(2**64 - 1, ua.VariantType.UInt64),
    ua.Variant(1.25, ua.VariantType.Float), ua.Variant("hé", ua.VariantType.String),
    ua.Variant(None, ua.VariantType.String), ua.Variant([1, 2, 3], ua.VariantType.Int32),
    ua.Variant([[1.0, 2.0], [3.0, 4.0]], ua.VariantType.Double, Dimensions=[2, 2]),
    ua.Variant(ua.LocalizedText("x", "en"), ua.VariantType.LocalizedText), ua.Variant(),
    ua.Variant(WHEN, ua.VariantType.DateTime), ua.Variant(b"\x00\x01", ua.VariantType.ByteString),
]


def _response(subscription_id: int = 7) -> ua.PublishResponse:
    items = [ua.MonitoredItemNotification(ClientHandle=i + 1, Value=ua.DataValue(
        v, ua.StatusCode([0, 0x40000000, 0x80340000][i % 3]), SourceTimestamp=WHEN, ServerTimestamp=WHEN))
        for i, v in enumerate(VALUES)]
    # no status, no timestamps; picoseconds; the OPC UA null date; a source stamp 1 ms before the epoch
    items.append(ua.MonitoredItemNotification(ClientHandle=90, Value=ua.DataValue(ua.Variant(2.0))))
    items.append(ua.MonitoredItemNotification(ClientHandle=91, Value=ua.DataValue(
        ua.Variant(3.0), SourceTimestamp=WHEN, SourcePicoseconds=7, ServerTimestamp=WHEN, ServerPicoseconds=9)))
    items.append(ua.MonitoredItemNotification(ClientHandle=92, Value=ua.DataValue(
        ua.Variant(4.0), SourceTimestamp=dt.datetime(1601, 1, 1, tzinfo=dt.UTC),
        ServerTimestamp=dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC))))
    data = [ua.DataChangeNotification(MonitoredItems=items, DiagnosticInfos=[ua.DiagnosticInfo(SymbolicId=3)]),
            ua.StatusChangeNotification(Status=ua.StatusCode(0)),
            ua.DataChangeNotification(MonitoredItems=items[:2])]
    message = ua.NotificationMessage(SequenceNumber=5, PublishTime=WHEN, NotificationData=data)
    return ua.PublishResponse(Parameters=ua.PublishResult(
        SubscriptionId=subscription_id, AvailableSequenceNumbers=[4, 5], MoreNotifications=True,
        NotificationMessage=message, Results=[ua.StatusCode(0)], DiagnosticInfos=[ua.DiagnosticInfo()]))


def test_decoded_response_equals_asyncuas_with_data_changes_as_samples() -> None:
    wire = struct_to_binary(_response())
    theirs = struct_from_binary(ua.PublishResponse, Buffer(wire))
    ours = decode_publish_response(Buffer(wire), {7})
    ours_data = ours.Parameters.NotificationMessage.NotificationData
    their_data = theirs.Parameters.NotificationMessage.NotificationData
    assert [type(n) for n in ours_data] == [DataChanges, ua.StatusChangeNotification, DataChanges]
    assert ours_data[1] == their_data[1]
    for mine, asyncuas in ((ours_data[0], their_data[0]), (ours_data[2], their_data[2])):
        assert mine.MonitoredItems == [] and mine.DiagnosticInfos == asyncuas.DiagnosticInfos
        assert mine.items == [(item.ClientHandle, sample_of(item.Value)) for item in asyncuas.MonitoredItems]
    # and every other part of the response is asyncua's
    ours.Parameters.NotificationMessage.NotificationData = their_data
    assert ours == theirs
    # the figures, stated: ms from the 100 ns ticks; no timestamp, the null date, 1969 → None / negative
    samples = dict(ours_data[0].items)
    assert samples[1] == RawSample(1.5, 0, WHEN_MS, WHEN_MS)
    assert samples[3] == RawSample(-3, 0x80340000, WHEN_MS, WHEN_MS)
    assert samples[15] == RawSample([[1.0, 2.0], [3.0, 4.0]], 0x80340000, WHEN_MS, WHEN_MS)
    assert samples[90] == RawSample(2.0, 0, None, None)
    assert samples[92] == RawSample(4.0, 0, None, -1)


async def test_read_samples_equal_asyncuas_decoding_of_the_same_read_response() -> None:
    """The reads at connect (the birth's values) decoded from the ReadResponse bytes: every kind of
    value, status and timestamp as asyncua's DataValues say; the request is asyncua's own Read."""
    values = [ua.DataValue(v, ua.StatusCode([0, 0x40000000, 0x80340000][i % 3]), SourceTimestamp=WHEN,
                           ServerTimestamp=WHEN) for i, v in enumerate(VALUES)]
    values += [ua.DataValue(ua.Variant(2.0)), ua.DataValue(None, ua.StatusCode(0x80340000)),
               ua.DataValue(ua.Variant(3.0), SourceTimestamp=WHEN, SourcePicoseconds=7, ServerTimestamp=WHEN,
                            ServerPicoseconds=9)]
    wire = struct_to_binary(ua.ReadResponse(Results=values, DiagnosticInfos=[ua.DiagnosticInfo(SymbolicId=1)]))
    sent: list[Any] = []

    async def send(request: Any) -> Buffer:
        sent.append(request)
        return Buffer(wire)

    client: Any = SimpleNamespace(uaclient=SimpleNamespace(session=SimpleNamespace(_send_request=send)))
    nodes = [ua.NodeId(f"T{i}", 2) for i in range(len(values))]
    samples = await read_samples(client, nodes)
    theirs = struct_from_binary(ua.ReadResponse, Buffer(wire)).Results
    assert samples == [sample_of(dv) for dv in theirs]
    assert samples[0] == RawSample(1.5, 0, WHEN_MS, WHEN_MS) and samples[-2] == RawSample(None, 0x80340000)
    [request] = sent
    assert isinstance(request, ua.ReadRequest)
    assert request.Parameters.TimestampsToReturn == ua.TimestampsToReturn.Both
    assert [(r.NodeId, r.AttributeId) for r in request.Parameters.NodesToRead] == \
        [(n, ua.AttributeIds.Value) for n in nodes]
    with pytest.raises(Exception):  # noqa: B017 - fewer values than nodes asked for
        await read_samples(client, [*nodes, ua.NodeId("extra", 2)])
    bad = ua.ReadResponse(Results=values)
    bad.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadTooManyOperations)
    wire = struct_to_binary(bad)
    with pytest.raises(ua.UaStatusCodeError):
        await read_samples(client, nodes)


def test_other_subscriptions_and_bad_bytes_stay_asyncuas() -> None:
    wire = struct_to_binary(_response(8))
    assert decode_publish_response(Buffer(wire), {7}) == struct_from_binary(ua.PublishResponse, Buffer(wire))
    with pytest.raises(Exception):  # noqa: B017 - asyncua's own NotEnoughData / struct errors
        decode_publish_response(Buffer(wire[:-40]), {8})
    with pytest.raises(Exception):  # noqa: B017
        decode_publish_response(Buffer(wire[:200]), {7})


def _delivery(limit: int) -> tuple[BatchDelivery, Any]:
    session = SimpleNamespace()
    sub = SimpleNamespace(subscription_id=3, _replaying=False)
    return BatchDelivery(SimpleNamespace(uaclient=SimpleNamespace(session=session)), sub, limit), session


def test_batches_are_bounded_in_notifications_not_batches() -> None:
    delivery, session = _delivery(limit=5)
    assert session._uns_compact_subscriptions == {3} and callable(session.publish)
    changes = DataChanges(items=[(1, RawSample(1.0)), (2, RawSample(2.0)), (1, RawSample(3.0))])
    sub = delivery.subscription
    first = list(sub._explode_datachange(changes))
    assert first == [DataChangeBatch(changes.items, False)] and delivery.pending == 3
    assert list(sub._explode_datachange(changes)) == [] and delivery.dropped == 3  # 6 > 5: dropped, logged
    delivery.done(first[0])
    asyncuas = ua.DataChangeNotification(MonitoredItems=[ua.MonitoredItemNotification(4, ua.DataValue(ua.Variant(9)))])
    sub._replaying = True  # after a Republish asyncua decodes the notification itself
    assert list(sub._explode_datachange(asyncuas)) == [DataChangeBatch([(4, RawSample(9, 0, None, None))], True)]
    assert (delivery.batches, delivery.compact_batches, delivery.largest) == (2, 1, 3)


# -- a burst through a real asyncua server --------------------------------------------------------

TAGS = 700  # more than one slice of source._SLICE per publish
ROUNDS = 3
UNCERTAIN, BAD = 0x40000000, 0x80000000


def _status(i: int, r: int) -> int:
    """Round 1: every 5th tag Uncertain, every 7th (not 5th) Bad; rounds 0 and 2 Good."""
    if r != 1:
        return 0
    return UNCERTAIN if i % 5 == 0 else BAD if i % 7 == 0 else 0


def _value(i: int, r: int) -> float:
    return i * 10.0 + r + 0.5


def _data(sink: RecordingSink) -> list[Any]:
    return [e for k, e in sink.events if k == "data"]


async def test_a_burst_is_delivered_complete_and_in_order_per_tag(tmp_path: Path) -> None:
    """OPC UA Part 4 §7.22.2 (QueueSize keeps each change within a publishing interval) through
    validation: every change of every tag, in order, with its value, Bad as null and the Quality of
    the recovery (Sparkplug: tck-id-payloads-metric-timestamp-in-order is what ordering per metric serves)."""
    names = [f"Burst/T{i:04d}" for i in range(TAGS)]
    async with TestOpcUaServer(variables=[(n, ua.VariantType.Double, -1.0) for n in names]) as server:
        config = loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo
opcua:
  - url: {server.url}
    publishing_interval_ms: 1000
    sampling_interval_ms: 0
    queue_size: {ROUNDS}
    keepalive_interval_s: 5
tags:
""" + "".join(f'  - {{node_id: "{server.node_id(n)}", metric: {n.split("/")[1]}, cell: Burst}}\n' for n in names))
        sink = RecordingSink()
        async with running_source(config, sink, tmp_path) as source:
            await asyncio.wait_for(source.connected.wait(), 20)
            delivery = source._delivery
            assert delivery is not None
            # the items were created without asyncua's per-item map (notifications.create_items)
            assert delivery.subscription._monitored_items == {} and source.stats.monitored_items == TAGS
            await sink.wait_for(lambda: source.stats.notifications >= TAGS or None)  # the initial values
            base = dt.datetime.now(dt.UTC)
            for r in range(ROUNDS):
                stamp = base + dt.timedelta(milliseconds=r)
                for i, name in enumerate(names):
                    status = _status(i, r)
                    await server.write(name, None if status >= BAD else _value(i, r), status=status,
                                       source_ts=stamp)
            await sink.wait_for(lambda: len(_data(sink)) >= TAGS * ROUNDS or None, timeout=30)
            updates = _data(sink)
            assert len(updates) == TAGS * ROUNDS
            per_tag: dict[str, list[Any]] = {}
            for u in updates:
                assert u.device_id == "Burst"
                per_tag.setdefault(u.name, []).append(u)
            base_ms = (base - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
            for i in range(TAGS):
                got = per_tag[f"T{i:04d}"]
                expected_values = [None if _status(i, r) >= BAD else _value(i, r) for r in range(ROUNDS)]
                assert [u.value for u in got] == expected_values, i
                assert [u.timestamp for u in got] == [base_ms + r for r in range(ROUNDS)]
                props = [{k: p.value for k, p in (u.properties or {}).items() if k in (PROP_QUALITY, PROP_STATUS_CODE)}
                         for u in got]
                if i % 5 == 0:
                    assert props == [{}, {PROP_STATUS_CODE: UNCERTAIN}, {}]  # the server's, not a degradation
                elif i % 7 == 0:
                    assert [u.is_null for u in got] == [False, True, False]
                    assert props == [{}, {PROP_QUALITY: 0, PROP_STATUS_CODE: BAD}, {PROP_QUALITY: 192}]
                else:
                    assert props == [{}, {}, {}]
            # the burst came as batches larger than a slice, decoded by our path, nothing dropped
            assert delivery.largest > source_module._SLICE and delivery.dropped == 0 and delivery.pending == 0
            assert delivery.compact_batches == delivery.batches < TAGS * ROUNDS
            assert source.stats.notifications == TAGS * (ROUNDS + 1)
