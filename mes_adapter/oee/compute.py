"""ISO 22400-2 OEE from a machine-state timeline, planned downtime and counts. Pure, no I/O.

Our reading of ISO 22400-2, written down once:

* The window (a batch, a shift, or their intersection) is the planned operation time POT.
  Planned downtime (calendar breaks, planned maintenance, and machine states mapped to
  ``PLANNED_DOWNTIME``) is removed: **PBT = POT − planned downtime**.
* Unplanned stops are the contiguous stretches of the timeline that are neither ``RUNNING`` nor
  planned (``STOPPED``, ``UNKNOWN`` and time with no state known). Only their part inside PBT counts
  (a stop overlapping a break loses only the part outside the break).
* Stops separated by a run shorter than the debounce are one stop (a flapping state tag);
  a stop whose lost time is at most ``micro_stop_threshold_ms`` is a micro-stop: it
  stays inside APT and shows up as a performance (speed) loss, the oee.com convention. With
  ``micro_stop_threshold_ms=None`` (ISO strict) every stop is outside APT (ADET). The split moves
  loss between availability and performance but never changes OEE (= Σ PRI·GQ / PBT).
* **APT = PBT − unplanned stops (not micro-stops)**; Availability = APT / PBT; Effectiveness
  (performance) = Σ PRI_i·PQ_i / APT; Quality = Σ GQ / Σ PQ; OEE = A·E·Q.
* Effectiveness above 1 means PRI (ideal cycle) is slower than the machine: flagged in ``warnings``,
  never capped. Zero denominators give ``None`` ratios, not exceptions.
* Rework is not good (ISO quality ratio uses GQ/PQ).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class MachineState(StrEnum):
    """OEE category of a machine state (map raw PackML names onto these by configuration)."""

    RUNNING = "running"
    STOPPED = "stopped"
    PLANNED_DOWNTIME = "planned_downtime"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """``[start_ms, end_ms)`` in UTC milliseconds."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise ValueError(f"interval ends before it starts: {self.start_ms}..{self.end_ms}")

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms

    def clip(self, other: Interval) -> Interval | None:
        start, end = max(self.start_ms, other.start_ms), min(self.end_ms, other.end_ms)
        return Interval(start, end) if start < end else None


@dataclass(frozen=True, slots=True)
class StateChange:
    """The machine entered ``state`` at source time ``ts_ms``."""

    ts_ms: int
    state: MachineState


@dataclass(frozen=True, slots=True)
class ProductionCount:
    """Counts of one product in the window with its planned run time per item (PRI, seconds)."""

    good: float
    scrap: float
    ideal_cycle_s: float | None
    rework: float = 0.0
    product_id: str | None = None

    @property
    def produced(self) -> float:
        return self.good + self.scrap + self.rework


@dataclass(frozen=True, slots=True)
class OeeResult:
    """Time elements (ms), quantities and ratios of one window."""

    window: Interval
    planned_downtime_ms: int
    pbt_ms: int
    apt_ms: int
    unplanned_stop_ms: int
    micro_stop_ms: int
    stop_count: int
    micro_stop_count: int
    produced: float
    good: float
    scrap: float
    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None
    warnings: tuple[str, ...] = field(default=())
    #: why the inputs of this window are incomplete (a quality episode or dead source on a state or
    #: counter tag); empty when complete. Filled by the service, which knows the episodes.
    incomplete_reasons: tuple[str, ...] = field(default=())

    @property
    def data_complete(self) -> bool:
        return not self.incomplete_reasons

    @property
    def pot_ms(self) -> int:
        return self.window.duration_ms

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view for the API and the UNS ``_mes/oee`` topics."""
        return {
            "start_ms": self.window.start_ms, "end_ms": self.window.end_ms,
            "pot_s": self.pot_ms / 1000, "planned_downtime_s": self.planned_downtime_ms / 1000,
            "pbt_s": self.pbt_ms / 1000, "apt_s": self.apt_ms / 1000,
            "unplanned_stop_s": self.unplanned_stop_ms / 1000,
            "micro_stop_s": self.micro_stop_ms / 1000, "stop_count": self.stop_count,
            "micro_stop_count": self.micro_stop_count,
            "produced": self.produced, "good": self.good, "scrap": self.scrap,
            "availability": self.availability, "performance": self.performance,
            "quality": self.quality, "oee": self.oee, "warnings": list(self.warnings),
            "data_complete": self.data_complete, "incomplete_reasons": list(self.incomplete_reasons),
        }


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Union of intervals as a sorted list of disjoint ones."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if iv.duration_ms == 0:
            continue
        if out and iv.start_ms <= out[-1].end_ms:
            if iv.end_ms > out[-1].end_ms:
                out[-1] = Interval(out[-1].start_ms, iv.end_ms)
        else:
            out.append(iv)
    return out


def overlap_ms(interval: Interval, disjoint: Sequence[Interval]) -> int:
    """Length of ``interval`` covered by sorted disjoint intervals."""
    total = 0
    for iv in disjoint:
        if iv.start_ms >= interval.end_ms:
            break
        part = interval.clip(iv)
        if part is not None:
            total += part.duration_ms
    return total


def state_intervals(window: Interval, changes: Sequence[StateChange]) -> list[tuple[Interval, MachineState]]:
    """The window cut into ``(interval, state)`` pieces.

    ``changes`` may start before the window (the last change before it gives the initial state);
    time before any known change is ``UNKNOWN``. Equal timestamps: the later one in the list wins.
    """
    ordered = sorted(enumerate(changes), key=lambda item: (item[1].ts_ms, item[0]))
    state = MachineState.UNKNOWN
    cursor = window.start_ms
    out: list[tuple[Interval, MachineState]] = []
    for _, change in ordered:
        if change.ts_ms <= window.start_ms:
            state = change.state
            continue
        if change.ts_ms >= window.end_ms:
            break
        if change.ts_ms > cursor:
            out.append((Interval(cursor, change.ts_ms), state))
            cursor = change.ts_ms
        state = change.state
    if cursor < window.end_ms:
        out.append((Interval(cursor, window.end_ms), state))
    return out


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def oee_ratios(pbt_ms: int, apt_ms: int, counts: Sequence[ProductionCount]) -> tuple[
        float | None, float | None, float | None, float | None, tuple[str, ...]]:
    """Availability, effectiveness, quality, OEE and warnings from time elements and counts.

    The formula core, separate from the timeline so it can be checked against plain worksheet
    numbers (the public Vorne/oee.com worksheet, oracle A of tests/mes/test_oee.py).
    """
    warnings: list[str] = []
    produced = sum(c.produced for c in counts)
    good = sum(c.good for c in counts)
    missing = [c.product_id or "?" for c in counts if c.ideal_cycle_s is None and c.produced]
    if missing:
        warnings.append(f"no ideal cycle time (PRI) for products {sorted(set(missing))}: "
                        "performance and OEE unknown")
    availability = _ratio(apt_ms, pbt_ms)
    performance = oee = None
    if not missing:
        ideal_s = sum((c.ideal_cycle_s or 0.0) * c.produced for c in counts)
        performance = _ratio(ideal_s * 1000, apt_ms)
        if performance is not None and performance > 1:
            warnings.append(f"effectiveness {performance:.6f} is above 1: the ideal cycle time (PRI) "
                            "is slower than the machine ran; check master data")
    quality = _ratio(good, produced)
    if availability is not None and performance is not None and quality is not None:
        oee = availability * performance * quality
    elif not missing and pbt_ms > 0 and produced == 0:
        oee = 0.0
    return availability, performance, quality, oee, tuple(warnings)


def compute_oee(
    window: Interval,
    changes: Sequence[StateChange],
    counts: Sequence[ProductionCount],
    planned_downtime: Sequence[Interval] = (),
    micro_stop_threshold_ms: int | None = 120_000,
    debounce_ms: int = 0,
) -> OeeResult:
    """OEE of one window from the state timeline, planned downtime and per-product counts.

    ``debounce_ms``: stops separated by a run shorter than this are one stop (see :mod:`.stops`).
    ``changes`` may begin before the window: stops are cut from the whole timeline (their length
    decides micro or not), only their time inside the window counts.
    """
    # the timeline from the earliest change given, not from the window's start: a stop that began
    # before the window keeps its true length (a long stop whose last half second falls in the window
    # is no micro-stop), as the downtime service reads it, so these times equal the loss buckets' sums
    start = min([window.start_ms, *(c.ts_ms for c in changes)])
    pieces = state_intervals(Interval(start, window.end_ms), changes)
    planned = merge(
        [iv for iv in (p.clip(window) for p in planned_downtime) if iv is not None]
        + [part for iv, state in pieces if state is MachineState.PLANNED_DOWNTIME
           and (part := iv.clip(window)) is not None])
    planned_ms = sum(iv.duration_ms for iv in planned)
    pbt_ms = window.duration_ms - planned_ms
    stop_ms = micro_ms = stop_count = micro_count = 0
    from mes_adapter.oee.stops import detect_stops, lost_in  # stops builds on this module's types
    for stop in detect_stops(pieces, debounce_ms=debounce_ms, micro_stop_ms=micro_stop_threshold_ms):
        inside = lost_in(stop, window, planned)
        if inside <= 0:
            continue
        if stop.micro:
            micro_ms += inside
            micro_count += 1
        else:
            stop_ms += inside
            stop_count += 1
    apt_ms = pbt_ms - stop_ms
    availability, performance, quality, oee, warnings = oee_ratios(pbt_ms, apt_ms, counts)
    return OeeResult(
        window=window, planned_downtime_ms=planned_ms, pbt_ms=pbt_ms, apt_ms=apt_ms,
        unplanned_stop_ms=stop_ms, micro_stop_ms=micro_ms, stop_count=stop_count,
        micro_stop_count=micro_count, produced=sum(c.produced for c in counts),
        good=sum(c.good for c in counts), scrap=sum(c.scrap for c in counts),
        availability=availability, performance=performance, quality=quality, oee=oee,
        warnings=warnings)
