"""ISO 22400 OEE against two oracles, plus micro-stop and planned-downtime cases.

Oracle A is the public Vorne/oee.com worksheet; oracle B an event-level shift whose micro-stops
move loss between availability and performance but never change OEE.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mes_adapter.oee.compute import (
    Interval,
    MachineState,
    ProductionCount,
    StateChange,
    compute_oee,
    merge,
    oee_ratios,
    state_intervals,
)

RUN, STOP, PLANNED = MachineState.RUNNING, MachineState.STOPPED, MachineState.PLANNED_DOWNTIME
MIN = 60_000


def at(hhmmss: str) -> int:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return int(datetime(2024, 1, 17, h, m, s, tzinfo=UTC).timestamp() * 1000)


def test_oracle_a_worksheet() -> None:
    # shift 480 min, breaks 60 ⇒ PBT 420 min; downtime 47 ⇒ APT 373 min; PRI 1 s; 19 271 / 423
    a, p, q, oee, warnings = oee_ratios(420 * MIN, 373 * MIN,
                                        [ProductionCount(good=18_848, scrap=423, ideal_cycle_s=1.0)])
    assert a == pytest.approx(0.888095, abs=1e-6)
    assert p == pytest.approx(0.861081, abs=1e-6)
    assert q == pytest.approx(0.978050, abs=1e-6)
    assert oee == pytest.approx(0.747937, abs=1e-6)
    assert oee == pytest.approx(18_848 / 25_200, rel=1e-12)
    assert warnings == ()


def test_oracle_a_from_a_timeline() -> None:
    window = Interval(0, 480 * MIN)
    changes = [StateChange(0, RUN), StateChange(100 * MIN, STOP), StateChange(147 * MIN, RUN)]
    breaks = [Interval(200 * MIN, 230 * MIN), Interval(400 * MIN, 430 * MIN)]
    r = compute_oee(window, changes, [ProductionCount(18_848, 423, 1.0)], breaks)
    assert (r.pbt_ms, r.apt_ms, r.planned_downtime_ms) == (420 * MIN, 373 * MIN, 60 * MIN)
    assert r.oee == pytest.approx(0.747937, abs=1e-6)


def oracle_b_changes() -> list[StateChange]:
    """Shift 06–14 UTC, breakdown 10:00–10:25, ten 60 s micro-stops inside production time."""
    changes = [StateChange(at("06:00:00"), RUN), StateChange(at("10:00:00"), STOP),
               StateChange(at("10:25:00"), RUN)]
    micro_stops = ["06:30:00", "06:50:00", "07:10:00", "07:30:00", "07:50:00", "08:10:00",
                   "08:30:00", "08:50:00", "09:30:00", "11:40:00"]
    for start in micro_stops:
        changes += [StateChange(at(start), STOP), StateChange(at(start) + MIN, RUN)]
    return changes


ORACLE_B_WINDOW = Interval(at("06:00:00"), at("14:00:00"))
ORACLE_B_PLANNED = [Interval(at("09:00:00"), at("09:30:00")), Interval(at("12:00:00"), at("12:30:00"))]
ORACLE_B_COUNTS = [ProductionCount(good=9_800, scrap=200, ideal_cycle_s=2.0)]


def test_oracle_b_micro_stops_as_speed_loss() -> None:
    r = compute_oee(ORACLE_B_WINDOW, oracle_b_changes(), ORACLE_B_COUNTS, ORACLE_B_PLANNED,
                    micro_stop_threshold_ms=120_000)
    assert (r.pbt_ms, r.apt_ms) == (25_200_000, 23_700_000)
    assert (r.micro_stop_count, r.micro_stop_ms, r.stop_count, r.unplanned_stop_ms) == (
        10, 600_000, 1, 1_500_000)
    assert r.availability == pytest.approx(0.940476, abs=1e-6)
    assert r.performance == pytest.approx(0.843882, abs=1e-6)
    assert r.quality == pytest.approx(0.98, abs=1e-9)
    assert r.oee == pytest.approx(0.777778, abs=1e-6)


def test_oracle_b_iso_strict() -> None:
    r = compute_oee(ORACLE_B_WINDOW, oracle_b_changes(), ORACLE_B_COUNTS, ORACLE_B_PLANNED,
                    micro_stop_threshold_ms=None)
    assert r.apt_ms == 23_100_000 and r.stop_count == 11 and r.micro_stop_count == 0
    assert r.availability == pytest.approx(0.916667, abs=1e-6)
    assert r.performance == pytest.approx(0.865801, abs=1e-6)
    assert r.oee == pytest.approx(0.777778, abs=1e-6)


@pytest.mark.parametrize("threshold", [None, 0, 59_999, 60_000, 120_000, 1_500_000, 10**9])
def test_micro_stop_split_never_changes_oee(threshold: int | None) -> None:
    r = compute_oee(ORACLE_B_WINDOW, oracle_b_changes(), ORACLE_B_COUNTS, ORACLE_B_PLANNED,
                    micro_stop_threshold_ms=threshold)
    assert r.oee == pytest.approx(2.0 * 9_800 / 25_200, rel=1e-12)


def test_pri_too_slow_is_flagged_not_capped() -> None:
    r = compute_oee(ORACLE_B_WINDOW, oracle_b_changes(), [ProductionCount(9_800, 200, 2.5)],
                    ORACLE_B_PLANNED)
    assert r.performance == pytest.approx(1.054852, abs=1e-6)
    assert any("above 1" in w for w in r.warnings)


def test_two_products() -> None:
    counts = [ProductionCount(5_000, 0, 2.0, product_id="X"), ProductionCount(2_000, 0, 3.0, product_id="Y")]
    _, _, _, oee, _ = oee_ratios(25_200_000, 25_200_000, counts)
    assert oee == pytest.approx(0.634921, abs=1e-6)


def test_stop_overlapping_planned_downtime_counts_only_inside_pbt() -> None:
    window = Interval(0, 100 * MIN)
    # breakdown 40–70 min, planned break 50–60: 20 min of loss, classified by its full 30 min
    changes = [StateChange(0, RUN), StateChange(40 * MIN, STOP), StateChange(70 * MIN, RUN)]
    r = compute_oee(window, changes, [ProductionCount(100, 0, 1.0)], [Interval(50 * MIN, 60 * MIN)],
                    micro_stop_threshold_ms=25 * MIN)
    assert (r.pbt_ms, r.unplanned_stop_ms, r.apt_ms, r.stop_count) == (90 * MIN, 20 * MIN, 70 * MIN, 1)
    # a stop entirely inside planned downtime costs nothing
    changes = [StateChange(0, RUN), StateChange(52 * MIN, STOP), StateChange(58 * MIN, RUN)]
    r = compute_oee(window, changes, [ProductionCount(100, 0, 1.0)], [Interval(50 * MIN, 60 * MIN)])
    assert (r.apt_ms, r.stop_count, r.micro_stop_count) == (90 * MIN, 0, 0)


def test_a_long_stop_reaching_into_the_window_is_no_micro_stop() -> None:
    """The stop began 10 min before the window (the line idle before a batch) and ends 0.5 s into it:
    only 0.5 s is lost in the window, but it is a 10 min stop, as the loss buckets count it (the
    downtime service reads the timeline from before the window): availability loss, not a micro-stop."""
    window = Interval(60 * MIN, 120 * MIN)
    changes = [StateChange(50 * MIN, STOP), StateChange(60 * MIN + 500, RUN), StateChange(90 * MIN, STOP),
               StateChange(90 * MIN + 800, RUN)]
    r = compute_oee(window, changes, [ProductionCount(1000, 0, 1.0)], micro_stop_threshold_ms=1_000)
    assert (r.unplanned_stop_ms, r.stop_count, r.micro_stop_ms, r.micro_stop_count) == (500, 1, 800, 1)
    assert (r.pbt_ms, r.apt_ms, r.planned_downtime_ms) == (60 * MIN, 60 * MIN - 500, 0)
    # planned downtime before the window is not the window's
    r = compute_oee(window, [StateChange(0, PLANNED), StateChange(60 * MIN, RUN)], [ProductionCount(1, 0, 1.0)])
    assert (r.planned_downtime_ms, r.pbt_ms) == (0, 60 * MIN)


def test_planned_downtime_from_machine_state_and_unknown_time() -> None:
    window = Interval(0, 60 * MIN)
    # no state known for the first 5 min (unknown = unplanned stop), planned changeover 30–40
    changes = [StateChange(5 * MIN, RUN), StateChange(30 * MIN, PLANNED), StateChange(40 * MIN, RUN)]
    r = compute_oee(window, changes, [ProductionCount(1000, 10, 1.0)], micro_stop_threshold_ms=None)
    assert (r.planned_downtime_ms, r.pbt_ms, r.apt_ms) == (10 * MIN, 50 * MIN, 45 * MIN)
    assert r.availability == pytest.approx(0.9)


def test_degenerate_inputs_give_none_not_errors() -> None:
    window = Interval(0, 10 * MIN)
    r = compute_oee(window, [StateChange(0, PLANNED)], [])
    assert r.pbt_ms == 0 and r.availability is None and r.oee is None
    r = compute_oee(window, [StateChange(0, RUN)], [ProductionCount(10, 0, None, product_id="Z")])
    assert r.performance is None and r.oee is None and "PRI" in r.warnings[0]
    r = compute_oee(window, [StateChange(0, STOP)], [])
    assert r.availability == 0 and r.oee == 0.0


def test_state_intervals_and_merge() -> None:
    changes = [StateChange(-5, RUN), StateChange(3, STOP), StateChange(3, RUN), StateChange(20, STOP)]
    assert state_intervals(Interval(0, 10), changes) == [(Interval(0, 3), RUN), (Interval(3, 10), RUN)]
    assert merge([Interval(5, 8), Interval(0, 2), Interval(1, 3), Interval(8, 9)]) == [
        Interval(0, 3), Interval(5, 9)]
    with pytest.raises(ValueError):
        Interval(5, 1)
