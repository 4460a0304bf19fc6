"""Counter samples → persisted increments → quantities per time window (good, scrap, consumed).

The I/O shell around :class:`~mes_adapter.production.counters.CounterTracker`: it knows from the config which
metrics are counters, keeps one tracker per counter, and writes each accepted sample and the deltas it
caused in one SQLite transaction, so after a restart the trackers resume from the same samples and no
increment is counted twice or lost.

Deltas are stored with their source time and *not* with a batch: the batch (or shift) a delta belongs
to is decided when quantities are asked for, by summing the deltas inside the window's intervals. A
late context assertion or a late counter replay therefore needs no re-binding.

When a write fails for a reason that passes (disk full, database locked or gone:
:data:`TRANSIENT_ERRORS`), the tracker forgets the sample (:meth:`CounterTracker.retract`) and the
sample waits in a backlog, in arrival order, retried before any newer one (:meth:`retry`), so the
deltas land at their own times once the store takes them again. The backlog is bounded
(``max_backlog``); when it overflows the *oldest* waiting samples are thinned out, which loses no
count: steps are taken between cumulative values, so the next stored sample's step spans the ones
that were dropped (only their attribution in time becomes coarser). A sample that can never be
stored (a value SQLite cannot hold) is quarantined: logged, counted, and spanned the same way.

:class:`ProductionStorePort` is what the counters need; :class:`ProductionStore` keeps it in a SQLite
file (the default), :class:`~mes_adapter.production.pg_quantities.PostgresProductionStore` in the
PostgreSQL several adapter instances share (``mes.state_dsn``): each instance writes the counters of its
own lines, and any instance sums any line's deltas (a batch's counts, whoever counted them).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from mes_adapter.config.mes import CounterSignal, MesConfig
from mes_adapter.oee.compute import Interval
from mes_adapter.production.counters import CounterDelta, CounterRole, CounterSample, CounterTracker
from mes_adapter.sqlite import open_db, transaction
from mes_adapter.timefmt import now_ms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counter_delta (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    cell TEXT NOT NULL,
    metric TEXT NOT NULL,
    role TEXT NOT NULL,
    material_id TEXT,
    source_ts_ms INTEGER NOT NULL,
    delta REAL NOT NULL,
    reason TEXT NOT NULL,
    received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS counter_delta_by_time ON counter_delta (line, source_ts_ms);
CREATE TABLE IF NOT EXISTS counter_sample (
    line TEXT NOT NULL,
    cell TEXT NOT NULL,
    metric TEXT NOT NULL,
    source_ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    is_birth INTEGER NOT NULL,
    PRIMARY KEY (line, cell, metric, source_ts_ms)
);
"""

_PRUNE_EVERY = 500

log = logging.getLogger(__name__)

#: write failures that pass (disk full, database locked or gone): keep the data and retry
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError, OSError)
#: write failures of one value (too big for SQLite, wrong type): quarantine it, never retry
DATA_ERRORS: tuple[type[BaseException], ...] = (OverflowError, ValueError, TypeError,
                                                sqlite3.InterfaceError, sqlite3.DataError)

_Waiting = tuple[str, "str | None", str, CounterSample]


@dataclass(frozen=True, slots=True)
class Quantities:
    """What was produced and consumed in a window (deltas, not counter values)."""

    good: float = 0.0
    scrap: float = 0.0
    consumed: dict[str, float] = field(default_factory=dict)

    @property
    def produced(self) -> float:
        return self.good + self.scrap

    def minus(self, other: Quantities) -> Quantities:
        materials = set(self.consumed) | set(other.consumed)
        return Quantities(self.good - other.good, self.scrap - other.scrap,
                          {m: self.consumed.get(m, 0.0) - other.consumed.get(m, 0.0)
                           for m in sorted(materials)})

    def plus(self, other: Quantities) -> Quantities:
        return self.minus(Quantities(-other.good, -other.scrap,
                                     {m: -q for m, q in other.consumed.items()}))

    @property
    def is_zero(self) -> bool:
        return not self.good and not self.scrap and not any(self.consumed.values())


def quantities_from_roles(sums: dict[CounterRole, float], consumed: dict[str, float],
                          roles: set[CounterRole]) -> Quantities:
    """Good and scrap from whichever counters a line has (good+reject, total+reject, total+good)."""
    good = sums.get(CounterRole.GOOD, 0.0)
    scrap = sums.get(CounterRole.REJECT, 0.0)
    total = sums.get(CounterRole.TOTAL, 0.0)
    if CounterRole.GOOD not in roles and CounterRole.TOTAL in roles:
        good = total - scrap
    if CounterRole.REJECT not in roles and CounterRole.TOTAL in roles:
        scrap = total - good
    return Quantities(good, scrap, dict(sorted(consumed.items())))


class ProductionStorePort(Protocol):
    """Counter samples (the trackers' state) and the deltas they produced; both backends."""

    def record(self, line: str, signal: CounterSignal, sample: CounterSample,
               deltas: Sequence[CounterDelta], received_ms: int) -> None:
        """Persist an accepted sample and its deltas atomically."""
        ...

    def samples(self, line: str, signal: CounterSignal) -> list[CounterSample]: ...

    def prune_samples(self, line: str, signal: CounterSignal, before_ms: int) -> None: ...

    def sums(self, line: str, intervals: Sequence[Interval]) -> tuple[dict[CounterRole, float], dict[str, float]]:
        """Sum of deltas per role, and per consumed material, over disjoint intervals."""
        ...

    def deltas(self, line: str, from_ms: int, to_ms: int) -> list[tuple[str, int, float, str]]:
        """``(role, source_ts_ms, delta, reason)`` rows in a range, for diagnostics and tests."""
        ...

    def close(self) -> None: ...


def sample_row(line: str, signal: CounterSignal, sample: CounterSample) -> tuple[object, ...]:
    """The stored columns of a sample; a value no backend holds as SQLite does (beyond int64) is refused
    (a data error: the sample is quarantined), so both backends count the same samples."""
    if isinstance(sample.value, int) and not -2**63 <= sample.value < 2**63:
        raise OverflowError(f"counter value {sample.value} is outside the 64-bit integer range")
    return (line, signal.cell or "", signal.metric, sample.source_ts_ms, sample.value, int(sample.is_birth))


def delta_rows(line: str, signal: CounterSignal, deltas: Sequence[CounterDelta],
               received_ms: int) -> list[tuple[object, ...]]:
    return [(line, signal.cell or "", signal.metric, signal.role.value, signal.material_id, d.source_ts_ms,
             d.delta, d.reason.value, received_ms) for d in deltas]


def samples_of(rows: Sequence[tuple[int, float, int]]) -> list[CounterSample]:
    return [CounterSample(_num(v), ts, bool(b)) for ts, v, b in rows]


def add_sums(rows: Sequence[tuple[str, str, float]], roles: dict[CounterRole, float],
             consumed: dict[str, float]) -> None:
    """Add one interval's ``(role, material_id, SUM(delta))`` rows to the running sums."""
    for role, material, total in rows:
        if role == CounterRole.CONSUMED.value:
            consumed[material] = consumed.get(material, 0.0) + total
        else:
            roles[CounterRole(role)] = roles.get(CounterRole(role), 0.0) + total


#: the columns of a delta row, in :func:`delta_rows` order
DELTA_COLUMNS = "line, cell, metric, role, material_id, source_ts_ms, delta, reason, received_ms"


class ProductionStore:
    """SQLite persistence of counter samples (tracker state) and the deltas they produced."""

    def __init__(self, path: str | Path) -> None:
        self._conn = open_db(path, durable=True)
        self._conn.executescript(_SCHEMA)

    def record(self, line: str, signal: CounterSignal, sample: CounterSample,
               deltas: Sequence[CounterDelta], received_ms: int) -> None:
        """Persist an accepted sample and its deltas atomically."""
        with transaction(self._conn) as conn:
            conn.execute("INSERT OR IGNORE INTO counter_sample VALUES (?, ?, ?, ?, ?, ?)",
                         sample_row(line, signal, sample))
            conn.executemany(f"INSERT INTO counter_delta ({DELTA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             delta_rows(line, signal, deltas, received_ms))

    def samples(self, line: str, signal: CounterSignal) -> list[CounterSample]:
        rows = self._conn.execute(
            "SELECT source_ts_ms, value, is_birth FROM counter_sample"
            " WHERE line = ? AND cell = ? AND metric = ? ORDER BY source_ts_ms",
            (line, signal.cell or "", signal.metric)).fetchall()
        return samples_of(rows)

    def prune_samples(self, line: str, signal: CounterSignal, before_ms: int) -> None:
        self._conn.execute(
            "DELETE FROM counter_sample WHERE line = ? AND cell = ? AND metric = ? AND source_ts_ms < ?",
            (line, signal.cell or "", signal.metric, before_ms))

    def sums(self, line: str, intervals: Sequence[Interval]) -> tuple[
            dict[CounterRole, float], dict[str, float]]:
        roles: dict[CounterRole, float] = {}
        consumed: dict[str, float] = {}
        for iv in intervals:
            rows = self._conn.execute(
                "SELECT role, material_id, SUM(delta) FROM counter_delta"
                " WHERE line = ? AND source_ts_ms >= ? AND source_ts_ms < ?"
                " GROUP BY role, material_id", (line, iv.start_ms, iv.end_ms)).fetchall()
            add_sums(rows, roles, consumed)
        return roles, consumed

    def deltas(self, line: str, from_ms: int, to_ms: int) -> list[tuple[str, int, float, str]]:
        return self._conn.execute(
            "SELECT role, source_ts_ms, delta, reason FROM counter_delta"
            " WHERE line = ? AND source_ts_ms >= ? AND source_ts_ms < ? ORDER BY source_ts_ms, id",
            (line, from_ms, to_ms)).fetchall()

    def close(self) -> None:
        self._conn.close()


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class ProductionCounters:
    """Configured counters of every line: feed samples in, ask quantities per window out."""

    def __init__(self, config: MesConfig, store: ProductionStorePort, max_backlog: int = 100_000) -> None:
        self._store = store
        self._backlog: deque[_Waiting] = deque()
        self._max_backlog = max_backlog
        #: samples thinned out of an overflowing backlog (their counts ride on later samples)
        self.backlog_thinned = 0
        #: samples that could never be stored (logged; their counts ride on later samples)
        self.quarantined = 0
        #: samples counted at another time than their source time (a wrong clock, see counters.py)
        self.clock_corrected = 0
        self._horizon_ms = int(config.counter_reorder_horizon_s * 1000)
        self._signals: dict[tuple[str, str, str], CounterSignal] = {}
        self._roles: dict[str, set[CounterRole]] = {}
        for line in config.lines:
            self._roles[line.line] = {c.role for c in line.counters}
            for signal in line.counters:
                self._signals[(line.line, signal.cell or "", signal.metric)] = signal
        self._trackers: dict[tuple[str, str, str], CounterTracker] = {}
        self._since_prune: dict[tuple[str, str, str], int] = {}

    def signal(self, line: str, cell: str | None, metric: str) -> CounterSignal | None:
        """The counter configured for this metric, or None if it is not a counter."""
        return self._signals.get((line, cell or "", metric))

    def tracker(self, line: str, cell: str | None, metric: str) -> CounterTracker:
        key = (line, cell or "", metric)
        tracker = self._trackers.get(key)
        if tracker is None:
            signal = self._signals[key]
            tracker = CounterTracker(modulus=signal.modulus, horizon_ms=self._horizon_ms)
            tracker.restore(self._store.samples(line, signal))
            self._trackers[key] = tracker
        return tracker

    def observe(self, line: str, cell: str | None, metric: str,
                sample: CounterSample) -> list[CounterDelta]:
        """Feed one sample of a configured counter; persist it with its deltas; return the deltas.

        Samples of metrics that are not configured counters are ignored (empty list). If the store
        fails for a passing reason the sample joins the backlog and the error is raised (the
        caller reports it); it is written by a later :meth:`retry` or :meth:`observe`.
        """
        if self.signal(line, cell, metric) is None:
            return []
        if self._backlog:
            self._wait(line, cell, metric, sample)
            self.retry()
            return []
        try:
            return self._apply(line, cell, metric, sample)
        except TRANSIENT_ERRORS:
            self._wait(line, cell, metric, sample)
            raise

    def retry(self) -> int:
        """Write the waiting samples, oldest first; returns how many were written.

        Raises the store's error if it still fails (the rest keep waiting)."""
        written = 0
        while self._backlog:
            line, cell, metric, sample = self._backlog[0]
            self._apply(line, cell, metric, sample)
            self._backlog.popleft()
            written += 1
        return written

    @property
    def backlog(self) -> int:
        """Counter samples waiting for the store."""
        return len(self._backlog)

    def _wait(self, line: str, cell: str | None, metric: str, sample: CounterSample) -> None:
        self._backlog.append((line, cell, metric, sample))
        while len(self._backlog) > self._max_backlog:
            self._backlog.popleft()
            self.backlog_thinned += 1

    def _clock_corrected(self, line: str, metric: str, sample: CounterSample, placed: int) -> None:
        self.clock_corrected += 1
        if self.clock_corrected % 100 == 1:  # the first, then every 100th: an edge clock may stay wrong
            log.warning("counter %s %s: sample %r has source time %s but was received at %s; counted at %s"
                        " (%d such samples so far)", line, metric, sample.value, sample.source_ts_ms,
                        sample.received_ms, placed, self.clock_corrected)

    def _apply(self, line: str, cell: str | None, metric: str, sample: CounterSample) -> list[CounterDelta]:
        signal = self._signals[(line, cell or "", metric)]
        tracker = self.tracker(line, cell, metric)
        before = tracker.stats.accepted
        deltas = tracker.observe(sample, prune=False)
        if tracker.stats.accepted == before:
            return []  # ignored: bad quality, duplicate, conflict, too late
        placed = tracker.last_placed
        if placed != sample.source_ts_ms:
            self._clock_corrected(line, metric, sample, placed)
        try:
            self._store.record(line, signal, replace(sample, source_ts_ms=placed), deltas, now_ms())
        except TRANSIENT_ERRORS:
            tracker.retract(placed)
            raise
        except DATA_ERRORS as exc:
            tracker.retract(placed)
            self.quarantined += 1
            log.error("counter sample quarantined: %s %s value %r at %s cannot be stored (%s: %s);"
                      " the next sample's step counts it", line, metric, sample.value, placed,
                      type(exc).__name__, exc)
            return []
        tracker.prune()
        key = (line, cell or "", metric)
        count = self._since_prune.get(key, 0) + 1
        if count >= _PRUNE_EVERY:
            kept = tracker.snapshot()
            if kept:
                self._store.prune_samples(line, signal, kept[0].source_ts_ms)
            count = 0
        self._since_prune[key] = count
        return deltas

    def quantities(self, line: str, intervals: Sequence[Interval]) -> Quantities:
        """Good, scrap and consumed over disjoint intervals (a batch's segments, a shift)."""
        roles, consumed = self._store.sums(line, intervals)
        # a line of another instance (shared store): which counters it has shows in the deltas it stored
        return quantities_from_roles(roles, consumed, self._roles.get(line, set(roles)))
