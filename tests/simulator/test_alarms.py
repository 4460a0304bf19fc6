"""The condition state machine (simulator.alarms) driven by the line model and a fake clock: no I/O."""

from __future__ import annotations

import pytest

from simulator.alarms import ConditionError, LimitState, limit_state
from simulator.config import CellConfig, SimulatorConfig
from simulator.errors import SimulatorError, UnknownTagError
from simulator.model import LineModel
from tests.simulator.conftest import FakeClock, run

FILLER_ALARM = "Line1/Filler/TemperatureAlarm"


def quiet_model(clock: FakeClock) -> LineModel:
    return LineModel(SimulatorConfig(cells=[
        CellConfig(name="Filler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=1.0),
    ]), clock=clock)


def transitions(model: LineModel) -> list[tuple[str | None, bool, bool, bool, bool]]:
    return [(e.limit_state.value if e.limit_state else None, e.active, e.acked, e.confirmed, e.retain)
            for e in model.alarms.drain() if e.condition == FILLER_ALARM]


def test_limits_follow_the_setpoint_with_a_deadband_on_the_way_out() -> None:
    assert limit_state(24.9, 20.0, None) is None
    assert limit_state(25.0, 20.0, None) is LimitState.HIGH
    assert limit_state(30.0, 20.0, None) is LimitState.HIGHHIGH
    assert limit_state(15.0, 20.0, None) is LimitState.LOW
    assert limit_state(10.0, 20.0, None) is LimitState.LOWLOW
    # leaving a limit needs DEADBAND_C (0.5 degC) inside it: noise at the limit does not chatter
    assert limit_state(29.6, 20.0, LimitState.HIGHHIGH) is LimitState.HIGHHIGH
    assert limit_state(29.4, 20.0, LimitState.HIGHHIGH) is LimitState.HIGH
    assert limit_state(24.6, 20.0, LimitState.HIGH) is LimitState.HIGH
    assert limit_state(24.4, 20.0, LimitState.HIGH) is None
    assert limit_state(15.4, 20.0, LimitState.LOW) is LimitState.LOW
    assert limit_state(15.6, 20.0, LimitState.LOW) is None
    assert limit_state(25.0, 20.0, LimitState.LOW) is LimitState.HIGH  # a jump across skips normal


def test_disturbance_raises_high_then_highhigh_and_back(clock: FakeClock) -> None:
    model = quiet_model(clock)
    model.set_disturbance("Filler", 15.0)
    run(model, clock, 5.0)
    model.set_disturbance("Filler", 0.0)
    run(model, clock, 8.0)
    assert transitions(model) == [
        ("High", True, False, True, True),
        ("HighHigh", True, False, True, True),
        ("High", True, False, True, True),
        (None, False, False, True, True),
    ]
    condition = model.alarms.condition(FILLER_ALARM)
    assert condition.events == 4
    assert model.sample("Simulation/Truth/FillerTemperatureAlarmEvents").value == 4
    assert model.sample("Simulation/Truth/ActiveAlarms").value == 0
    assert model.sample("Simulation/Truth/UnackedAlarms").value == 1
    assert [e.condition for e in model.alarms.retained()] == [FILLER_ALARM]


def test_a_setpoint_the_temperature_has_not_reached_is_a_low_deviation(clock: FakeClock) -> None:
    model = quiet_model(clock)
    model.write_tag("Line1/Filler/TemperatureSetpoint", 40.0)
    run(model, clock, 0.1)
    assert transitions(model) == [("LowLow", True, False, True, True)]
    run(model, clock, 10.0)  # the temperature catches up: LowLow -> Low -> normal
    assert transitions(model) == [("Low", True, False, True, True), (None, False, False, True, True)]


def test_acknowledge_and_confirm_rules(clock: FakeClock) -> None:
    model = quiet_model(clock)
    jam = model.set_alarm("Filler", "jam", True)
    raised = model.alarms.drain()[-1]
    assert (raised.active, raised.acked, raised.confirmed, raised.retain, raised.severity) == \
        (True, False, True, True, 600)
    with pytest.raises(ConditionError) as unknown:
        model.acknowledge(jam.path, b"not-an-event", "")
    assert unknown.value.status_name == "BadEventIdUnknown"
    with pytest.raises(ConditionError) as early:
        model.confirm(jam.path, raised.event_id, "")
    assert early.value.status_name == "BadConditionBranchAlreadyConfirmed"
    model.acknowledge(jam.path, raised.event_id, "on it")
    with pytest.raises(ConditionError) as twice:
        model.acknowledge(jam.path, raised.event_id, "")
    assert twice.value.status_name == "BadConditionBranchAlreadyAcked"
    model.set_alarm("Filler", "jam", True)  # no change, no event
    model.set_alarm("Filler", "jam", False)
    acked, cleared = model.alarms.drain()
    assert (acked.acked, acked.confirmed, acked.comment) == (True, False, "on it")
    assert (cleared.active, cleared.retain) == (False, True)  # still to be confirmed
    model.confirm(jam.path, cleared.event_id, "fixed")
    (confirmed,) = model.alarms.drain()
    assert (confirmed.confirmed, confirmed.retain, confirmed.comment) == (True, False, "fixed")
    assert model.alarms.retained() == []
    with pytest.raises(ConditionError) as over:  # the occurrence is over: its EventIds are gone
        model.acknowledge(jam.path, raised.event_id, "")
    assert over.value.status_name == "BadEventIdUnknown"
    assert jam.events == 4
    # a new occurrence needs a new acknowledgement
    model.set_alarm("Filler", "jam", True)
    (again,) = model.alarms.drain()
    assert (again.acked, again.confirmed, again.comment) == (False, True, "")


def test_bad_alarm_requests_are_refused_clearly(clock: FakeClock) -> None:
    model = quiet_model(clock)
    with pytest.raises(SimulatorError, match="unknown alarm 'smoke'"):
        model.set_alarm("Filler", "smoke", True)
    with pytest.raises(UnknownTagError, match="no cell 'Mixer'"):
        model.set_alarm("Mixer", "jam", True)
    with pytest.raises(UnknownTagError, match="no condition"):
        model.acknowledge("Line1/Filler/Smoke", b"", "")
    with pytest.raises(SimulatorError, match="finite"):
        model.set_disturbance("Filler", float("nan"))
    assert model.alarms.total_events == 0


def test_an_alarm_flood_toggles_the_off_normal_conditions_at_the_rate_asked(clock: FakeClock) -> None:
    """Simulation/AlarmFlood (bench/alarm_flood.py): exactly rate x duration condition events, each a
    real toggle of a Jam/DoorOpen/EStop with its own EventId, stamped with the tick that raises it."""
    model = LineModel(SimulatorConfig(cells=[
        CellConfig(name=name, temperature_noise_c=0.0) for name in ("Filler", "Capper")]), clock=clock)
    model.alarms.drain()
    model.start_alarm_flood(25.0, 2.0)
    run(model, clock, 3.0)
    events = model.alarms.drain()
    assert len(events) == 50 and len({e.event_id for e in events}) == 50
    assert not model.alarms.flooding
    flooded = [c for c in model.alarms.conditions.values() if c.name != "TemperatureAlarm"]
    # round robin over the 6 off-normal conditions: 50 = 8 x 6 + 2 toggles
    assert sorted(c.events for c in flooded) == [8, 8, 8, 8, 9, 9]
    assert all(c.active == (c.events % 2 == 1) for c in flooded)  # raise, clear, raise...
    assert model.sample("Simulation/Truth/AlarmEvents").value == 50
    assert {e.time for e in events} <= {round(clock.now - 3.0 + 0.1 * k, 6) for k in range(1, 21)}
    for rate, duration in ((0.0, 1.0), (-5.0, 1.0), (30_000.0, 1.0), (10.0, 0.0), (10.0, 4000.0)):
        with pytest.raises(SimulatorError):
            model.start_alarm_flood(rate, duration)
    assert not model.alarms.flooding
