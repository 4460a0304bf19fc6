"""EdgeSession without a network: CONNECT/Will, births, seq, bdSeq, aliases, DATA encoding."""

from __future__ import annotations

import itertools

import pytest

from edge_node.model import DeviceOffline, DeviceOnline, MetricUpdate
from edge_node.session import (
    Connect,
    ConnectFailed,
    ConnectStarted,
    MqttConnected,
    MqttDisconnected,
    PersistBdSeq,
    State,
    Subscribe,
    Tick,
)
from uns.conventions import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH, PROP_QUALITY, PROP_QUALITY_REASON, PROP_STATUS_CODE
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import LocalProtocolError
from uns.sparkplug.model import PropertyValue
from uns.sparkplug.topic import MessageType

from .session_helpers import FakeClock, connect, make_session, publishes, raw


def test_will_is_ndeath_with_bdseq_only_and_persisted_first() -> None:
    """tck-id-payloads-ndeath-will-message-qos, -retain, tck-id-topics-ndeath-payload, tck-id-topics-ndeath-seq."""
    session = make_session()
    actions = session.send(ConnectStarted())
    assert isinstance(actions[0], PersistBdSeq) and actions[0].bd_seq == 0
    connect_action = actions[1]
    assert isinstance(connect_action, Connect)
    assert connect_action.will_topic == "spBv1.0/G/NDEATH/E"
    assert (connect_action.will_qos, connect_action.will_retain) == (1, False)
    will = pb.Payload.FromString(connect_action.will_payload)
    assert not will.HasField("seq")
    assert [m.name for m in will.metrics] == [BDSEQ]
    assert will.metrics[0].datatype == DataType.Int64 and will.metrics[0].long_value == 0
    assert will.metrics[0].HasField("timestamp")


def test_subscriptions_come_before_nbirth() -> None:
    """tck-id-message-flow-edge-node-ncmd-subscribe, tck-id-message-flow-device-dcmd-subscribe."""
    session = make_session()
    actions = connect(session)
    first_publish = next(i for i, a in enumerate(actions) if hasattr(a, "payload"))
    subs = [a for a in actions[:first_publish] if isinstance(a, Subscribe)]
    required = [f for s in subs if s.required for f in s.filters]
    assert "spBv1.0/G/NCMD/E" in required
    assert {"spBv1.0/G/DCMD/E/Filler", "spBv1.0/G/DCMD/E/Capper"} <= set(required)
    assert all(s.qos == 1 for s in subs if s.required)


def test_nbirth_content() -> None:
    """tck-id-topics-nbirth-seq-num, -bdseq-included, -rebirth-metric, -metrics; alias rules; metric order."""
    clock = FakeClock()
    session = make_session(clock)
    session.send(DeviceOnline("Filler", [MetricUpdate("Filler", "Count", 41, clock.now - 5000)]))
    session.submit(MetricUpdate(None, "Line/Speed", 12.5, clock.now - 10_000))
    actions = connect(session, devices=())
    nbirth = publishes(actions, MessageType.NBIRTH)[0]
    assert nbirth.topic == "spBv1.0/G/NBIRTH/E" and nbirth.qos == 0 and not nbirth.retain
    payload = raw(nbirth)
    assert payload.HasField("seq") and payload.seq == 0
    assert payload.timestamp == clock.now
    by_name = {m.name: m for m in payload.metrics}
    bdseq = by_name[BDSEQ]
    assert bdseq.datatype == DataType.Int64 and bdseq.HasField("long_value") and bdseq.long_value == 0
    rebirth = by_name[NODE_REBIRTH]
    assert rebirth.datatype == DataType.Boolean and rebirth.boolean_value is False
    assert not rebirth.HasField("alias")  # tck-id-operational-behavior-data-commands-rebirth-name-aliases
    next_server = by_name[NODE_NEXT_SERVER]  # optional in 3.0; born false like Rebirth
    assert next_server.datatype == DataType.Boolean and next_server.boolean_value is False
    assert not next_server.HasField("alias")
    speed = by_name["Line/Speed"]
    assert speed.double_value == 12.5 and speed.timestamp == clock.now - 10_000
    properties = dict(zip(speed.properties.keys, [v.string_value for v in speed.properties.values], strict=True))
    assert properties["engUnit"] == "m/min"
    assert speed.metadata.description == "line speed"
    state = by_name["Line/State"]
    assert state.is_null and state.WhichOneof("value") is None  # never set: is_null, no value
    for metric in payload.metrics:
        assert metric.HasField("name") and metric.HasField("datatype") and metric.HasField("timestamp")
    # only node metrics in NBIRTH; aliases unique
    assert set(by_name) == {BDSEQ, NODE_REBIRTH, NODE_NEXT_SERVER, "Line/Speed", "Line/State"}
    stamps = [m.timestamp for m in payload.metrics]
    assert stamps == sorted(stamps)  # tck-id-operational-behavior-data-publish-nbirth-order


def test_dbirth_follows_nbirth_with_seq_and_unique_aliases() -> None:
    """tck-id-payloads-dbirth-seq-inc, tck-id-payloads-dbirth-order, tck-id-payloads-alias-uniqueness."""
    session = make_session()
    actions = connect(session, devices=("Filler", "Capper"))
    births = publishes(actions)
    assert [p.message_type for p in births] == [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.DBIRTH]
    assert [raw(p).seq for p in births] == [0, 1, 2]
    assert births[1].topic == "spBv1.0/G/DBIRTH/E/Filler" and births[2].topic == "spBv1.0/G/DBIRTH/E/Capper"
    aliases = [m.alias for p in births for m in raw(p).metrics if m.HasField("alias")]
    assert len(aliases) == len(set(aliases)) == 5
    # stable across rebirths (same process)
    session.send(MqttDisconnected())
    session.send(ConnectStarted())
    again = publishes(session.send(MqttConnected()))
    assert [m.alias for p in again for m in raw(p).metrics if m.HasField("alias")] == aliases


def test_data_is_alias_only_without_datatype_in_timestamp_order() -> None:
    """tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req, …-nbirth-order."""
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 2, clock.now + 20))
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now + 10))
    session.submit(MetricUpdate("Filler", "Running", True, clock.now + 15))
    session.submit(MetricUpdate(None, "Line/Speed", 3.0, clock.now + 5))
    clock.advance(100)
    actions = session.send(Tick())
    ndata = publishes(actions, MessageType.NDATA)
    ddata = publishes(actions, MessageType.DDATA)
    assert len(ndata) == 1 and len(ddata) == 1
    assert {raw(ndata[0]).seq, raw(ddata[0]).seq} == {2, 3}
    metrics = raw(ddata[0]).metrics
    for metric in metrics:
        assert metric.HasField("alias") and not metric.HasField("name") and not metric.HasField("datatype")
        assert metric.HasField("timestamp")
    assert [m.timestamp for m in metrics] == sorted(m.timestamp for m in metrics)
    # two values of one metric in one message when their timestamps differ
    count_alias = session.alias_of("Filler", "Count")
    assert [m.long_value for m in metrics if m.alias == count_alias] == [1, 2]
    assert raw(ddata[0]).timestamp == clock.now  # payload timestamp = publish time


def test_same_metric_same_timestamp_goes_into_a_second_message() -> None:
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 1, clock.now))
    session.submit(MetricUpdate("Filler", "Count", 2, clock.now))
    ddata = publishes(session.send(Tick()), MessageType.DDATA)
    assert [[m.long_value for m in raw(p).metrics] for p in ddata] == [[1], [2]]


def test_seq_wraps_255_to_0_and_is_shared_by_node_and_devices() -> None:
    """tck-id-payloads-sequence-num-incrementing, tck-id-payloads-ndata-seq-inc, -ddata-seq-inc."""
    clock = FakeClock()
    session = make_session(clock)
    births = publishes(connect(session))
    seqs = [raw(p).seq for p in births]
    for i in range(300):
        device = None if i % 2 else "Filler"
        name = "Line/Speed" if device is None else "Count"
        session.submit(MetricUpdate(device, name, float(i) if device is None else i, clock.now + i))
        seqs += [raw(p).seq for p in publishes(session.send(Tick()))]
    assert seqs[:2] == [0, 1]
    for previous, current in itertools.pairwise(seqs):
        assert current == (previous + 1) % 256
    assert 255 in seqs and seqs[seqs.index(255) + 1] == 0


def test_bdseq_increments_per_connect_reused_after_failed_attempt_and_from_storage() -> None:
    """tck-id-topics-nbirth-bdseq-increment, tck-id-payloads-nbirth-bdseq-repeat."""
    session = make_session()
    assert session.send(ConnectStarted())[0].bd_seq == 0  # type: ignore[union-attr]
    session.send(ConnectFailed("refused"))
    assert session.send(ConnectStarted())[0].bd_seq == 0  # type: ignore[union-attr]  # never reached the broker
    nbirth = publishes(session.send(MqttConnected()), MessageType.NBIRTH)[0]
    assert {m.name: m.long_value for m in raw(nbirth).metrics}[BDSEQ] == 0
    session.send(MqttDisconnected())
    assert session.send(ConnectStarted())[0].bd_seq == 1  # type: ignore[union-attr]
    # after a restart: one more than the persisted value, 255 wraps to 0
    assert make_session(last_bd_seq=7).send(ConnectStarted())[0].bd_seq == 8  # type: ignore[union-attr]
    assert make_session(last_bd_seq=255).send(ConnectStarted())[0].bd_seq == 0  # type: ignore[union-attr]


def test_device_offline_flushes_its_values_then_ddeath() -> None:
    """tck-id-operational-behavior-device-ddeath, tck-id-payloads-ddeath-seq-inc."""
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 5, clock.now))
    actions = session.send(DeviceOffline("Filler", "server gone"))
    kinds = [p.message_type for p in publishes(actions)]
    assert kinds == [MessageType.DDATA, MessageType.DDEATH]
    ddeath = publishes(actions, MessageType.DDEATH)[0]
    assert ddeath.topic == "spBv1.0/G/DDEATH/E/Filler" and raw(ddeath).seq == 3
    # values of a dead device wait in the store; a DBIRTH brings the device back
    session.submit(MetricUpdate("Filler", "Count", 6, clock.now + 1))
    assert [type(a).__name__ for a in session.send(Tick()) if type(a).__name__ == "StoreForward"] == ["StoreForward"]
    dbirth = publishes(session.send(DeviceOnline("Filler")), MessageType.DBIRTH)
    assert len(dbirth) == 1 and raw(dbirth[0]).seq == 4


def test_a_rebirth_of_a_born_device_sends_its_pending_changes_first() -> None:
    """A device announced again while born (a source re-read, a template type change): the changes
    submitted before and not yet sent go out as DDATA *before* the new DBIRTH, in order, never after
    it, where they would overwrite the birth's newer values at the host (tck-id-topics-dbirth-seq:
    the seq runs on through both)."""
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", 5, clock.now))  # pending: no Tick yet
    actions = session.send(DeviceOnline("Filler", [MetricUpdate("Filler", "Count", 6, clock.now + 1)]))
    sent = publishes(actions)
    assert [p.message_type for p in sent] == [MessageType.DDATA, MessageType.DBIRTH]
    ddata, dbirth = (raw(p) for p in sent)
    assert [m.long_value or m.int_value for m in ddata.metrics] == [5]
    assert {m.name: m.long_value or m.int_value for m in dbirth.metrics}["Count"] == 6
    assert dbirth.seq == ddata.seq + 1
    assert not publishes(session.send(Tick()), MessageType.DDATA)  # nothing older follows the birth


def test_misuse_is_a_local_protocol_error() -> None:
    session = make_session()
    with pytest.raises(LocalProtocolError, match="not in the metric definitions"):
        session.submit(MetricUpdate(None, "Nope", 1, 0))
    with pytest.raises(LocalProtocolError, match="not allowed in state DISCONNECTED"):
        session.send(MqttConnected())
    with pytest.raises(LocalProtocolError, match="no metric definitions"):
        session.send(DeviceOnline("Unknown"))
    assert session.state is State.DISCONNECTED


def test_a_value_that_does_not_encode_is_dropped_counted_and_burns_no_seq() -> None:
    clock = FakeClock()
    session = make_session(clock)
    connect(session)
    session.submit(MetricUpdate("Filler", "Count", "not an int", clock.now))
    session.submit(MetricUpdate("Filler", "Count", 9, clock.now + 1))
    ddata = publishes(session.send(Tick()), MessageType.DDATA)
    assert [m.long_value for m in raw(ddata[0]).metrics] == [9]
    assert raw(ddata[0]).seq == 2
    assert session.counters.values_unencodable == 1


def test_a_node_value_read_before_the_nbirth_is_born_not_replayed() -> None:
    """set_current: before the NBIRTH a read value only becomes current (the NBIRTH carries it,
    tck-id-topics-nbirth-metrics), nothing is stored for replay; once born it is a change (NDATA)."""
    clock = FakeClock()
    session = make_session(clock)
    session.set_current(MetricUpdate(None, "Line/Speed", 7.5, clock.now - 100))
    assert session.send(Tick()) == []  # not a change: nothing pending, nothing for the store
    nbirth = publishes(connect(session, devices=()), MessageType.NBIRTH)[0]
    speed = {m.name: m for m in raw(nbirth).metrics}["Line/Speed"]
    assert speed.double_value == 7.5 and speed.timestamp == clock.now - 100
    assert publishes(session.send(Tick()), MessageType.NDATA) == []
    session.set_current(MetricUpdate(None, "Line/Speed", 8.0, clock.now))  # a source reconnected while born
    ndata = publishes(session.send(Tick()), MessageType.NDATA)
    assert [m.double_value for m in raw(ndata[0]).metrics] == [8.0]
    with pytest.raises(LocalProtocolError):
        make_session().set_current(MetricUpdate("Filler", "Count", 1, clock.now))  # devices: DeviceOnline


def test_the_value_read_after_an_outage_replaces_the_bad_marker_for_the_next_birth() -> None:
    """Issue 12, defect 2: the edge's BadNoCommunication marker is stamped when the OPC UA session
    died; the value read after the reconnect keeps the (older) time it last changed. The NBIRTH
    must carry that value, not the marker (tck-id-topics-nbirth-metrics: the current values)."""
    clock = FakeClock()
    session = make_session(clock)
    session.set_current(MetricUpdate(None, "Line/Speed", 7.5, clock.now - 60_000))
    lost = {PROP_QUALITY: PropertyValue(DataType.Int32, 0),
            PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x80310000),
            PROP_QUALITY_REASON: PropertyValue(DataType.String, "comm_lost")}
    session.set_current(MetricUpdate(None, "Line/Speed", None, clock.now, is_null=True, properties=lost))
    session.set_current(MetricUpdate(None, "Line/Speed", 7.5, clock.now - 60_000))  # read after the restart
    nbirth = publishes(connect(session, devices=()), MessageType.NBIRTH)[0]
    speed = {m.name: m for m in raw(nbirth).metrics}["Line/Speed"]
    assert (speed.double_value, speed.is_null, speed.timestamp) == (7.5, False, clock.now - 60_000)
