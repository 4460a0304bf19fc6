"""The line physics: PackML state, parts flow, counters, noise, batch windows and faults. No I/O.

Time and randomness are injected (a clock returning epoch seconds, two ``random.Random`` streams) so
unit tests drive the line tick by tick. Two independent streams keep the fate of the n-th part
(good or rejected where) a function of the seed alone, however the ticks fall: a live server with
jittery ticks and a unit test with a fake clock reject the same parts.

How the line works:

* Parts enter the first cell at the line rate (the slowest ``SpeedSetpoint``, parts/min / 60) and
  only in Execute. Each cell passes or rejects a part (``reject_rate``, or a forced reject); a
  rejected part leaves the line. Line good = parts out of the last cell; line reject = all rejects.
* Commands take effect at the clock's "now" after the line was advanced up to it, so no part is
  lost or double counted around a command. Acting states end ``acting_state_s`` after they began.
* A batch window opens at StartBatch and closes at StopBatch, Stop, Abort, or when its quantity of
  good parts is reached (then the line goes Completing -> Complete). The simulator's own counts per
  window (:attr:`LineModel.batches`) are the oracle an end-to-end test compares the MES against.
* Published samples carry a SourceTimestamp that changes only when value or status changes.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from simulator.alarms import AlarmBook, Condition
from simulator.catalog import TRUTH_FOLDER, TagSpec, tag_catalog, truth_alarm_tag
from simulator.config import CellConfig, SimulatorConfig
from simulator.errors import InvalidStateError, NotWritableError, SimulatorError, UnknownTagError
from simulator.faults import GOOD, Fault, FaultKind, Sample, apply_fault, make_fault
from simulator.packml import STATE_COMPLETE, Command, State, is_acting, next_state

Clock = Callable[[], float]

STOP_REASON_NONE = 0
STOP_REASON_OPERATOR = 140000
STOP_REASON_TECHNICAL = 180000

_MAX_STEP_S = 60.0  # a stalled event loop must not produce hours of parts in one step


@dataclass
class BatchWindow:
    """One batch as the simulator saw it: the authoritative good/reject totals of its window."""

    order: str
    product: str
    quantity: int
    started_at: float
    ended_at: float | None = None
    good: int = 0
    reject: int = 0
    end_reason: str | None = None  # "quantity", "stop_batch", "stopped", "aborted"

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def total(self) -> int:
        return self.good + self.reject


@dataclass
class CellModel:
    """Live state of one cell; counters are unbounded (the published UInt32 wraps, these do not)."""

    config: CellConfig
    speed_setpoint: float
    temperature_setpoint: float
    temperature: float
    reject_rate: float
    measured_temperature: float = 0.0
    speed: float = 0.0
    good: int = 0
    reject: int = 0
    forced_rejects: int = 0
    #: a process disturbance (cooling failure, heater stuck on): the temperature drifts towards
    #: setpoint + disturbance_c, which is how a limit alarm is raised on demand
    disturbance_c: float = 0.0


def _utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


class LineModel:
    """One production line; see the module docstring for the rules."""

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Clock | None = None,
        parts_rng: random.Random | None = None,
        noise_rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock: Clock = clock or time.time
        self._parts_rng = parts_rng or random.Random(f"{config.seed}/parts")
        self._noise_rng = noise_rng or random.Random(f"{config.seed}/noise")
        now = self._clock()
        nominal_ppm = config.rate * 60.0
        self.cells: list[CellModel] = [
            CellModel(config=c, speed_setpoint=nominal_ppm, temperature_setpoint=c.temperature_c,
                      temperature=c.temperature_c, measured_temperature=c.temperature_c,
                      reject_rate=c.reject_rate)
            for c in config.cells
        ]
        self._cells_by_name = {cell.config.name: cell for cell in self.cells}
        self.state = State.IDLE
        self.state_since = now
        self.stop_reason = STOP_REASON_NONE
        self.recipe = config.initial_recipe
        self.good_total = 0
        self.reject_total = 0
        self.batches: list[BatchWindow] = []
        self._pending_start = False
        self._force_until: float | None = None
        self._advanced_to = now
        self._refreshed_at = now
        self._part_progress = 0.0
        self._log: deque[tuple[float, int, int]] = deque(maxlen=max(1, config.production_log_max))
        self._faults: list[Fault] = []
        self.specs: dict[str, TagSpec] = {
            spec.path: spec
            for spec in tag_catalog(config, include_truth=True, include_synthetic=False)
        }
        self._raw: dict[str, Sample] = {}
        self._published: dict[str, Sample] = {}
        #: the line's OPC UA conditions; the temperature alarms follow the model at every refresh
        self.alarms = AlarmBook(config.line, [cell.config.name for cell in self.cells], now)
        self.refresh(now)

    # ----------------------------------------------------------------- queries

    @property
    def now(self) -> float:
        return self._clock()

    @property
    def line_rate(self) -> float:
        """Parts per second the line makes while executing: the slowest cell sets the pace."""
        return min(max(0.0, cell.speed_setpoint) for cell in self.cells) / 60.0

    @property
    def current_batch(self) -> BatchWindow | None:
        if self.batches and self.batches[-1].active:
            return self.batches[-1]
        return None

    @property
    def last_batch(self) -> BatchWindow | None:
        return self.batches[-1] if self.batches else None

    def cell(self, name: str) -> CellModel:
        try:
            return self._cells_by_name[name]
        except KeyError:
            raise UnknownTagError(f"no cell {name!r} on {self.config.line}; cells: "
                                  f"{', '.join(self._cells_by_name)}") from None

    def production_between(self, start: float, end: float) -> tuple[int, int]:
        """Good and reject parts made in ``[start, end)`` (epoch s), from the bounded production log."""
        good = reject = 0
        for ts, g, r in self._log:
            if start <= ts < end:
                good += g
                reject += r
        return good, reject

    def samples(self) -> dict[str, Sample]:
        """Every tag as published right now (after faults)."""
        return dict(self._published)

    def sample(self, path: str) -> Sample:
        if path not in self._published:
            raise UnknownTagError(f"no tag {path!r}")
        return self._published[path]

    # ----------------------------------------------------------------- commands

    def command(self, command: Command) -> State:
        """Apply a PackML command now; :class:`InvalidCommandError` if the state does not take it."""
        now = self._advance(self._clock())
        target = next_state(self.state, command)
        if command in (Command.STOP, Command.ABORT):
            self._close_batch(now, "stopped" if command is Command.STOP else "aborted")
            self._pending_start = False
            self._force_until = None
            self.stop_reason = STOP_REASON_OPERATOR
        elif command is Command.HOLD:
            self.stop_reason = STOP_REASON_OPERATOR
            self._force_until = None
        elif command is Command.UNHOLD:
            self._force_until = None
        self._enter(target, now)
        return self.state

    def start(self) -> State:
        return self.command(Command.START)

    def stop(self) -> State:
        return self.command(Command.STOP)

    def reset(self) -> State:
        return self.command(Command.RESET)

    def hold(self) -> State:
        return self.command(Command.HOLD)

    def unhold(self) -> State:
        return self.command(Command.UNHOLD)

    def abort(self) -> State:
        return self.command(Command.ABORT)

    def clear(self) -> State:
        return self.command(Command.CLEAR)

    def start_batch(self, order: str, product: str, quantity: int = 0) -> BatchWindow:
        """Open a batch window and run the line; from Stopped or Complete the line resets first."""
        if not order:
            raise SimulatorError("StartBatch needs an order")
        if quantity < 0 or quantity > 0xFFFFFFFF:
            raise SimulatorError(f"quantity {quantity} is not a UInt32")
        now = self._advance(self._clock())
        if self.state is State.IDLE:
            target_command = Command.START
        elif self.state in (State.STOPPED, State.COMPLETE):
            target_command = Command.RESET
        else:
            raise InvalidStateError(f"StartBatch needs Idle, Stopped or Complete; line is {self.state.label}")
        window = BatchWindow(order=order, product=product, quantity=quantity, started_at=now)
        self.batches.append(window)
        self._pending_start = target_command is Command.RESET
        self._enter(next_state(self.state, target_command), now)
        return window

    def stop_batch(self) -> BatchWindow:
        """Close the open batch window; the line completes (or stops if it cannot complete)."""
        now = self._advance(self._clock())
        window = self.current_batch
        if window is None:
            raise InvalidStateError("no batch is running")
        self._close_batch(now, "stop_batch")
        self._pending_start = False
        self._force_until = None
        if (self.state, Command.COMPLETE) in _COMPLETABLE:
            self._enter(next_state(self.state, Command.COMPLETE), now)
        elif self.state not in (State.STOPPED, State.STOPPING, State.ABORTED, State.ABORTING,
                                State.CLEARING, State.COMPLETE, State.COMPLETING):
            self._enter(next_state(self.state, Command.STOP), now)
        return window

    def force_stop(self, duration_s: float, reason: int = STOP_REASON_TECHNICAL) -> None:
        """An unplanned stop for OEE: Execute -> Holding -> Held for ``duration_s``, then back."""
        if duration_s < 0:
            raise SimulatorError("ForceStop duration must be >= 0 s")
        now = self._advance(self._clock())
        if self.state is not State.EXECUTE:
            raise InvalidStateError(f"ForceStop needs Execute; line is {self.state.label}")
        self._enter(next_state(self.state, Command.HOLD), now)
        self.stop_reason = reason or STOP_REASON_TECHNICAL
        self._force_until = now + duration_s

    def force_rejects(self, count: int, cell: str | None = None) -> None:
        """The next ``count`` parts reaching ``cell`` (default: the last cell) are rejected there."""
        if count < 0:
            raise SimulatorError("reject count must be >= 0")
        target = self.cell(cell) if cell else self.cells[-1]
        target.forced_rejects += count

    def set_reject_rate(self, rate: float, cell: str | None = None) -> None:
        """Reject probability of one cell, or of every cell when ``cell`` is empty."""
        if not 0.0 <= rate <= 1.0 or math.isnan(rate):
            raise SimulatorError(f"reject rate must be within 0..1, got {rate}")
        for target in ([self.cell(cell)] if cell else self.cells):
            target.reject_rate = rate

    def write_tag(self, path: str, value: Any) -> None:
        """A client (or test) writes a writable tag; type is checked, range is not (the allowlist does)."""
        spec = self.specs.get(path)
        if spec is None:
            raise UnknownTagError(f"no tag {path!r}")
        if not spec.writable:
            raise NotWritableError(f"tag {path!r} is read-only")
        if spec.datatype == "Double":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise SimulatorError(f"tag {path!r} takes a number, got {value!r}")
            value = float(value)
        elif spec.datatype == "String" and not isinstance(value, str):
            raise SimulatorError(f"tag {path!r} takes a string, got {value!r}")
        self._advance(self._clock())
        if spec.cell is None:
            self.recipe = value  # Recipe is the only writable line-level tag
            return
        cell = self.cell(spec.cell)
        if spec.name == "SpeedSetpoint":
            cell.speed_setpoint = value
        else:
            cell.temperature_setpoint = value

    # ----------------------------------------------------------------- alarms

    def set_disturbance(self, cell: str, delta_c: float) -> None:
        """Push a cell's temperature towards setpoint + ``delta_c`` (0 ends the disturbance)."""
        if math.isnan(delta_c) or math.isinf(delta_c):
            raise SimulatorError(f"disturbance must be a finite number of degC, got {delta_c}")
        self._advance(self._clock())
        self.cell(cell).disturbance_c = float(delta_c)

    def set_alarm(self, cell: str, name: str, active: bool) -> Condition:
        """Raise or clear an off-normal alarm (Jam, DoorOpen, EStop) of a cell."""
        self.cell(cell)
        return self.alarms.set_discrete(cell, name, active, self._advance(self._clock()))

    def start_alarm_flood(self, rate_per_s: float, duration_s: float) -> None:
        """A benchmark's alarm flood (:meth:`simulator.alarms.AlarmBook.start_flood`)."""
        self.alarms.start_flood(rate_per_s, duration_s, self._advance(self._clock()))

    def acknowledge(self, condition: str, event_id: bytes, comment: str) -> Condition:
        return self.alarms.acknowledge(condition, event_id, comment, self._clock())

    def confirm(self, condition: str, event_id: bytes, comment: str) -> Condition:
        return self.alarms.confirm(condition, event_id, comment, self._clock())

    # ----------------------------------------------------------------- faults

    def inject_fault(
        self,
        kind: FaultKind | str,
        tag: str,
        duration_s: float,
        value: float | None = None,
        status: int | None = None,
    ) -> Fault:
        """Disturb one tag for ``duration_s`` (see :mod:`simulator.faults` for the kinds)."""
        kind = kind if isinstance(kind, FaultKind) else FaultKind.parse(kind)
        spec = self.specs.get(tag)
        if spec is None:
            raise UnknownTagError(f"no tag {tag!r} to inject a fault into")
        if kind is FaultKind.SPIKE and spec.datatype not in ("Double", "Int32"):
            raise SimulatorError(f"a spike needs a signed numeric tag; {tag} is {spec.datatype}")
        fault = make_fault(kind, tag, self._clock(), duration_s, value, status)
        self._faults.append(fault)
        return fault

    def clear_faults(self, tag: str | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if tag is not None and f.tag != tag]
        return before - len(self._faults)

    @property
    def active_faults(self) -> list[Fault]:
        return list(self._faults)

    # ----------------------------------------------------------------- time

    def tick(self, now: float | None = None) -> dict[str, Sample]:
        """Advance to ``now`` (default: the clock) and return the samples that changed."""
        return self.refresh(self._advance(self._clock() if now is None else now))

    def _advance(self, now: float) -> float:
        """Run the state machine and production up to ``now``; returns the effective now."""
        if now < self._advanced_to:
            return self._advanced_to  # a clock stepping back never un-produces parts
        if now - self._advanced_to > _MAX_STEP_S:
            self._advanced_to = now - _MAX_STEP_S
        acting_s = self.config.acting_state_s
        while True:
            if is_acting(self.state) and self.state_since + acting_s <= now:
                self._enter(STATE_COMPLETE[self.state], self.state_since + acting_s)
                continue
            if self.state is State.HELD and self._force_until is not None and self._force_until <= now:
                at = max(self._force_until, self.state_since)
                self._force_until = None
                self._enter(State.UNHOLDING, at)
                continue
            if self.state is State.EXECUTE:
                begin = max(self._advanced_to, self.state_since)
                if begin < now:
                    finished_at = self._produce(begin, now)
                    if finished_at is not None:
                        self._advanced_to = finished_at
                        self._close_batch(finished_at, "quantity")
                        self._enter(State.COMPLETING, finished_at)
                        continue
            break
        self._advanced_to = now
        return now

    def _enter(self, state: State, at: float) -> None:
        self.state = state
        self.state_since = at
        if state is State.EXECUTE:
            self.stop_reason = STOP_REASON_NONE
        elif state is State.IDLE and self._pending_start:
            self._pending_start = False
            self._enter(State.STARTING, at)

    def _close_batch(self, at: float, reason: str) -> None:
        window = self.current_batch
        if window is not None:
            window.ended_at = at
            window.end_reason = reason

    def _produce(self, begin: float, end: float) -> float | None:
        """Make the parts due in ``[begin, end)``; returns when the batch quantity was reached."""
        rate = self.line_rate
        if rate <= 0:
            return None
        before = self._part_progress
        self._part_progress += rate * (end - begin)
        # epoch floats carry ~0.2 us of rounding per step: 10 x 0.1 s at 10/s may sum to 9.99999
        # parts; a 1e-4 part tolerance (10 us at 10/s) keeps boundary parts on the right tick
        due = int(self._part_progress + 1e-4)
        window = self.current_batch
        good = reject = 0
        finished_at: float | None = None
        for index in range(due):
            passed = True
            for cell in self.cells:
                draw = self._parts_rng.random()
                if cell.forced_rejects > 0:
                    cell.forced_rejects -= 1
                    rejected = True
                else:
                    rejected = draw < cell.reject_rate
                if rejected:
                    cell.reject += 1
                    passed = False
                    break
                cell.good += 1
            if passed:
                good += 1
            else:
                reject += 1
            if window is not None and window.quantity and window.good + good >= window.quantity:
                finished_at = min(end, begin + (index + 1 - before) / rate)
                self._part_progress = 0.0
                break
        else:
            self._part_progress -= due
        if good or reject:
            self.good_total += good
            self.reject_total += reject
            if window is not None:
                window.good += good
                window.reject += reject
            self._log.append((finished_at if finished_at is not None else end, good, reject))
        return finished_at

    # ----------------------------------------------------------------- samples

    def refresh(self, now: float) -> dict[str, Sample]:
        """Recompute every tag at ``now``, apply faults, return what changed since the last call."""
        dt = max(0.0, now - self._refreshed_at)
        self._refreshed_at = now
        self._update_analog(dt)
        for cell in self.cells:
            self.alarms.evaluate_temperature(cell.config.name, cell.measured_temperature,
                                             cell.temperature_setpoint, now)
        self.alarms.flood_step(now)
        raw_values = self._raw_values()
        changed: dict[str, Sample] = {}
        live_faults: dict[str, Fault] = {}
        for fault in self._faults:
            if fault.active(now):
                live_faults[fault.tag] = fault  # later injections win
        for path, value in raw_values.items():
            previous_raw = self._raw.get(path)
            if previous_raw is not None and previous_raw.value == value:
                raw = previous_raw
            else:
                raw = Sample(value, GOOD, now)
                self._raw[path] = raw
            previous = self._published.get(path)
            fault = live_faults.get(path)
            sample = raw if fault is None else apply_fault(fault, raw, previous, now)
            if fault is not None:
                fault.applied = True
            if previous is not None and sample != previous:
                if sample.status != previous.status and sample.source_ts <= previous.source_ts:
                    sample = Sample(sample.value, sample.status, now)  # status change is a change
            if sample != previous:
                self._published[path] = sample
                changed[path] = sample
        self._faults = [f for f in self._faults if f.active(now)]
        return changed

    def _update_analog(self, dt: float) -> None:
        executing = self.state is State.EXECUTE
        line_ppm = self.line_rate * 60.0
        for cell in self.cells:
            cfg = cell.config
            alpha = 1.0 - math.exp(-dt / cfg.temperature_tau_s) if dt > 0 else 0.0
            cell.temperature += (cell.temperature_setpoint + cell.disturbance_c - cell.temperature) * alpha
            temp_noise = self._noise_rng.gauss(0.0, 1.0)
            speed_noise = self._noise_rng.gauss(0.0, 1.0)
            cell.measured_temperature = round(cell.temperature + cfg.temperature_noise_c * temp_noise, 3)
            cell.speed = round(max(0.0, line_ppm * (1.0 + cfg.speed_noise * speed_noise)), 3) \
                if executing else 0.0

    def _raw_values(self) -> dict[str, Any]:
        cfg = self.config
        line = cfg.line
        modulus = cfg.counter_modulus
        start = cfg.counter_start
        state_label = self.state.label
        state_code = int(self.state)
        batch = self.current_batch
        last = self.last_batch
        values: dict[str, Any] = {
            f"{line}/State": state_label,
            f"{line}/StateCode": state_code,
            f"{line}/StopReason": self.stop_reason,
            f"{line}/Recipe": self.recipe,
            f"{line}/CurrentBatch": batch.order if batch else "",
            f"{line}/CurrentProduct": batch.product if batch else "",
            f"{line}/BatchQuantity": batch.quantity if batch else 0,
            f"{line}/GoodCount": (start + self.good_total) % modulus,
            f"{line}/RejectCount": (start + self.reject_total) % modulus,
            f"{line}/Speed": round(self.line_rate * 60.0, 3) if self.state is State.EXECUTE else 0.0,
        }
        for cell in self.cells:
            base = f"{line}/{cell.config.name}"
            values[f"{base}/State"] = state_label
            values[f"{base}/StateCode"] = state_code
            values[f"{base}/GoodCount"] = (start + cell.good) % modulus
            values[f"{base}/RejectCount"] = (start + cell.reject) % modulus
            values[f"{base}/Speed"] = cell.speed
            values[f"{base}/SpeedSetpoint"] = float(cell.speed_setpoint)
            values[f"{base}/Temperature"] = cell.measured_temperature
            values[f"{base}/{cell.config.temperature_setpoint_tag}"] = float(cell.temperature_setpoint)
        values.update({
            f"{TRUTH_FOLDER}/BatchOrder": last.order if last else "",
            f"{TRUTH_FOLDER}/BatchActive": batch is not None,
            f"{TRUTH_FOLDER}/BatchGood": last.good if last else 0,
            f"{TRUTH_FOLDER}/BatchReject": last.reject if last else 0,
            f"{TRUTH_FOLDER}/BatchStart": _utc(last.started_at) if last else None,
            f"{TRUTH_FOLDER}/BatchEnd": _utc(last.ended_at) if last else None,
            f"{TRUTH_FOLDER}/BatchCount": len(self.batches),
            f"{TRUTH_FOLDER}/TotalGood": self.good_total,
            f"{TRUTH_FOLDER}/TotalReject": self.reject_total,
            f"{TRUTH_FOLDER}/AlarmEvents": self.alarms.total_events,
            f"{TRUTH_FOLDER}/ActiveAlarms": self.alarms.active_count,
            f"{TRUTH_FOLDER}/UnackedAlarms": self.alarms.unacked_count,
        })
        for condition in self.alarms.conditions.values():
            values[truth_alarm_tag(condition.path)] = condition.events
        return values


_COMPLETABLE = {(state, Command.COMPLETE) for state in (State.EXECUTE, State.HELD, State.SUSPENDED)}


def synthetic_value(index: int, step: int) -> float:
    """Value of synthetic tag ``index`` at update ``step``: cheap, deterministic, and always
    different from its value at ``step - 1`` (so every update is a data change)."""
    return float(((step + index * 7) % 2000) - 1000) * 0.5 + (step & 1) * 0.25


__all__ = ["BatchWindow", "CellModel", "LineModel", "synthetic_value"]
