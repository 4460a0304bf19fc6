"""Stop events (debounce, micro-stop cutoff), reason classification and loss buckets: pure logic, exact numbers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mes_adapter.config.mes import MesConfig
from mes_adapter.downtime.config import DowntimeConfig, UnknownReasonError
from mes_adapter.downtime.losses import BucketLoss, loss_buckets
from mes_adapter.errors import MesInputError
from mes_adapter.oee.compute import Interval, MachineState, StateChange, compute_oee, state_intervals
from mes_adapter.oee.stops import detect_stops

S = 1000
R, X, P = MachineState.RUNNING, MachineState.STOPPED, MachineState.PLANNED_DOWNTIME
WINDOW = Interval(0, 3600 * S)

# a flapping stop at 600 s: down 20 s, up 3 s, down 10 s, up 2 s, down 30 s (one stop of 60 s lost time
# with a 5 s debounce); a 40 s micro-stop at 1200 s; a 300 s stop at 2000 s; planned downtime 3000-3300 s
# with a stop 2900-3100 s straddling it (100 s of it outside the planned part)
TIMELINE = [StateChange(0, R),
            StateChange(600 * S, X), StateChange(620 * S, R), StateChange(623 * S, X), StateChange(633 * S, R),
            StateChange(635 * S, X), StateChange(665 * S, R),
            StateChange(1200 * S, X), StateChange(1240 * S, R),
            StateChange(2000 * S, X), StateChange(2300 * S, R),
            StateChange(2900 * S, X), StateChange(3100 * S, R)]
PLANNED = [Interval(3000 * S, 3300 * S)]

CONFIG = DowntimeConfig(debounce_s=5, reasons={
    "breakdowns": {"mechanical": {"BD-JAM": "jam", "BD-BRG": "bearing"}},
    "setup_adjustments": {"changeover": {"SU-CHG": "changeover"}}})


def test_debounce_merges_a_flapping_state_into_one_stop() -> None:
    events = detect_stops(state_intervals(WINDOW, TIMELINE), debounce_ms=5 * S, micro_stop_ms=45 * S)
    assert [(e.start_ms, e.end_ms, e.down_ms, e.micro) for e in events] == [
        (600 * S, 665 * S, 60 * S, False),
        (1200 * S, 1240 * S, 40 * S, True),
        (2000 * S, 2300 * S, 300 * S, False),
        (2900 * S, 3100 * S, 200 * S, False)]


def test_without_debounce_each_flap_is_a_stop_and_short_ones_are_micro() -> None:
    events = detect_stops(state_intervals(WINDOW, TIMELINE), debounce_ms=0, micro_stop_ms=45 * S)
    assert [(e.start_ms, e.down_ms, e.micro) for e in events[:3]] == [
        (600 * S, 20 * S, True), (623 * S, 10 * S, True), (635 * S, 30 * S, True)]
    assert len(events) == 6


def test_debounce_does_not_bridge_a_run_as_long_as_the_debounce() -> None:
    changes = [StateChange(0, X), StateChange(10 * S, R), StateChange(15 * S, X), StateChange(20 * S, R)]
    events = detect_stops(state_intervals(Interval(0, 60 * S), changes), debounce_ms=5 * S)
    assert [(e.start_ms, e.down_ms) for e in events] == [(0, 10 * S), (15 * S, 5 * S)]


def test_planned_downtime_ends_a_flap() -> None:
    changes = [StateChange(0, X), StateChange(10 * S, P), StateChange(12 * S, X), StateChange(20 * S, R)]
    events = detect_stops(state_intervals(Interval(0, 60 * S), changes), debounce_ms=5 * S)
    assert [(e.start_ms, e.down_ms) for e in events] == [(0, 10 * S), (12 * S, 8 * S)]


def test_loss_buckets_by_reason_micro_and_unexplained_add_up_to_oee() -> None:
    events = detect_stops(state_intervals(WINDOW, TIMELINE), debounce_ms=5 * S, micro_stop_ms=45 * S)
    reasons = {600 * S: "BD-JAM", 2900 * S: "SU-CHG"}  # the 300 s stop at 2000 s stays unexplained
    losses = loss_buckets(events, reasons, WINDOW, PLANNED, CONFIG)
    assert losses == {"breakdowns": BucketLoss(60 * S, 1), "setup_adjustments": BucketLoss(100 * S, 1),
                      "small_stops": BucketLoss(40 * S, 1), "unexplained": BucketLoss(300 * S, 1)}
    oee = compute_oee(WINDOW, TIMELINE, [], PLANNED, micro_stop_threshold_ms=45 * S, debounce_ms=5 * S)
    assert (oee.unplanned_stop_ms, oee.stop_count, oee.micro_stop_ms, oee.micro_stop_count) == (
        460 * S, 3, 40 * S, 1)
    availability_buckets = sum(v.lost_ms for k, v in losses.items() if k != "small_stops")
    assert availability_buckets == oee.unplanned_stop_ms
    assert oee.apt_ms == 3300 * S - 460 * S


def test_loss_buckets_clip_to_the_window() -> None:
    events = detect_stops(state_intervals(WINDOW, TIMELINE), debounce_ms=5 * S, micro_stop_ms=45 * S)
    half = Interval(2100 * S, 3600 * S)  # 200 s of the 2000 s stop, 100 s of the straddling one
    losses = loss_buckets(events, {}, half, PLANNED, CONFIG)
    assert losses["unexplained"] == BucketLoss(300 * S, 2)
    assert losses["breakdowns"] == BucketLoss(0, 0)


def test_a_code_outside_the_hierarchy_is_refused_with_the_known_codes() -> None:
    assert CONFIG.reason("BD-BRG").model_dump() == {
        "code": "BD-BRG", "bucket": "breakdowns", "category": "mechanical", "description": "bearing"}
    with pytest.raises(UnknownReasonError) as info:
        CONFIG.reason("BD-XXX")
    assert isinstance(info.value, MesInputError)
    assert str(info.value) == ("reason code 'BD-XXX' is not in the reason hierarchy "
                               "(known codes: ['BD-BRG', 'BD-JAM', 'SU-CHG'])")


def test_hierarchy_refuses_a_code_in_two_places_and_reserved_buckets() -> None:
    with pytest.raises(ValidationError, match="'A1' is in b1/c1 and in b2/c2"):
        DowntimeConfig(reasons={"b1": {"c1": {"A1": "x"}}, "b2": {"c2": {"A1": "y"}}})
    with pytest.raises(ValidationError, match="clash: \\['small_stops'\\]"):
        DowntimeConfig(reasons={"small_stops": {"c": {"A": "x"}}})
    with pytest.raises(ValidationError, match="codes \\['NOPE'\\] are not in the reason hierarchy"):
        DowntimeConfig(reason_tags={"a/b/c/d": {"metric": "StopReason", "codes": {"3": "NOPE"}}})


def test_reason_tags_must_name_configured_lines() -> None:
    with pytest.raises(ValidationError, match="reason_tags names lines that are not configured: \\['a/b/c/d'\\]"):
        MesConfig(downtime={"reason_tags": {"a/b/c/d": {"metric": "StopReason"}}})
    with pytest.raises(ValidationError, match="reason_tags"):
        DowntimeConfig(reason_tags={"not a line": {"metric": "StopReason"}})
