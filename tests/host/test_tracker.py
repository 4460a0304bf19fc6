"""EdgeTracker without a network: births, seq, bdSeq, deaths, certificates and rebirth decisions."""

from __future__ import annotations

import pytest

from mes_adapter.host.tracker import (
    DeviceBorn,
    DeviceDied,
    EdgeTracker,
    MetricsChanged,
    NodeBorn,
    NodeDied,
    ProtocolViolation,
    RebirthCause,
    RebirthNeeded,
)
from tests.host.edge import CELL, EDGE, GROUP, EdgeScript
from uns.sparkplug.datatypes import DataType

NODE = (GROUP, EDGE)


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000_000

    def __call__(self) -> int:
        return self.t


def kinds(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker() -> EdgeTracker:
    return EdgeTracker(rebirth_throttle_ms=5000)


def born(tracker: EdgeTracker, clock: Clock, edge: EdgeScript | None = None) -> EdgeScript:
    edge = edge or EdgeScript()
    tracker.handle(*edge.nbirth(), clock())
    tracker.handle(*edge.dbirth(), clock())
    return edge


def test_births_learn_aliases_and_datatypes(tracker: EdgeTracker, clock: Clock) -> None:
    edge = EdgeScript()
    events = tracker.handle(*edge.nbirth(), clock())
    assert isinstance(events[0], NodeBorn) and events[0].bd_seq == 0
    birth = kinds(events, MetricsChanged)[0]
    assert birth.birth and {m.name for m in birth.metrics} == {"Node Control/Rebirth", "Line/State", "Line/GoodCount"}
    events = tracker.handle(*edge.dbirth(), clock())
    assert kinds(events, DeviceBorn)[0].device_id == CELL
    # DDATA carries aliases only and no datatypes: the birth supplies both (Int8 sign-extended)
    events = tracker.handle(*edge.ddata({"Offset": -100, "Speed": 99.5, "Counts": [7, -8]}), clock())
    (changed,) = kinds(events, MetricsChanged)
    assert [(m.name, m.datatype, m.value) for m in changed.metrics] == [
        ("Offset", DataType.Int8, -100), ("Speed", DataType.Double, 99.5), ("Counts", DataType.Int32Array, [7, -8])]
    assert not kinds(events, ProtocolViolation)
    assert tracker.is_online(GROUP, EDGE, CELL)


def test_seq_gap_requests_exactly_one_rebirth_within_throttle(tracker: EdgeTracker, clock: Clock) -> None:
    """tck-id-operational-behavior-host-reordering-rebirth (no reorder timeout configured)."""
    edge = born(tracker, clock)
    tracker.handle(*edge.ddata({"Speed": 1.0}), clock())
    edge.skip_seq(3)
    events = tracker.handle(*edge.ddata({"Speed": 2.0}), clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.SEQ_GAP]
    assert kinds(events, MetricsChanged)[0].metrics[0].value == 2.0  # newer data still applied
    for _ in range(5):  # more gaps inside the throttle: counted, not requested
        edge.skip_seq(2)
        clock.t += 500
        assert not kinds(tracker.handle(*edge.ddata({"Speed": 3.0}), clock()), RebirthNeeded)
    assert tracker.counters.seq_gaps == 6
    assert tracker.counters.rebirths_requested == {"seq_gap": 1}
    assert tracker.counters.rebirths_suppressed == 5
    clock.t += 5000
    edge.skip_seq(2)
    assert kinds(tracker.handle(*edge.ddata({"Speed": 4.0}), clock()), RebirthNeeded)


def test_seq_wraps_without_a_gap(tracker: EdgeTracker, clock: Clock) -> None:
    """tck-id-payloads-sequence-num-incrementing: 255 is followed by 0."""
    edge = born(tracker, clock)
    for i in range(300):
        events = tracker.handle(*edge.ddata({"Speed": float(i)}), clock())
        assert not kinds(events, ProtocolViolation), events
    assert tracker.counters.seq_gaps == 0


def test_unknown_alias_requests_one_rebirth(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    events = tracker.handle(*edge.ddata({"Ghost": 1}, alias_override=999), clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.UNKNOWN_ALIAS]
    assert kinds(events, ProtocolViolation)[0].kind == "unknown_alias"
    assert not kinds(events, MetricsChanged)
    events = tracker.handle(*edge.ddata({"Ghost": 1}, alias_override=998), clock())
    assert not kinds(events, RebirthNeeded)  # throttled
    # the seq still advanced through the bad messages: the next good one is no gap
    assert not kinds(tracker.handle(*edge.ddata({"Speed": 1.0}), clock()), ProtocolViolation)
    assert tracker.counters.rebirths_requested == {"unknown_alias": 1}


def test_data_before_birth_requests_one_rebirth(tracker: EdgeTracker, clock: Clock) -> None:
    edge = EdgeScript()
    edge.nbirth()
    edge.dbirth()  # published, but this host never saw them (it joined mid-session)
    for _ in range(3):
        events = tracker.handle(*edge.ddata({"Speed": 1.0}), clock())
        assert not kinds(events, MetricsChanged)
    assert tracker.counters.rebirths_requested == {"data_before_birth": 1}
    assert tracker.counters.violations["data_before_birth"] == 3


def test_restarted_node_without_nbirth_requests_one_rebirth(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    tracker.handle(*edge.ndeath(), clock())
    restarted = EdgeScript(bd_seq=1)
    restarted.nbirth()  # lost on the way (QoS 0)
    restarted.dbirth()
    events = []
    for _ in range(4):
        events += tracker.handle(*restarted.ddata({"Speed": 1.0}), clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.DATA_BEFORE_BIRTH]
    # then the rebirth arrives and all is well
    born(tracker, clock, restarted)
    events = tracker.handle(*restarted.ddata({"Speed": 2.0}), clock())
    assert kinds(events, MetricsChanged) and not kinds(events, ProtocolViolation)


def test_ndeath_matched_by_bdseq_and_stale_ndeath_ignored(tracker: EdgeTracker, clock: Clock) -> None:
    """tck-id-operational-behavior-edge-node-termination-host-action-ndeath-node-offline, -devices-offline."""
    born(tracker, clock, EdgeScript(bd_seq=7))
    stale = EdgeScript(bd_seq=6)
    events = tracker.handle(*stale.ndeath(), clock())
    assert not kinds(events, NodeDied) and kinds(events, ProtocolViolation)[0].kind == "stale_ndeath"
    assert tracker.is_online(GROUP, EDGE, CELL)
    clock.t += 10
    events = tracker.handle(*EdgeScript(bd_seq=7).ndeath(), clock())
    (died,) = kinds(events, NodeDied)
    assert died.at_ms == clock.t and died.bd_seq == 7  # the host's own receive time
    assert not tracker.is_online(GROUP, EDGE) and not tracker.is_online(GROUP, EDGE, CELL)
    # a duplicate (broker-delivered Will after the edge's own NDEATH) is ignored
    assert not kinds(tracker.handle(*EdgeScript(bd_seq=7).ndeath(), clock()), NodeDied)


def test_ddeath_uses_payload_timestamp(tracker: EdgeTracker, clock: Clock) -> None:
    """tck-id-operational-behavior-edge-node-termination-host-action-ddeath-devices-offline."""
    edge = born(tracker, clock)
    events = tracker.handle(*edge.ddeath(), clock())
    (died,) = kinds(events, DeviceDied)
    assert died.device_id == CELL and died.reason == "ddeath" and died.at_ms != clock.t
    assert tracker.is_online(GROUP, EDGE) and not tracker.is_online(GROUP, EDGE, CELL)
    # DDATA of the dead device: a rebirth is needed to get its DBIRTH back
    events = tracker.handle(*edge.ddata({"Speed": 1.0}), clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.DATA_BEFORE_BIRTH]


def test_rebirth_resyncs_seq_without_device_deaths(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    events = tracker.handle(*edge.nbirth(), clock())  # a rebirth: devices must be born again
    assert not kinds(events, DeviceDied) and not kinds(events, ProtocolViolation)
    events = tracker.handle(*edge.dbirth(), clock())
    assert kinds(events, DeviceBorn) and not kinds(events, ProtocolViolation)
    events = tracker.handle(*edge.ndata({"Line/State": "IDLE"}), clock())
    assert not kinds(events, DeviceDied) and not kinds(events, ProtocolViolation)


def test_device_missing_from_the_rebirth_dies_after_the_birth_sequence(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    tracker.handle(*edge.nbirth(), clock())  # no DBIRTH follows: the device is gone
    events = tracker.handle(*edge.ndata({"Line/State": "IDLE"}), clock())
    assert [(e.device_id, e.reason) for e in kinds(events, DeviceDied)] == [(CELL, "not_reborn")]
    assert not tracker.is_online(GROUP, EDGE, CELL)


def test_datatype_other_than_birth_is_counted(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    from uns.sparkplug.codec import encode_payload
    from uns.sparkplug.model import Metric, Payload, now_ms
    from uns.sparkplug.topic import MessageType

    edge.seq += 1
    # "Speed" was born Double; this DDATA sends a String in its alias
    bad = encode_payload(Payload([Metric(alias=10, datatype=DataType.String, value="fast", timestamp=now_ms())],
                                 timestamp=now_ms(), seq=edge.seq), MessageType.DDATA)
    events = tracker.handle(edge.topic(MessageType.DDATA, CELL), bad, clock())
    assert kinds(events, ProtocolViolation)[0].kind == "datatype_mismatch"
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.DATATYPE_MISMATCH]


def test_wrong_topics_and_oversize_are_counted() -> None:
    tracker = EdgeTracker(max_payload_bytes=100)
    assert kinds(tracker.handle("spBv1.0/g/NOPE/e", b"", 0), ProtocolViolation)[0].kind == "invalid_topic"
    assert kinds(tracker.handle("spBv1.0/g/NDATA", b"", 0), ProtocolViolation)[0].kind == "invalid_topic"
    assert kinds(tracker.handle("spBv1.0/g/DDATA/e", b"", 0), ProtocolViolation)[0].kind == "invalid_topic"
    assert kinds(tracker.handle("spBv1.0/g/NDATA/e", b"x" * 101, 0), ProtocolViolation)[0].kind == "oversize"
    assert tracker.handle("spBv1.0/g/NCMD/e", b"\xff", 0) == []  # another host's command: not ours to judge
    assert tracker.counters.violations == {"invalid_topic": 3, "oversize": 1}


def test_malformed_birth_requests_rebirth(tracker: EdgeTracker, clock: Clock) -> None:
    edge = EdgeScript()
    topic, _ = edge.nbirth()
    events = tracker.handle(topic, b"\x0a\xff\xff", clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.MALFORMED]
    assert not tracker.is_online(GROUP, EDGE)


def test_rebirth_causes_can_be_switched_off(clock: Clock) -> None:
    tracker = EdgeTracker(rebirth_causes=frozenset({RebirthCause.UNKNOWN_ALIAS}))
    edge = born(tracker, clock)
    edge.skip_seq(4)
    events = tracker.handle(*edge.ddata({"Speed": 1.0}), clock())
    assert kinds(events, ProtocolViolation) and not kinds(events, RebirthNeeded)


def test_certificates_let_a_late_host_decode_without_rebirth(tracker: EdgeTracker, clock: Clock) -> None:
    edge = EdgeScript(bd_seq=3)
    certs = edge.certificates()
    for _ in range(10):
        edge.ddata({"Speed": 1.0})  # traffic this host never saw
    for topic, data in certs:
        events = tracker.handle_certificate(topic, data, clock())
        assert not kinds(events, ProtocolViolation)
    events = tracker.handle(*edge.ddata({"Speed": 5.0}), clock())  # seq 12 after a cert with seq 1: a resync
    assert not kinds(events, ProtocolViolation) and not kinds(events, RebirthNeeded)
    assert kinds(events, MetricsChanged)[0].metrics[0].value == 5.0
    assert tracker.counters.certificates_used == 2
    # a live NBIRTH wins: later certificates of that node are ignored
    born(tracker, clock, edge)
    for topic, data in EdgeScript(bd_seq=1).certificates():
        tracker.handle_certificate(topic, data, clock())
    assert tracker.counters.certificates_ignored == 2


def test_host_disconnect_takes_every_node_offline(tracker: EdgeTracker, clock: Clock) -> None:
    edge = born(tracker, clock)
    events = tracker.host_disconnected(clock())
    assert [e.reason for e in kinds(events, NodeDied)] == ["host_disconnected"]
    events = tracker.handle(*edge.ddata({"Speed": 1.0}), clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.DATA_BEFORE_BIRTH]


def test_invalid_utf8_names_are_malformed_not_bytes(tracker: EdgeTracker, clock: Clock) -> None:
    """Found by the live fuzz: upb reads a proto2 string with invalid UTF-8 back as bytes."""
    edge = EdgeScript()
    topic, data = edge.nbirth()
    events = tracker.handle(topic, data.replace(b"Line/State", b"Line/St\xffte"), clock())
    assert kinds(events, ProtocolViolation)[0].kind == "malformed"
    assert not kinds(events, MetricsChanged) and not tracker.is_online(GROUP, EDGE)


# -- reorder timeout -----------------------------------------------------------------------------


def _speeds(events: list) -> list[float]:
    return [m.value for e in kinds(events, MetricsChanged) for m in e.metrics if m.name == "Speed"]


def test_reorder_in_time_applies_in_seq_order_without_rebirth(clock: Clock) -> None:
    """tck-id-operational-behavior-host-reordering-param (reorder_timeout_ms), -reordering-start
    (a seq ahead starts the timer) and -reordering-success (the gap fills in time: no rebirth)."""
    tracker = EdgeTracker(reorder_timeout_ms=2000)
    edge = born(tracker, clock)
    first = edge.ddata({"Speed": 1.0})
    second = edge.ddata({"Speed": 2.0})
    third = edge.ddata({"Speed": 3.0})
    assert tracker.handle(*third, clock()) == []  # ahead: held, the timer runs
    assert tracker.handle(*second, clock()) == []
    assert tracker.next_reorder_deadline_ms() == clock() + 2000
    clock.t += 500
    events = tracker.handle(*first, clock())  # the missing one: everything, in seq order
    assert _speeds(events) == [1.0, 2.0, 3.0]
    assert not kinds(events, RebirthNeeded) and not kinds(events, ProtocolViolation)
    assert tracker.next_reorder_deadline_ms() is None
    clock.t += 5000
    assert tracker.tick(clock()) == []
    assert tracker.counters.seq_gaps == 0
    assert (tracker.counters.reorder_held, tracker.counters.reorder_recovered) == (2, 1)
    assert _speeds(tracker.handle(*edge.ddata({"Speed": 4.0}), clock())) == [4.0]  # in step again


def test_reorder_timeout_expired_requests_rebirth_and_applies_what_it_held(clock: Clock) -> None:
    """tck-id-operational-behavior-host-reordering-rebirth: the gap is not filled in time."""
    tracker = EdgeTracker(reorder_timeout_ms=2000)
    edge = born(tracker, clock)
    edge.skip_seq(1)  # this one never arrives
    assert tracker.handle(*edge.ddata({"Speed": 5.0}), clock()) == []
    assert tracker.handle(*edge.ddata({"Speed": 6.0}), clock()) == []
    clock.t += 1999
    assert tracker.tick(clock()) == []  # not yet
    clock.t += 1
    events = tracker.tick(clock())
    assert [e.cause for e in kinds(events, RebirthNeeded)] == [RebirthCause.SEQ_GAP]
    assert _speeds(events) == [5.0, 6.0]  # newer than what we had: applied, in order
    assert tracker.counters.seq_gaps == 1 and tracker.next_reorder_deadline_ms() is None
    assert not kinds(tracker.handle(*edge.ddata({"Speed": 7.0}), clock()), ProtocolViolation)  # resynced


def test_reorder_behind_is_a_gap_at_once_and_a_new_birth_drops_what_was_held(clock: Clock) -> None:
    tracker = EdgeTracker(reorder_timeout_ms=2000)
    edge = born(tracker, clock)
    old = edge.ddata({"Speed": 1.0})
    tracker.handle(*old, clock())
    events = tracker.handle(*old, clock())  # a seq already seen: not worth waiting for
    assert kinds(events, RebirthNeeded)
    edge.skip_seq(3)
    assert tracker.handle(*edge.ddata({"Speed": 9.0}), clock()) == []
    tracker.handle(*edge.nbirth(), clock())  # a new session restates everything
    assert tracker.next_reorder_deadline_ms() is None
    clock.t += 10_000
    assert not kinds(tracker.tick(clock()), MetricsChanged)


def test_reorder_held_messages_count_before_a_matching_ndeath(clock: Clock) -> None:
    tracker = EdgeTracker(reorder_timeout_ms=2000)
    edge = born(tracker, clock)
    edge.skip_seq(1)
    tracker.handle(*edge.ddata({"Speed": 8.0}), clock())
    events = tracker.handle(*edge.ndeath(), clock())
    assert _speeds(events) == [8.0] and isinstance(events[-1], NodeDied)
    assert tracker.next_reorder_deadline_ms() is None
