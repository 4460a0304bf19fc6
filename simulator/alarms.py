"""OPC UA Alarms & Conditions (Part 9) of the simulated line, as plain state: no I/O, no asyncua.

asyncua 2.1 gives a server the event objects of every standard type, an event generator, and a
ConditionRefresh (RefreshStart, every retained condition event, RefreshEnd) once
``bind_condition_methods`` is set. It has no condition *state machine*: nothing decides when an
alarm is active, which limit it is in, whether it needs acknowledging, when Retain drops, nor does it
implement Acknowledge/Confirm. That is this module; :mod:`simulator.conditions` turns its events into
OPC UA events and binds the methods.

Conditions, per cell (condition name = browse name under ``Objects/<Line>/<Cell>``):

* ``TemperatureAlarm``: ExclusiveLimitAlarmType on the measured temperature. Limits move with the
  setpoint: High = setpoint + 5 degC, HighHigh = setpoint + 10, Low = setpoint - 5, LowLow = setpoint
  - 10 (so a setpoint change the temperature has not caught up with yet is a deviation the operator
  sees). A limit is left only ``DEADBAND_C`` inside it, so sensor noise does not chatter.
* ``Jam``, ``DoorOpen``, ``EStop``: OffNormalAlarmType, raised and cleared on demand
  (``uns sim fault alarm``).

State rules (Part 9, 5.7 and the example of B.1.3): becoming active, or moving to another active
limit, needs a new acknowledgement (AckedState False, ConfirmedState True). Acknowledge sets
AckedState True and ConfirmedState False; Confirm sets ConfirmedState True. Retain is True while the
condition is active, unacknowledged or unconfirmed; the event that drops Retain is the last one a
ConditionRefresh forgets. Every change is one event with a new EventId; Acknowledge and Confirm name
an EventId the condition emitted (any of its current occurrence), else BadEventIdUnknown.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from simulator.errors import SimulatorError, UnknownTagError

HIGH_OFFSET_C = 5.0
HIGHHIGH_OFFSET_C = 10.0
LOW_OFFSET_C = 5.0
LOWLOW_OFFSET_C = 10.0
DEADBAND_C = 0.5

TEMPERATURE_ALARM = "TemperatureAlarm"
EVENT_QUEUE_MAX = 10_000
#: an alarm flood (bench/alarm_flood.py) raises at most this many events per second and lasts at
#: most FLOOD_MAX_S: more would overrun the event queue between two ticks
FLOOD_MAX_RATE = 20_000.0
FLOOD_MAX_S = 3_600.0


class ConditionKind(StrEnum):
    LIMIT = "limit"  # ExclusiveLimitAlarmType
    OFF_NORMAL = "off_normal"  # OffNormalAlarmType


class LimitState(StrEnum):
    """Active sub-state of an exclusive limit alarm (ExclusiveLimitStateMachineType)."""

    HIGHHIGH = "HighHigh"
    HIGH = "High"
    LOW = "Low"
    LOWLOW = "LowLow"


LIMIT_SEVERITY: dict[LimitState, int] = {
    LimitState.HIGHHIGH: 800, LimitState.HIGH: 500, LimitState.LOW: 500, LimitState.LOWLOW: 800,
}


@dataclass(frozen=True)
class DiscreteSpec:
    name: str
    severity: int
    text: str  # "<cell> <text>" is the message while active


DISCRETE_ALARMS: tuple[DiscreteSpec, ...] = (
    DiscreteSpec("Jam", 600, "jammed"),
    DiscreteSpec("DoorOpen", 400, "guard door open"),
    DiscreteSpec("EStop", 900, "emergency stop pressed"),
)
#: every condition each cell has, in the order the simulator creates them
CONDITION_NAMES: tuple[str, ...] = (TEMPERATURE_ALARM, *(spec.name for spec in DISCRETE_ALARMS))
_ALIASES = {"jam": "Jam", "door": "DoorOpen", "door_open": "DoorOpen", "dooropen": "DoorOpen",
            "estop": "EStop", "e_stop": "EStop", "emergency_stop": "EStop"}


def parse_discrete(text: str) -> str:
    """``jam``, ``door-open``, ``EStop``... as the condition name; a clear error for anything else."""
    key = text.strip().lower().replace("-", "_")
    name = _ALIASES.get(key)
    if name is None:
        valid = ", ".join(_ALIASES)
        raise SimulatorError(f"unknown alarm {text!r}; use one of: {valid} "
                             "(the temperature alarm follows the temperature: use a disturbance)")
    return name


@dataclass(frozen=True)
class ConditionEvent:
    """One condition event exactly as clients receive it (the OPC UA shell adds the NodeIds)."""

    event_id: bytes
    condition: str  # condition path, e.g. "Line1/Filler/TemperatureAlarm" (the ConditionId's s=)
    condition_name: str
    kind: ConditionKind
    source: str  # source object path, e.g. "Line1/Filler"
    source_name: str
    time: float  # epoch s of the change at the source
    severity: int
    message: str
    retain: bool
    active: bool
    limit_state: LimitState | None
    acked: bool
    confirmed: bool
    comment: str
    limits: tuple[float, float, float, float] | None  # HighHigh, High, Low, LowLow


@dataclass
class Condition:
    """Live state of one condition; ``events`` counts every event it emitted (the truth)."""

    name: str
    path: str
    kind: ConditionKind
    source: str
    severity: int
    message: str
    active: bool = False
    limit_state: LimitState | None = None
    acked: bool = True
    confirmed: bool = True
    comment: str = ""
    time: float = 0.0
    events: int = 0
    limits: tuple[float, float, float, float] | None = None
    #: EventIds of the current occurrence (since it last became active); Acknowledge/Confirm accept these
    event_ids: list[bytes] = field(default_factory=list)
    last_event: ConditionEvent | None = None

    @property
    def retain(self) -> bool:
        return self.active or not self.acked or not self.confirmed


@dataclass
class AlarmFlood:
    """A benchmark's alarm flood: ``rate`` condition events per second from ``started`` to ``until``,
    made by toggling the off-normal conditions round robin (raise, clear, raise...). Each toggle is a
    real state change, so every flood event is an ordinary condition event with its own EventId."""

    rate: float
    started: float
    until: float
    done: int = 0

    def due(self, now: float) -> int:
        if now >= self.until:  # the whole flood: rate x duration, not one less for a float's rounding
            return max(0, round(self.rate * (self.until - self.started)) - self.done)
        return max(0, int(self.rate * (now - self.started) + 1e-6) - self.done)


class ConditionError(SimulatorError):
    """An Acknowledge or Confirm the condition refuses; ``status_name`` is the OPC UA StatusCode."""

    def __init__(self, message: str, status_name: str) -> None:
        super().__init__(message)
        self.status_name = status_name


def limit_state(temperature: float, setpoint: float, previous: LimitState | None) -> LimitState | None:
    """Which exclusive limit ``temperature`` is in; a limit is left only DEADBAND_C inside it."""
    keep = DEADBAND_C if previous is not None else 0.0
    if temperature >= setpoint + HIGHHIGH_OFFSET_C - (keep if previous is LimitState.HIGHHIGH else 0.0):
        return LimitState.HIGHHIGH
    if temperature >= setpoint + HIGH_OFFSET_C - (keep if previous in (LimitState.HIGH, LimitState.HIGHHIGH)
                                                 else 0.0):
        return LimitState.HIGH
    if temperature <= setpoint - LOWLOW_OFFSET_C + (keep if previous is LimitState.LOWLOW else 0.0):
        return LimitState.LOWLOW
    if temperature <= setpoint - LOW_OFFSET_C + (keep if previous in (LimitState.LOW, LimitState.LOWLOW)
                                                else 0.0):
        return LimitState.LOW
    return None


def _limits(setpoint: float) -> tuple[float, float, float, float]:
    return (setpoint + HIGHHIGH_OFFSET_C, setpoint + HIGH_OFFSET_C, setpoint - LOW_OFFSET_C,
            setpoint - LOWLOW_OFFSET_C)


_counter = itertools.count(1)


def _new_event_id() -> bytes:
    # unique across restarts of the process too (a client may keep an EventId across our restart)
    return os.urandom(8) + next(_counter).to_bytes(8, "big")


class AlarmBook:
    """Every condition of one line; the model calls :meth:`evaluate_temperature` each refresh."""

    def __init__(self, line: str, cells: list[str], now: float = 0.0) -> None:
        self.line = line
        self._started = now  # the Time of a condition's initial state (no event yet)
        self.conditions: dict[str, Condition] = {}
        self._events: deque[ConditionEvent] = deque(maxlen=EVENT_QUEUE_MAX)
        self._flood: AlarmFlood | None = None
        self._flood_next = 0  # round-robin position among the off-normal conditions
        for cell in cells:
            source = f"{line}/{cell}"
            self._add(Condition(TEMPERATURE_ALARM, f"{source}/{TEMPERATURE_ALARM}", ConditionKind.LIMIT,
                                source, severity=LIMIT_SEVERITY[LimitState.HIGH],
                                message=f"{cell} temperature normal"))
            for spec in DISCRETE_ALARMS:
                self._add(Condition(spec.name, f"{source}/{spec.name}", ConditionKind.OFF_NORMAL, source,
                                    severity=spec.severity, message=f"{cell} not {spec.text}"))

    def _add(self, condition: Condition) -> None:
        condition.time = self._started
        self.conditions[condition.path] = condition

    # ----------------------------------------------------------------- queries

    def condition(self, path: str) -> Condition:
        try:
            return self.conditions[path]
        except KeyError:
            raise UnknownTagError(f"no condition {path!r}; conditions: {', '.join(self.conditions)}") from None

    def retained(self) -> list[ConditionEvent]:
        """The last event of every retained condition: what a ConditionRefresh must return."""
        return [c.last_event for c in self.conditions.values() if c.retain and c.last_event is not None]

    def current(self) -> list[ConditionEvent]:
        """Every condition's state as an event: its last one, or (never changed) its initial state
        with an empty EventId. The OPC UA shell writes these into the condition nodes at start."""
        return [c.last_event or self._snapshot(c, b"") for c in self.conditions.values()]

    def drain(self) -> list[ConditionEvent]:
        """Events emitted since the last drain, oldest first (the OPC UA shell fires them)."""
        events = list(self._events)
        self._events.clear()
        return events

    @property
    def total_events(self) -> int:
        return sum(c.events for c in self.conditions.values())

    @property
    def active_count(self) -> int:
        return sum(1 for c in self.conditions.values() if c.active)

    @property
    def unacked_count(self) -> int:
        return sum(1 for c in self.conditions.values() if not c.acked)

    # ----------------------------------------------------------------- changes

    def evaluate_temperature(self, cell: str, temperature: float, setpoint: float, now: float) -> None:
        """The process model's measured temperature against the limits around its setpoint."""
        condition = self.condition(f"{self.line}/{cell}/{TEMPERATURE_ALARM}")
        condition.limits = _limits(setpoint)
        state = limit_state(temperature, setpoint, condition.limit_state)
        if state is condition.limit_state:
            return
        condition.limit_state = state
        if state is None:
            condition.active = False
            condition.message = f"{cell} temperature back to normal ({temperature:.1f} degC)"
        else:
            condition.active = True
            condition.severity = LIMIT_SEVERITY[state]
            condition.message = (f"{cell} temperature {state.value} ({temperature:.1f} degC, "
                                 f"setpoint {setpoint:.1f} degC)")
            self._needs_ack(condition)
        self._emit(condition, now)

    def set_discrete(self, cell: str, name: str, active: bool, now: float) -> Condition:
        """Raise or clear an off-normal alarm; no change is no event."""
        condition = self.condition(f"{self.line}/{cell}/{parse_discrete(name)}")
        if condition.active == active:
            return condition
        spec = next(s for s in DISCRETE_ALARMS if s.name == condition.name)
        condition.active = active
        condition.message = f"{cell} {spec.text}" if active else f"{cell} no longer {spec.text}"
        if active:
            self._needs_ack(condition)
        self._emit(condition, now)
        return condition

    def start_flood(self, rate_per_s: float, duration_s: float, now: float) -> None:
        """Toggle the off-normal conditions at ``rate_per_s`` events/s for ``duration_s`` (see
        :class:`AlarmFlood`); the events are due at each :meth:`flood_step` (every model refresh)."""
        if not 0 < rate_per_s <= FLOOD_MAX_RATE:
            raise SimulatorError(f"flood rate must be in (0, {FLOOD_MAX_RATE:.0f}] events/s, got {rate_per_s}")
        if not 0 < duration_s <= FLOOD_MAX_S:
            raise SimulatorError(f"flood duration must be in (0, {FLOOD_MAX_S:.0f}] s, got {duration_s}")
        self._flood = AlarmFlood(float(rate_per_s), now, now + float(duration_s))

    @property
    def flooding(self) -> bool:
        return self._flood is not None

    def flood_step(self, now: float) -> None:
        """The flood events due by ``now``, all stamped ``now`` (the tick they are raised in)."""
        flood = self._flood
        if flood is None:
            return
        targets = [c for c in self.conditions.values() if c.kind is ConditionKind.OFF_NORMAL]
        for _ in range(flood.due(now)):
            condition = targets[self._flood_next % len(targets)]
            self._flood_next += 1
            self.set_discrete(condition.source.rpartition("/")[2], condition.name, not condition.active, now)
            flood.done += 1
        if now >= flood.until:
            self._flood = None

    def acknowledge(self, path: str, event_id: bytes, comment: str, now: float) -> Condition:
        condition = self._check_event(path, event_id)
        if condition.acked:
            raise ConditionError(f"{path} is already acknowledged", "BadConditionBranchAlreadyAcked")
        condition.acked = True
        condition.confirmed = False
        condition.comment = comment
        self._emit(condition, now)
        return condition

    def confirm(self, path: str, event_id: bytes, comment: str, now: float) -> Condition:
        condition = self._check_event(path, event_id)
        if condition.confirmed:
            raise ConditionError(f"{path} is already confirmed (or was never acknowledged)",
                                 "BadConditionBranchAlreadyConfirmed")
        condition.confirmed = True
        condition.comment = comment
        self._emit(condition, now)
        return condition

    def _check_event(self, path: str, event_id: bytes) -> Condition:
        condition = self.condition(path)
        if bytes(event_id or b"") not in condition.event_ids:
            raise ConditionError(f"EventId {bytes(event_id or b'').hex()} is not an event of {path}'s "
                                 "current occurrence", "BadEventIdUnknown")
        return condition

    @staticmethod
    def _needs_ack(condition: Condition) -> None:
        condition.acked = False
        condition.confirmed = True
        condition.comment = ""
        condition.event_ids = []

    def _emit(self, condition: Condition, now: float) -> None:
        event_id = _new_event_id()
        condition.time = now
        condition.events += 1
        condition.event_ids.append(event_id)
        event = self._snapshot(condition, event_id)
        condition.last_event = event
        if not condition.retain:
            condition.event_ids = []  # the occurrence is over: nothing left to acknowledge
        self._events.append(event)

    @staticmethod
    def _snapshot(condition: Condition, event_id: bytes) -> ConditionEvent:
        return ConditionEvent(
            event_id=event_id, condition=condition.path, condition_name=condition.name,
            kind=condition.kind, source=condition.source, source_name=condition.source.rpartition("/")[2],
            time=condition.time, severity=condition.severity, message=condition.message,
            retain=condition.retain, active=condition.active, limit_state=condition.limit_state,
            acked=condition.acked, confirmed=condition.confirmed, comment=condition.comment,
            limits=condition.limits)
