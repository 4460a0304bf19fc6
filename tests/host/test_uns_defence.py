"""The host defends the UNS against a broken or compromised edge (issue 13, item 3), without a network.

Invalid metric names are dropped from a birth with a counted reason, the rest of the birth is
applied (Sparkplug lets a name be any UTF-8: tck-id-payloads-name-requirement only asks for one);
a name that is not UTF-8 refuses the whole birth (it is not a Sparkplug payload:
tck-id-message-flow-edge-node-birth-publish-nbirth-payload). Birth churn quarantines a node;
metrics no birth declares any more are retired after a grace; a node has a metric limit.
"""

from __future__ import annotations

import json

import pytest

from mes_adapter.host.live_model import LiveModel
from mes_adapter.host.mirror import UnsMirror
from mes_adapter.host.tracker import (
    DeviceDied,
    EdgeTracker,
    MetricsChanged,
    MetricsRetired,
    NodeDied,
    NodeQuarantined,
    NodeReleased,
    ProtocolViolation,
    RebirthNeeded,
)
from tests.host.edge import CELL, EDGE, GROUP, EdgeScript
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import InvalidIdError
from uns.sparkplug.names import metric_name_problem
from uns.sparkplug.topic import validate_id

NODE = (GROUP, EDGE)
T0 = 1_700_000_000_000
LINE = "acme/plant1/packaging/line1"


def kinds(events: list, cls: type) -> list:
    return [e for e in events if isinstance(e, cls)]


@pytest.mark.parametrize(("name", "reason"), [
    ("GoodC\x7funt", "control_character"), ("Line/\x01State", "control_character"),
    ("Bad\x85Name", "control_character"), ("Non\ufffechar", "control_character"),
    ("Line/+/Speed", "mqtt_wildcard"), ("Line#1", "mqtt_wildcard"),
    ("/Speed", "empty_segment"), ("Line//Speed", "empty_segment"), ("Speed/", "empty_segment"),
    ("", "empty"), ("x" * 1025, "too_long"), (b"Speed", "not_text"), (None, "not_text"),
])
def test_metric_names_no_topic_may_hold_are_named_by_reason(name: object, reason: str) -> None:
    problem = metric_name_problem(name)
    assert problem is not None and problem[0] == reason


@pytest.mark.parametrize("name", ["Speed", "Node Control/Rebirth", "Filler/Motor 1/Current (A)", "Température",
                                  "x" * 1024])
def test_ordinary_names_pass(name: str) -> None:
    assert metric_name_problem(name) is None


@pytest.mark.parametrize("value", ["cell\x7f", "a\x00b", "\x9bx", "dev\ufdd0"])
def test_ids_with_control_characters_are_refused(value: str) -> None:
    with pytest.raises(InvalidIdError, match="U\\+00|U\\+FDD0|NUL"):
        validate_id(value, "device_id")


def pipeline() -> tuple[LiveModel, UnsMirror, dict[str, bytes]]:
    return LiveModel(), UnsMirror(interval_ms=0), {}


def feed(tracker: EdgeTracker, model: LiveModel, mirror: UnsMirror, retained: dict[str, bytes],
         message: tuple[str, bytes], now: int) -> list:
    """What mqtt_host does with the events, and what a broker retains of the mirror."""
    events = tracker.handle(*message, now)
    for event in events:
        if isinstance(event, MetricsRetired):
            mirror.retire(*event.node, event.device_id, event.names, now)
            model.apply(event)
        elif not isinstance(event, (ProtocolViolation, RebirthNeeded)):
            mirror.offer(model.apply(event), now)
    for out in mirror.take(now):
        if out.payload:
            retained[out.topic] = out.payload
        else:
            retained.pop(out.topic, None)
    return events


def test_an_invalid_name_is_dropped_alone_and_its_values_too() -> None:
    tracker = EdgeTracker()
    model, mirror, retained = pipeline()
    edge = EdgeScript()
    edge.device_metrics = [*edge.device_metrics, ("GoodC\x7funt", 20, DataType.Int64, 7),
                           ("Line/+/X", 21, DataType.Int64, 8)]
    feed(tracker, model, mirror, retained, edge.nbirth(), T0)
    events = feed(tracker, model, mirror, retained, edge.dbirth(), T0 + 1)
    birth = kinds(events, MetricsChanged)[0]
    assert [m.name for m in birth.metrics] == ["Speed", "Temperature", "Offset", "Running", "Recipe", "Counts"]
    violations = kinds(events, ProtocolViolation)
    assert sorted(v.kind for v in violations) == ["invalid_metric_name", "invalid_metric_name"]
    assert dict(tracker.counters.metrics_refused) == {"control_character": 1, "mqtt_wildcard": 1}
    assert kinds(events, RebirthNeeded) == []  # the birth itself is fine: no rebirth loop
    events = feed(tracker, model, mirror, retained, edge.ddata({"GoodC\x7funt": 9, "Speed": 2.5}), T0 + 2)
    assert [m.name for m in kinds(events, MetricsChanged)[0].metrics] == ["Speed"]
    assert tracker.counters.refused_values == 1
    assert kinds(events, RebirthNeeded) == []
    assert not any("\x7f" in topic or "+" in topic for topic in retained)
    assert json.loads(retained[f"{LINE}/{CELL}/Speed"])["value"] == 2.5


def test_a_name_that_is_not_utf8_refuses_the_whole_birth() -> None:
    tracker = EdgeTracker()
    edge = EdgeScript()
    tracker.handle(*edge.nbirth(), T0)
    topic, data = edge.dbirth()
    broken = data.replace(b"Speed", b"Sp\xffed")
    events = tracker.handle(topic, broken, T0 + 1)
    assert kinds(events, MetricsChanged) == []
    assert [v.kind for v in kinds(events, ProtocolViolation)] == ["malformed"]
    assert not tracker.is_online(GROUP, EDGE, CELL)


def test_metrics_beyond_the_node_limit_are_refused_and_counted() -> None:
    tracker = EdgeTracker(max_metrics_per_node=5)
    edge = EdgeScript()
    tracker.handle(*edge.nbirth(), T0)  # Node Control/Rebirth, Line/State, Line/GoodCount: 3 of 5
    events = tracker.handle(*edge.dbirth(), T0 + 1)
    assert [m.name for m in kinds(events, MetricsChanged)[0].metrics] == ["Speed", "Temperature"]
    assert tracker.counters.metrics_refused == {"node_limit": 4}
    assert [v.kind for v in kinds(events, ProtocolViolation)] == ["metric_limit"]


def test_birth_churn_quarantines_the_node_until_a_quiet_period() -> None:
    tracker = EdgeTracker(birth_limit=3, birth_window_ms=10_000, quarantine_quiet_ms=5_000, rebirth_throttle_ms=0)
    model, mirror, retained = pipeline()
    edge = EdgeScript()
    t = T0
    for _ in range(3):
        feed(tracker, model, mirror, retained, edge.nbirth(), t)
        feed(tracker, model, mirror, retained, edge.dbirth(), t + 1)
        t += 100
    assert json.loads(retained[f"{LINE}/{CELL}/Speed"])["quality"] == "GOOD"
    events = feed(tracker, model, mirror, retained, edge.nbirth(), t)  # the 4th birth in 10 s
    assert [type(e) for e in events] == [ProtocolViolation, NodeQuarantined, NodeDied]
    assert events[2].reason == "quarantined"
    assert tracker.quarantined() == [NODE]
    # every tag of the node is STALE, not left looking valid
    values = {topic: json.loads(p) for topic, p in retained.items() if not topic.endswith("/_meta")}
    assert values and {v["quality"] for v in values.values()} == {"STALE"}
    # nothing it sends is applied, and it is not asked for more births
    for message in (edge.dbirth(), edge.ddata({"Speed": 99.0}), edge.nbirth()):
        t += 1000
        assert feed(tracker, model, mirror, retained, message, t) == []
    assert tracker.counters.quarantined_messages == 4
    # nor the broker's certificate copy of a birth (a Sparkplug-aware broker re-serves the last one)
    topic, data = edge.nbirth()
    assert tracker.handle_certificate("$sparkplug/certificates/" + topic, data, t) == []
    assert tracker.quarantined() == [NODE] and not tracker.is_online(GROUP, EDGE)
    assert tracker.counters.quarantined_messages == 5
    assert json.loads(retained[f"{LINE}/{CELL}/Speed"])["quality"] == "STALE"
    # 5 s after the last birth it is released; its next DATA earns a rebirth request
    t += 5000
    events = feed(tracker, model, mirror, retained, edge.ddata({"Speed": 1.0}), t)
    assert isinstance(events[0], NodeReleased) and events[0].reason == "quiet"
    assert [e.cause.value for e in kinds(events, RebirthNeeded)] == ["data_before_birth"]
    assert tracker.quarantined() == []
    feed(tracker, model, mirror, retained, edge.nbirth(), t + 1)
    feed(tracker, model, mirror, retained, edge.dbirth(), t + 2)
    feed(tracker, model, mirror, retained, edge.ddata({"Speed": 4.5}), t + 3)
    assert json.loads(retained[f"{LINE}/{CELL}/Speed"])["value"] == 4.5
    assert tracker.counters.quarantines == 1 and tracker.counters.quarantine_releases == 1


def test_an_operator_releases_a_quarantined_node() -> None:
    tracker = EdgeTracker(birth_limit=1, quarantine_quiet_ms=60_000)
    edge = EdgeScript()
    tracker.handle(*edge.nbirth(), T0)
    assert kinds(tracker.handle(*edge.nbirth(), T0 + 1), NodeQuarantined)
    assert [e.reason for e in tracker.release(GROUP, EDGE, T0 + 2)] == ["operator"]
    assert kinds(tracker.handle(*edge.nbirth(), T0 + 3), MetricsChanged)


def test_a_device_dbirth_again_and_again_is_churn() -> None:
    tracker = EdgeTracker(birth_limit=2)
    edge = EdgeScript()
    tracker.handle(*edge.nbirth(), T0)
    tracker.handle(*edge.dbirth(), T0 + 1)  # part of the node's birth: not churn
    assert not kinds(tracker.handle(*edge.dbirth(), T0 + 2), NodeQuarantined)  # 2nd birth of the node
    assert kinds(tracker.handle(*edge.dbirth(), T0 + 3), NodeQuarantined)


def test_ghost_metrics_and_devices_are_stale_then_retired_after_the_grace() -> None:
    tracker = EdgeTracker(retire_grace_ms=1000)
    model, mirror, retained = pipeline()
    forged = EdgeScript()
    forged.device_metrics = [*forged.device_metrics, ("GoodCoUnt", 30, DataType.Int64, 1)]
    feed(tracker, model, mirror, retained, forged.nbirth(), T0)
    feed(tracker, model, mirror, retained, forged.dbirth(), T0 + 1)
    bogus = EdgeScript(seq=forged.seq, device="bogus")
    bogus.device_metrics = [(n, a + 100, d, v) for n, a, d, v in bogus.device_metrics]
    feed(tracker, model, mirror, retained, bogus.dbirth(), T0 + 2)
    assert f"{LINE}/{CELL}/GoodCoUnt" in retained and f"{LINE}/bogus/Speed" in retained
    real = EdgeScript(bd_seq=1)
    feed(tracker, model, mirror, retained, real.nbirth(), T0 + 10)
    events = feed(tracker, model, mirror, retained, real.dbirth(), T0 + 11)
    assert [(e.device_id, e.reason) for e in kinds(events, DeviceDied)] == []
    assert json.loads(retained[f"{LINE}/{CELL}/GoodCoUnt"])["quality"] == "STALE"
    events = feed(tracker, model, mirror, retained, real.ddata({"Speed": 3.0}), T0 + 12)
    assert [(e.device_id, e.reason) for e in kinds(events, DeviceDied)] == [("bogus", "not_reborn")]
    assert json.loads(retained[f"{LINE}/bogus/Speed"])["quality"] == "STALE"
    events = feed(tracker, model, mirror, retained, real.ddata({"Speed": 3.5}), T0 + 1012)
    assert sorted((e.device_id, e.names) for e in kinds(events, MetricsRetired)) == [
        ("bogus", ("Counts", "Offset", "Recipe", "Running", "Speed", "Temperature")), (CELL, ("GoodCoUnt",))]
    real_topics = {f"{LINE}/{path}" for path in ("Line/State", "Line/GoodCount")} | {
        f"{LINE}/{CELL}/{name}" for name in ("Speed", "Temperature", "Offset", "Running", "Recipe", "Counts")}
    assert set(retained) == real_topics | {f"{topic}/_meta" for topic in real_topics}
    assert tracker.counters.metrics_retired == 7
    # the live model forgets them too: forged names cannot pile up in memory
    assert model.device(GROUP, EDGE, "bogus") is None
    assert model.metric(GROUP, EDGE, CELL, "GoodCoUnt") is None
    assert model.metric(GROUP, EDGE, CELL, "Speed").quality == "GOOD"


def test_a_ghost_declared_again_within_the_grace_is_kept() -> None:
    tracker = EdgeTracker(retire_grace_ms=1000)
    edge = EdgeScript()
    tracker.handle(*edge.nbirth(), T0)
    tracker.handle(*edge.dbirth(), T0 + 1)
    smaller = EdgeScript(bd_seq=1)
    smaller.device_metrics = smaller.device_metrics[:1]
    tracker.handle(*smaller.nbirth(), T0 + 10)
    tracker.handle(*smaller.dbirth(), T0 + 11)
    again = EdgeScript(bd_seq=2)
    tracker.handle(*again.nbirth(), T0 + 20)
    tracker.handle(*again.dbirth(), T0 + 21)
    assert kinds(tracker.tick(T0 + 5000), MetricsRetired) == []
    assert tracker.next_reorder_deadline_ms() is None
