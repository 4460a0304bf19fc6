"""Cumulative PLC counters → production increments, robust to what real counters do.

Pure logic, no I/O. A :class:`CounterTracker` follows one counter (good, reject, total or a consumed
material) and turns samples into :class:`CounterDelta` s stamped with a *source* time, so the caller
can attribute each one to the batch window containing that time.

Rules, stated once:

* The tracker keeps the counter's accepted samples ordered by source time. The increment credited at
  a sample is ``step(previous sample, sample)``; the total is the sum over consecutive pairs.
* ``step`` for a normal sample: a rise counts as the difference; a fall is a rollover when the
  counter has a ``modulus`` and the wrapped difference ``(value - prev) mod modulus`` is at most
  ``max_wrap_step`` (default a quarter of the modulus), otherwise a reset (PLC restart, shift reset):
  the new value counts from 0.
* A BIRTH sample re-states the current value: equal to the previous one it adds nothing; a rise
  counts (production that happened while the host saw no data, e.g. before a rebirth; historical
  replay later moves it to the right time, see below); a fall starts a new baseline without counting,
  because a birth cannot tell a reset from a different counter.
* The very first sample is a baseline: nothing before it is known, so it counts nothing.
* BAD and STALE samples, and samples without a numeric value, are ignored (they do not move the
  baseline). UNCERTAIN values are counted: the PLC still counted them.
* A sample with the same source time as an accepted one is a duplicate (ignored, counted) if the
  value is equal, and a conflict (first one kept, counted) otherwise.
* Out-of-order samples (store-and-forward replay, late deliveries) are inserted at their source
  time; the tracker emits the difference between the old and new attribution: the late sample gets
  ``step(prev, late)`` and the following sample a correction ``step(late, next) - step(prev, next)``.
  So the credited increments depend only on the *set* of samples, never on arrival order, and a
  replay after a batch ended lands in that batch.
* A sample with a wrong clock is counted at the time it was *received*, not at its source time
  (``stats.restamped``): one the edge flagged (``FutureTimestamp``, ``OldTimestamp``), one more than ``max_ahead_ms``
  ahead of its receive time, one outside ``[0, 2^62]`` (2^63 and negative times), and a live
  (non-historical) one more than ``max_live_behind_ms`` behind it. Why: the counter's *value* is
  still the PLC's true cumulative count, so the increment is real; only its time is not. Placed at
  its source time, a far-future sample would become the newest point, every correct sample after
  it would be inserted before it, and the step into the anchor would read as a counter reset
  (counting the whole value again, or freezing counting for the skew). Without a receive time a
  sample with an impossible time is ignored (``stats.bad_clock``); the next sample's step still
  counts what it would have added, because steps are taken between cumulative values.
* A restamped live sample goes after the newest kept point (an edge clock running a little ahead
  within ``max_ahead_ms`` may have put that point after the receive time).
* After a restamp the live samples that follow are never placed before it (``_live_floor_ts``): an
  edge whose clock lags the host's would otherwise put its next samples before the restamped point.
  Such a sample is placed 1 ms after the floor (and becomes the floor) until source times pass it.
  Historical samples (store-and-forward replay) keep their source times: they are late by design.
* Samples are kept for ``horizon_ms`` of source time behind the newest one (and at most
  ``max_samples``); a sample older than that, or older than the oldest kept sample after pruning
  or a :meth:`CounterTracker.restore`, cannot be placed and is dropped, counted as ``too_late``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from enum import StrEnum

from uns.conventions import Quality

Number = int | float

#: the latest source time a sample may carry (2^62 ms is ~146 million years; SQLite stores < 2^63)
MAX_TS_MS = 2**62


class CounterRole(StrEnum):
    """What a configured counter counts (ISO 22400: GQ good, SQ scrap, PQ produced; consumption)."""

    GOOD = "good"
    REJECT = "reject"
    TOTAL = "total"
    CONSUMED = "consumed"


class DeltaReason(StrEnum):
    INCREMENT = "increment"
    RESET = "reset"
    ROLLOVER = "rollover"
    BIRTH_RISE = "birth_rise"
    CORRECTION = "correction"


@dataclass(frozen=True, slots=True)
class CounterSample:
    """One observation of a cumulative counter."""

    value: Number | None
    source_ts_ms: int
    is_birth: bool = False
    quality: Quality = Quality.GOOD
    #: when the host received it (None: unknown, then the source time cannot be checked)
    received_ms: int | None = None
    #: a store-and-forward replay (late by design, keeps its source time)
    historical: bool = False
    #: the edge flagged the source time as wrong (``FutureTimestamp``, ``OldTimestamp`` property)
    clock_flagged: bool = False


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """An increment (or a correction, possibly negative) credited at a source time."""

    source_ts_ms: int
    delta: Number
    reason: DeltaReason


@dataclass(slots=True)
class CounterStats:
    """What the tracker ignored, for metrics and diagnostics."""

    accepted: int = 0
    ignored_quality: int = 0
    duplicates: int = 0
    conflicts: int = 0
    too_late: int = 0
    out_of_order: int = 0
    resets: int = 0
    rollovers: int = 0
    #: samples with a wrong clock counted at their receive time (see module rules)
    restamped: int = 0
    #: live samples placed just after a restamped one instead of before it
    clamped: int = 0
    #: samples with an impossible time and no receive time (ignored)
    bad_clock: int = 0


@dataclass(frozen=True, slots=True)
class _Point:
    ts: int
    value: Number
    is_birth: bool


@dataclass
class CounterTracker:
    """Delta computation for one cumulative counter (see module rules)."""

    modulus: int | None = 2**32
    max_wrap_step: int | None = None
    horizon_ms: int = 7 * 24 * 3600 * 1000
    max_samples: int = 100_000
    max_ahead_ms: int = 5_000
    max_live_behind_ms: int = 10 * 60 * 1000
    stats: CounterStats = field(default_factory=CounterStats)
    _ts: list[int] = field(default_factory=list, repr=False)
    _points: list[_Point] = field(default_factory=list, repr=False)
    #: samples at or before this source time can no longer be placed (pruned or restored history)
    _floor_ts: int | None = field(default=None, repr=False)
    #: live samples at or before this time go just after it (the last restamped/clamped point)
    _live_floor_ts: int | None = field(default=None, repr=False)
    _floor_before_last: int | None = field(default=None, repr=False)
    #: where the last accepted sample was placed (:meth:`placement`)
    last_placed: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.modulus is not None and self.modulus < 2:
            raise ValueError("modulus must be at least 2")
        if self.max_wrap_step is None and self.modulus is not None:
            self.max_wrap_step = self.modulus // 4

    # -- the step function ---------------------------------------------------------------

    def _step(self, prev: _Point, cur: _Point) -> tuple[Number, DeltaReason]:
        diff = cur.value - prev.value
        if diff >= 0:
            return diff, (DeltaReason.BIRTH_RISE if cur.is_birth and diff else DeltaReason.INCREMENT)
        if cur.is_birth:
            return 0, DeltaReason.RESET
        if self.modulus is not None and self.max_wrap_step is not None:
            wrapped = diff % self.modulus
            if wrapped <= self.max_wrap_step:
                return wrapped, DeltaReason.ROLLOVER
        return cur.value, DeltaReason.RESET

    def _credit(self, index: int) -> tuple[Number, DeltaReason]:
        if index == 0:
            return 0, DeltaReason.INCREMENT
        return self._step(self._points[index - 1], self._points[index])

    # -- where a sample is counted -------------------------------------------------------

    def clock_is_wrong(self, sample: CounterSample) -> bool:
        """True when the sample's source time cannot be its real time (see module rules)."""
        ts = sample.source_ts_ms
        if not 0 <= ts <= MAX_TS_MS or sample.clock_flagged:
            return True
        received = sample.received_ms
        if received is None:
            return False
        if ts > received + self.max_ahead_ms:
            return True
        return not sample.historical and ts < received - self.max_live_behind_ms

    def placement(self, sample: CounterSample) -> int | None:
        """The time the sample is counted at: its source time, or a correction of it (module
        rules); None when its time is impossible and there is no receive time to use instead."""
        ts = sample.source_ts_ms
        if self.clock_is_wrong(sample):
            if sample.received_ms is None or not 0 <= sample.received_ms <= MAX_TS_MS:
                return None
            ts = sample.received_ms
            self.stats.restamped += 1
            if not sample.historical:
                if self._ts and ts <= self._ts[-1]:
                    ts = self._ts[-1] + 1  # never before a point already counted (clock skew)
                ts = self._after_floor(ts)
                self._live_floor_ts = ts
            return ts
        if not sample.historical and self._live_floor_ts is not None and ts <= self._live_floor_ts:
            self.stats.clamped += 1
            ts = self._live_floor_ts = self._after_floor(ts)
        return ts

    def _after_floor(self, ts: int) -> int:
        floor = self._live_floor_ts
        return ts if floor is None or ts > floor else floor + 1

    # -- feeding ---------------------------------------------------------------------------

    def observe(self, sample: CounterSample, *, prune: bool = True) -> list[CounterDelta]:
        """Take one sample; return the non-zero deltas it causes (usually zero or one).

        The deltas are stamped with the sample's :meth:`placement`. ``prune=False`` leaves pruning
        to the caller (:meth:`prune`), so a sample whose persistence failed can be :meth:`retract` ed.
        """
        value = sample.value
        if (sample.quality in (Quality.BAD, Quality.STALE) or value is None
                or isinstance(value, bool) or not isinstance(value, int | float)):
            self.stats.ignored_quality += 1
            return []
        floor_before = self._floor_before_last = self._live_floor_ts
        placed = self.placement(sample)
        if placed is None:
            self.stats.bad_clock += 1
            return []
        if self._ts and (placed < self._ts[-1] - self.horizon_ms
                         or (self._floor_ts is not None and placed < self._floor_ts)):
            self.stats.too_late += 1
            self._live_floor_ts = floor_before
            return []
        sample = replace(sample, source_ts_ms=placed)
        self.last_placed = placed
        index = bisect.bisect_left(self._ts, sample.source_ts_ms)
        if index < len(self._ts) and self._ts[index] == sample.source_ts_ms:
            if self._points[index].value == value:
                self.stats.duplicates += 1
            else:
                self.stats.conflicts += 1
            return []
        point = _Point(sample.source_ts_ms, value, sample.is_birth)
        is_late = index < len(self._ts)
        old_next = self._credit(index)[0] if is_late else 0
        self._ts.insert(index, point.ts)
        self._points.insert(index, point)
        self.stats.accepted += 1
        deltas: list[CounterDelta] = []
        amount, reason = self._credit(index)
        if reason is DeltaReason.RESET:
            self.stats.resets += 1
        elif reason is DeltaReason.ROLLOVER:
            self.stats.rollovers += 1
        if amount:
            deltas.append(CounterDelta(point.ts, amount, reason))
        if is_late:
            self.stats.out_of_order += 1
            following = self._points[index + 1]
            correction = self._credit(index + 1)[0] - old_next
            if correction:
                deltas.append(CounterDelta(following.ts, correction, DeltaReason.CORRECTION))
        if prune:
            self.prune()
        return deltas

    def retract(self, ts: int) -> bool:
        """Undo the insertion of the point at ``ts`` (its deltas could not be stored), so the
        next sample's step spans it and nothing is lost. Only valid before :meth:`prune`."""
        index = bisect.bisect_left(self._ts, ts)
        if index >= len(self._ts) or self._ts[index] != ts:
            return False
        del self._ts[index]
        del self._points[index]
        self.stats.accepted -= 1
        if self._live_floor_ts == ts:
            self._live_floor_ts = self._floor_before_last
        return True

    def prune(self) -> None:
        """Forget samples beyond the horizon (keeping one baseline before it)."""
        if not self._ts:
            return
        newest = self._ts[-1]
        cut = bisect.bisect_left(self._ts, newest - self.horizon_ms)
        cut = max(cut, len(self._ts) - self.max_samples)
        # keep one sample before the horizon as the baseline of the oldest kept pair
        cut = max(0, cut - 1)
        if cut:
            del self._ts[:cut]
            del self._points[:cut]
            self._floor_ts = self._ts[0]

    # -- persistence (state only; the caller stores it) -------------------------------------

    def snapshot(self) -> list[CounterSample]:
        """The kept samples, oldest first, to persist and :meth:`restore` after a restart."""
        return [CounterSample(p.value, p.ts, p.is_birth) for p in self._points]

    def restore(self, samples: list[CounterSample]) -> None:
        """Reload kept samples without emitting deltas (they were credited before the restart)."""
        ordered = sorted(samples, key=lambda s: s.source_ts_ms)
        kept = [s for s in ordered if s.value is not None]
        self._ts = [s.source_ts_ms for s in kept]
        self._points = [_Point(s.source_ts_ms, s.value, s.is_birth) for s in kept]  # type: ignore[arg-type]
        self._floor_ts = self._ts[0] if self._ts else None

    @property
    def last_value(self) -> Number | None:
        return self._points[-1].value if self._points else None
