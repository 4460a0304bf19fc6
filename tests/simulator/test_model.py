"""Line physics without I/O: state machine, counters, batches, determinism, faults."""

from __future__ import annotations

import pytest

from simulator.config import SimulatorConfig
from simulator.errors import InvalidStateError, NotWritableError, SimulatorError, UnknownTagError
from simulator.faults import (
    BAD_COMMUNICATION_ERROR,
    BAD_SENSOR_FAILURE,
    GOOD,
    UNCERTAIN_LAST_USABLE_VALUE,
)
from simulator.model import STOP_REASON_TECHNICAL, LineModel
from simulator.packml import Command, InvalidCommandError, State, next_state
from tests.simulator.conftest import FakeClock, run


def test_packml_table_refuses_unknown_transitions() -> None:
    assert next_state(State.IDLE, Command.START) is State.STARTING
    assert next_state(State.EXECUTE, Command.STOP) is State.STOPPING
    with pytest.raises(InvalidCommandError, match="Unhold is not allowed in state Idle"):
        next_state(State.IDLE, Command.UNHOLD)


def test_start_goes_through_starting_and_produces_only_in_execute(model: LineModel, clock: FakeClock) -> None:
    assert model.state is State.IDLE
    model.start()
    assert model.state is State.STARTING
    run(model, clock, 0.4)
    assert model.state is State.STARTING and model.good_total + model.reject_total == 0
    run(model, clock, 0.2)
    assert model.state is State.EXECUTE
    run(model, clock, 10.0)
    # 10 parts/s from t=0.5 to t=10.6 -> 101 parts, whatever their fate
    assert model.good_total + model.reject_total == 101
    samples = model.samples()
    assert samples["Line1/State"].value == "Execute"
    assert samples["Line1/StateCode"].value == 6
    assert samples["Line1/Filler/StateCode"].value == 6
    assert samples["Line1/Speed"].value == 600.0


def test_stop_reset_start_cycle_and_invalid_command(model: LineModel, clock: FakeClock) -> None:
    model.start()
    run(model, clock, 1.0)
    model.stop()
    run(model, clock, 1.0)
    assert model.state is State.STOPPED
    with pytest.raises(InvalidStateError):
        model.start()  # Stopped needs Reset first
    model.reset()
    run(model, clock, 1.0)
    assert model.state is State.IDLE


def test_counters_are_consistent_between_cells_and_line(model: LineModel, clock: FakeClock) -> None:
    model.set_reject_rate(0.2)
    model.start()
    run(model, clock, 30.0)
    s = {path: sample.value for path, sample in model.samples().items()}
    total = model.good_total + model.reject_total
    assert total == 295  # Execute from 0.5 s to 30 s at 10 parts/s
    assert s["Line1/GoodCount"] == model.good_total == s["Line1/Labeler/GoodCount"]
    assert s["Line1/RejectCount"] == model.reject_total == (
        s["Line1/Filler/RejectCount"] + s["Line1/Capper/RejectCount"] + s["Line1/Labeler/RejectCount"])
    assert s["Line1/Filler/GoodCount"] + s["Line1/Filler/RejectCount"] == total
    assert s["Line1/Capper/GoodCount"] + s["Line1/Capper/RejectCount"] == s["Line1/Filler/GoodCount"]
    assert 0.3 < model.reject_total / total < 0.6  # 1 - 0.8**3 = 0.488


def test_counter_rollover(clock: FakeClock) -> None:
    model = LineModel(SimulatorConfig(rate=10.0, counter_modulus=1000, counter_start=990), clock=clock)
    model.set_reject_rate(0.0)
    model.start()
    run(model, clock, 3.0)
    assert model.good_total == 25
    assert model.sample("Line1/GoodCount").value == (990 + 25) % 1000 == 15
    assert model.sample("Simulation/Truth/TotalGood").value == 25  # the truth never wraps


def test_batch_quantity_completes_exactly_and_records_truth(model: LineModel, clock: FakeClock) -> None:
    start = clock.now
    window = model.start_batch("WO-1", "Cola", 50)
    assert model.sample("Line1/CurrentBatch").value == ""  # published on the next tick
    run(model, clock, 0.1)
    assert model.sample("Line1/CurrentBatch").value == "WO-1"
    assert model.sample("Line1/BatchQuantity").value == 50
    run(model, clock, 20.0)
    assert model.state is State.COMPLETE
    assert window.good == 50 and not window.active and window.end_reason == "quantity"
    # Execute from start+0.5 s at 10 parts/s; the last good part ends the window
    assert window.ended_at == pytest.approx(start + 0.5 + window.total / 10.0)
    assert model.sample("Simulation/Truth/BatchGood").value == 50
    assert model.sample("Simulation/Truth/BatchReject").value == window.reject
    assert model.sample("Line1/CurrentBatch").value == ""
    # a second batch resets the line from Complete and runs again
    second = model.start_batch("WO-2", "Cola", 0)
    assert model.state is State.RESETTING
    run(model, clock, 2.0)
    assert model.state is State.EXECUTE
    closed = model.stop_batch()
    assert closed is second and closed.end_reason == "stop_batch" and closed.good > 0
    assert model.state is State.COMPLETING
    assert len(model.batches) == 2


def test_production_outside_a_batch_is_not_counted_into_it(model: LineModel, clock: FakeClock) -> None:
    model.start()
    run(model, clock, 3.0)
    model.stop()
    run(model, clock, 1.0)
    before = model.good_total + model.reject_total
    assert before == 25
    window = model.start_batch("WO-3", "Water", 0)
    run(model, clock, 5.0)  # Resetting 0.5 s, Starting 0.5 s, then 4 s of Execute
    model.stop()
    assert window.end_reason == "stopped"
    assert window.total == model.good_total + model.reject_total - before == 40
    good, reject = model.production_between(window.started_at, window.ended_at + 0.001)
    assert (good, reject) == (window.good, window.reject)


def test_start_batch_refused_while_executing(model: LineModel, clock: FakeClock) -> None:
    model.start_batch("WO-1", "Cola")
    with pytest.raises(InvalidStateError, match="StartBatch needs Idle"):
        model.start_batch("WO-2", "Cola")
    with pytest.raises(SimulatorError):
        model.start_batch("", "Cola")


def test_same_seed_same_parts_regardless_of_tick_size(config: SimulatorConfig) -> None:
    def make(tick_s: float) -> LineModel:
        clock = FakeClock()
        model = LineModel(config, clock=clock)
        model.set_reject_rate(0.1)
        model.start()
        run(model, clock, 20.0, tick_s=tick_s)
        return model

    a, b = make(0.1), make(0.5)
    assert a.good_total + a.reject_total == b.good_total + b.reject_total == 195
    assert (a.good_total, a.reject_total) == (b.good_total, b.reject_total)
    assert [c.reject for c in a.cells] == [c.reject for c in b.cells]
    other = LineModel(config.model_copy(update={"seed": 8}), clock=FakeClock())
    other.set_reject_rate(0.1)
    other.start()
    run(other, FakeClock(), 0)  # no time, no parts
    assert other.good_total == 0


def test_noise_is_deterministic_per_seed(config: SimulatorConfig) -> None:
    def temperatures(seed: int) -> list[float]:
        clock = FakeClock()
        model = LineModel(config.model_copy(update={"seed": seed}), clock=clock)
        out = []
        for _ in range(20):
            clock.advance(0.1)
            model.tick()
            out.append(model.sample("Line1/Filler/Temperature").value)
        return out

    assert temperatures(1) == temperatures(1)
    assert temperatures(1) != temperatures(2)
    assert len(set(temperatures(1))) > 10  # it is noisy


def test_force_stop_holds_then_resumes(model: LineModel, clock: FakeClock) -> None:
    model.start_batch("WO-1", "Cola")
    run(model, clock, 2.0)
    produced = model.good_total + model.reject_total
    model.force_stop(3.0)
    run(model, clock, 1.0)
    assert model.state is State.HELD
    assert model.sample("Line1/StopReason").value == STOP_REASON_TECHNICAL
    assert model.sample("Line1/Speed").value == 0.0
    assert model.good_total + model.reject_total == produced
    run(model, clock, 3.0)
    assert model.state is State.EXECUTE
    assert model.sample("Line1/StopReason").value == 0
    assert model.current_batch is not None  # a stop does not end the batch


def test_force_rejects_and_reject_rate(model: LineModel, clock: FakeClock) -> None:
    model.set_reject_rate(0.0)
    model.force_rejects(5, "Capper")
    model.start()
    run(model, clock, 1.5)  # 10 parts
    assert model.cell("Capper").reject == 5
    assert model.reject_total == 5 and model.good_total == 5
    with pytest.raises(SimulatorError):
        model.set_reject_rate(1.5)
    with pytest.raises(UnknownTagError):
        model.force_rejects(1, "Boxer")


def test_setpoint_writes_change_the_physics(model: LineModel, clock: FakeClock) -> None:
    model.write_tag("Line1/Capper/SpeedSetpoint", 120.0)  # the bottleneck: 2 parts/s
    assert model.line_rate == 2.0
    model.write_tag("Line1/Filler/FillTemperatureSetpoint", 60.0)
    model.write_tag("Line1/Recipe", "Cola-2L")
    run(model, clock, 30.0)
    assert abs(model.sample("Line1/Filler/Temperature").value - 60.0) < 2.0
    assert model.sample("Line1/Recipe").value == "Cola-2L"
    with pytest.raises(NotWritableError):
        model.write_tag("Line1/GoodCount", 3)
    with pytest.raises(SimulatorError):
        model.write_tag("Line1/Filler/SpeedSetpoint", "fast")


@pytest.mark.parametrize(
    ("kind", "status", "null_value"),
    [("bad-status", BAD_SENSOR_FAILURE, True), ("comm_error", BAD_COMMUNICATION_ERROR, True),
     ("uncertain", UNCERTAIN_LAST_USABLE_VALUE, False)],
)
def test_status_faults_last_for_their_duration(
    model: LineModel, clock: FakeClock, kind: str, status: int, null_value: bool
) -> None:
    tag = "Line1/Filler/Temperature"
    run(model, clock, 0.5)
    before = model.sample(tag)
    model.inject_fault(kind, tag, 2.0)
    run(model, clock, 0.1)
    during = model.sample(tag)
    assert during.status == status and during.source_ts == clock.now
    assert (during.value is None) if null_value else (during.value == before.value)
    run(model, clock, 1.0)
    assert model.sample(tag) == during  # no new notification while the fault lasts
    run(model, clock, 1.0)
    after = model.sample(tag)
    assert after.status == GOOD and after.value is not None and after.source_ts == clock.now


def test_custom_status_spike_freeze_and_future_timestamp(model: LineModel, clock: FakeClock) -> None:
    tag = "Line1/Capper/Temperature"
    model.inject_fault("bad_status", tag, 1.0, status=0x808B0000)  # BadDeviceFailure
    run(model, clock, 0.1)
    assert model.sample(tag).status == 0x808B0000
    model.clear_faults()

    model.inject_fault("spike", tag, 0.0)
    changed = model.tick(clock.advance(0.1))
    assert changed[tag].value == -9999.0 and changed[tag].status == GOOD
    run(model, clock, 0.1)
    assert model.sample(tag).value != -9999.0  # duration 0 = one update

    model.inject_fault("freeze", tag, 1.0)
    run(model, clock, 0.1)
    frozen = model.sample(tag)
    run(model, clock, 0.5)
    assert model.sample(tag) == frozen
    run(model, clock, 1.0)
    assert model.sample(tag) != frozen

    model.inject_fault("future_timestamp", tag, 1.0, value=600.0)
    run(model, clock, 0.1)
    assert model.sample(tag).source_ts == pytest.approx(clock.now + 600.0)
    model.clear_faults()

    model.inject_fault("past_timestamp", tag, 1.0, value=7200.0)
    run(model, clock, 0.1)
    assert model.sample(tag).source_ts == pytest.approx(clock.now - 7200.0)
    run(model, clock, 1.0)
    assert model.sample(tag).source_ts == clock.now  # the clock is right again after the fault


def test_fault_validation(model: LineModel) -> None:
    with pytest.raises(UnknownTagError):
        model.inject_fault("bad_status", "Line1/Nope", 1.0)
    with pytest.raises(SimulatorError, match="unknown fault kind"):
        model.inject_fault("melt", "Line1/Filler/Temperature", 1.0)
    with pytest.raises(SimulatorError, match="signed numeric"):
        model.inject_fault("spike", "Line1/GoodCount", 1.0)
    with pytest.raises(SimulatorError):
        model.inject_fault("freeze", "Line1/Filler/Temperature", -1.0)
