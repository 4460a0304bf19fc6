"""The embedded historian: SQLite day files, rollups merged per batch, retention by age and by size."""

from __future__ import annotations

import calendar
import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from uns.sqlite_tx import is_disk_full, write_transaction

from .. import rollup
from ..errors import QueryError, UnknownTagError
from ..gaps import find_gaps
from ..model import Aggregate, Gap, Quality, Sample, TagId
from ..partitions import DAY_MS, HOUR_MS, MINUTE_MS, check_interval, check_range, day_of, days_between
from ..port import DEFAULT_MAX_POINTS
from ..values import from_sqlite, to_sqlite
from .schema import (
    CHECKPOINT_PAGES_CATCHING_UP,
    CHECKPOINT_PAGES_STEADY,
    LARGE_BATCH,
    open_catalog,
    open_partition,
)

_QUALITIES = tuple(Quality)
_PREFIX, _SUFFIX = "day-", ".sqlite"


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep values younger than ``max_age_ms`` and the store under ``max_bytes`` (None: no limit).

    Retention drops whole day files only: by age, a day goes when its last millisecond is older than the
    window, so nothing inside the window is ever deleted; by size, the oldest days go first, never the
    newest one (a store of one day over the limit is reported, not emptied).
    """

    max_age_ms: int | None = None
    max_bytes: int | None = None


def _sample(tag: TagId, ts: int, rx: int, v: object, f: int, sc: int) -> Sample:
    datatype = f >> 3
    return Sample(tag, ts, ts + rx, from_sqlite(v, datatype), datatype, _QUALITIES[f & 3], sc, bool(f & 4))  # type: ignore[arg-type]


def _real(x: float | None) -> float | str | None:
    """SQLite stores a NaN as NULL: non-finite sums and extremes go in as text (an inf value makes them)."""
    return x if x is None or math.isfinite(x) else repr(x)


def _unreal(x: float | str | None) -> float | None:
    return float(x) if type(x) is str else x  # type: ignore[return-value]


def _val(value: object) -> float | str:
    """A rollup's first/last value: a finite float as itself (the common case, no JSON), else JSON text."""
    return value if type(value) is float and math.isfinite(value) else json.dumps(value)  # type: ignore[return-value]


def _unval(stored: float | str) -> object:
    return stored if type(stored) is float else json.loads(stored)  # type: ignore[arg-type]


def _acc_row(acc: rollup.Acc) -> tuple:
    return (acc.first_any_ms, acc.last_any_ms, _real(acc.last_num), acc.samples, acc.count, _real(acc.min),
            _real(acc.max), _val(acc.first), acc.first_ms, _val(acc.last), acc.last_ms,
            _real(acc.integral), acc.weight)


def _acc(row: Sequence) -> rollup.Acc:
    if _TEXT not in set(map(type, row)):  # every number finite and first/last floats: the common case
        return rollup.Acc(*row)
    fa, la, ln, s, c, mn, mx, fv, fms, lv, lms, ig, w = row
    return rollup.Acc(fa, la, _unreal(ln), s, c, _unreal(mn), _unreal(mx), _unval(fv), fms, _unval(lv), lms,
                      _unreal(ig), w)  # type: ignore[arg-type]


_TEXT = str
_ACC_COLS = "fa, la, ln, s, c, mn, mx, fv, fms, lv, lms, ig, w"


class SqliteHistorian:
    """The default backend. Appends and queries take turns (one lock): a query never sees half a batch."""

    def __init__(self, directory: str | os.PathLike[str], retention: RetentionPolicy | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.retention = retention or RetentionPolicy()
        self._catalog = open_catalog(str(self.directory / "historian.sqlite"))
        self._tags: dict[TagId, int] = {
            TagId(g, e, d, m, p): i for i, g, e, d, m, p in
            self._catalog.execute("SELECT id, grp, edge, device, metric, path FROM tags")}
        self._parts: dict[int, sqlite3.Connection] = {}
        self._counter: dict[int, int] = {}
        #: the days of a failed multi-day batch that did commit, by (id, length) of that batch, so the
        #: writer's retry of the same batch writes only the rest (``append``)
        self._retry_of: int | None = None
        self._committed_days: dict[tuple[int, int], set[int]] = {}
        #: each open day file's current ``wal_autocheckpoint`` (set per batch size, see schema)
        self._checkpoint_pages: dict[int, int] = {}
        # the last minute/hour accumulator written per tag: the next in-order batch merges into it unread
        self._last_minute: dict[int, tuple[int, rollup.Acc]] = {}
        self._last_hour: dict[int, tuple[int, rollup.Acc]] = {}
        # one lock for writes and reads: they share connections, and a read must not see a batch half-written
        self._lock = threading.RLock()

    # -- partitions -------------------------------------------------------------------------------

    def _path(self, day: int) -> Path:
        return self.directory / f"{_PREFIX}{time.strftime('%Y%m%d', time.gmtime(day // 1000))}{_SUFFIX}"

    def partitions(self) -> list[tuple[int, Path]]:
        """Every day file, oldest first, with its day's first millisecond."""
        out = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            stamp = path.name[len(_PREFIX):-len(_SUFFIX)]
            out.append((calendar.timegm(time.strptime(stamp, "%Y%m%d")) * 1000, path))
        return sorted(out)

    def _part(self, day: int, *, create: bool) -> sqlite3.Connection | None:
        conn = self._parts.get(day)
        if conn is None:
            path = self._path(day)
            if not create and not path.exists():
                return None
            conn = open_partition(str(path))
            self._parts[day] = conn
        return conn

    def _next_n(self, day: int, conn: sqlite3.Connection) -> int:
        """The day's insertion counter, read on the first append only: ``n`` is not indexed, so reading
        its maximum scans the whole day (seconds for a day of 86 M values), which a query must not pay."""
        if day not in self._counter:
            self._counter[day] = conn.execute("SELECT coalesce(max(n), 0) FROM v").fetchone()[0]
        return self._counter[day]

    # -- tags -------------------------------------------------------------------------------------

    def _intern(self, batch: Sequence[Sample]) -> None:
        new = {s.tag for s in batch if s.tag not in self._tags}
        if not new:
            return
        cur = self._catalog
        try:
            with write_transaction(cur):
                for tag in sorted(new, key=lambda t: (t.group, t.edge, t.device, t.metric, t.path)):
                    cur.execute("INSERT OR IGNORE INTO tags (grp, edge, device, metric, path) VALUES (?,?,?,?,?)",
                                (tag.group, tag.edge, tag.device, tag.metric, tag.path))
                    self._tags[tag] = cur.execute(
                        "SELECT id FROM tags WHERE grp=? AND edge=? AND device=? AND metric=? AND path=?",
                        (tag.group, tag.edge, tag.device, tag.metric, tag.path)).fetchone()[0]
        except BaseException:
            for tag in new:
                self._tags.pop(tag, None)
            raise

    def _tag_id(self, tag: TagId) -> int:
        try:
            return self._tags[tag]
        except KeyError:
            raise UnknownTagError(f"no value was ever stored for {tag}") from None

    def tags(self) -> list[TagId]:
        return sorted(self._tags, key=lambda t: self._tags[t])

    # -- ingest -----------------------------------------------------------------------------------

    def append(self, batch: Sequence[Sample]) -> None:
        if not batch:
            return
        with self._lock:
            # a batch across days is one transaction per day file: if a later day fails, the writer
            # retries the same batch, and the days already committed must not be written again
            key = (id(batch), len(batch))
            done = self._committed_days.pop(key, set()) if key[0] == self._retry_of else set()
            try:
                self._intern(batch)
                by_day: dict[int, list[Sample]] = {}
                for s in batch:
                    by_day.setdefault(s.source_ms - s.source_ms % DAY_MS, []).append(s)
                for day, samples in sorted(by_day.items()):
                    if day not in done:
                        self._append_day(day, samples)
                        done.add(day)
            except sqlite3.Error as exc:
                if done:  # remembered for the retry of this very batch (the writer keeps it alive)
                    self._retry_of, self._committed_days = key[0], {key: done}
                if is_disk_full(exc):
                    self._give_back_space()
                raise
            self._retry_of, self._committed_days = None, {}

    def _give_back_space(self) -> None:
        """After a full disk: checkpoint every write-ahead log and truncate it to nothing.

        The write-ahead log holds a copy of every page each batch rewrote since the last checkpoint
        (up to 4 MiB at a steady rate, 64 MiB while catching up: see ``schema``), many of them
        copies of the same pages. Merged into the database files they take the space of one, so
        when the disk fills this gives room back to the writer's retry (and to the MES adapter's
        other files on the same disk). Best effort: a checkpoint that needs room it cannot get
        fails quietly, and the retry waits for space like any other write.
        """
        for conn in (self._catalog, *self._parts.values()):
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _append_day(self, day: int, samples: list[Sample]) -> None:
        conn = self._part(day, create=True)
        assert conn is not None
        tags = self._tags
        n0 = self._next_n(day, conn)
        # f packs quality (bits 0-1), is_historical (bit 2) and the datatype (bits 3+)
        rows = [(tags[s.tag], s.source_ms, n0 + i, s.receipt_ms - s.source_ms, to_sqlite(s.value),
                 s.quality | (4 if s.is_historical else 0) | (s.datatype << 3), s.status_code)
                for i, s in enumerate(samples, 1)]
        # rollup input: per tag, the batch's points in time order (stable: receipt order for equal times)
        per_tag: dict[int, list[tuple[int, object, Quality]]] = {}
        for row, s in zip(rows, samples, strict=True):
            per_tag.setdefault(row[0], []).append((s.source_ms, s.value, s.quality))
        pages = CHECKPOINT_PAGES_CATCHING_UP if len(rows) >= LARGE_BATCH else CHECKPOINT_PAGES_STEADY
        if self._checkpoint_pages.get(day, CHECKPOINT_PAGES_STEADY) != pages:
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
            self._checkpoint_pages[day] = pages
        try:
            with write_transaction(conn):
                conn.executemany("INSERT INTO v (tag_id, ts, n, rx, v, f, sc) VALUES (?,?,?,?,?,?,?)", rows)
                minute_rows, hour_rows = [], []
                for tag_id, points in per_tag.items():
                    points.sort(key=lambda p: p[0])
                    minutes = rollup.minute_parts(points)
                    minute_rows += self._roll(conn, "minutes", self._last_minute, tag_id, minutes, MINUTE_MS)
                    hour_rows += self._roll(conn, "hours", self._last_hour, tag_id, rollup.hour_parts(minutes),
                                            HOUR_MS)
                conn.executemany(f"INSERT OR REPLACE INTO minutes (tag_id, t, {_ACC_COLS}) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", minute_rows)
                conn.executemany(f"INSERT OR REPLACE INTO hours (tag_id, t, {_ACC_COLS}) "
                                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", hour_rows)
        except BaseException:
            self._last_minute.clear()
            self._last_hour.clear()
            raise
        self._counter[day] = n0 + len(rows)

    def _roll(self, conn: sqlite3.Connection, table: str, cache: dict[int, tuple[int, rollup.Acc]], tag_id: int,
              parts: list[tuple[int, rollup.Acc]], width: int) -> list[tuple]:
        """Merge this batch's part of each bucket into the tag's stored accumulator of that bucket
        (``rollup.merge_in_order``), read from the cache when it is the bucket written last."""
        out = []
        for bucket, part in parts:
            cached = cache.get(tag_id)
            if cached is not None and cached[0] == bucket:
                stored: rollup.Acc | None = cached[1]
            else:
                row = conn.execute(f"SELECT {_ACC_COLS} FROM {table} WHERE tag_id=? AND t=?",
                                   (tag_id, bucket)).fetchone()
                stored = _acc(row) if row else None
            acc = rollup.merge_in_order(stored, part)
            if acc is None:
                acc = rollup.from_sorted(list(self._points(conn, tag_id, bucket, bucket + width)))
            assert acc is not None
            cache[tag_id] = (bucket, acc)
            out.append((tag_id, bucket, *_acc_row(acc)))
        return out

    @staticmethod
    def _points(conn: sqlite3.Connection, tag_id: int, start: int, end: int) -> Iterator[tuple[int, object, Quality]]:
        for ts, v, f in conn.execute("SELECT ts, v, f FROM v WHERE tag_id=? AND ts>=? AND ts<? ORDER BY ts, n",
                                     (tag_id, start, end)):
            yield ts, from_sqlite(v, f >> 3), _QUALITIES[f & 3]

    # -- queries ----------------------------------------------------------------------------------

    def raw(self, tag: TagId, start_ms: int, end_ms: int, *, max_points: int = DEFAULT_MAX_POINTS) -> list[Sample]:
        with self._lock:
            check_range(start_ms, end_ms)
            tag_id = self._tag_id(tag)
            out: list[Sample] = []
            for day in days_between(start_ms, end_ms):
                conn = self._part(day, create=False)
                if conn is None:
                    continue
                for row in conn.execute("SELECT ts, rx, v, f, sc FROM v WHERE tag_id=? AND ts>=? AND ts<? "
                                        "ORDER BY ts, n", (tag_id, start_ms, end_ms)):
                    if len(out) >= max_points:
                        raise QueryError(f"more than {max_points} values of {tag} in [{start_ms}, {end_ms}): "
                                         "narrow the range or ask for aggregates")
                    out.append(_sample(tag, *row))
            return out

    def as_of(self, tag: TagId, at_ms: int) -> Sample | None:
        with self._lock:
            tag_id = self._tag_id(tag)
            for day, _path in reversed(self.partitions()):
                if day > at_ms:
                    continue
                conn = self._part(day, create=False)
                assert conn is not None
                row = conn.execute("SELECT ts, rx, v, f, sc FROM v WHERE tag_id=? AND ts<=? ORDER BY ts DESC, n DESC "
                                   "LIMIT 1", (tag_id, at_ms)).fetchone()
                if row:
                    return _sample(tag, *row)
            return None

    def aggregates(self, tag: TagId, start_ms: int, end_ms: int, interval_ms: int) -> list[Aggregate]:
        with self._lock:
            check_interval(start_ms, end_ms, interval_ms)
            tag_id = self._tag_id(tag)
            table = "hours" if interval_ms % HOUR_MS == 0 else "minutes" if interval_ms % MINUTE_MS == 0 else None
            if table is None:  # sub-minute intervals: straight from the raw values
                points = [(s.source_ms, s.value, s.quality) for s in self.raw(tag, start_ms, end_ms)]
                return rollup.aggregate_points(points, start_ms, end_ms, interval_ms)
            stored: list[tuple[int, rollup.Acc]] = []
            for day in days_between(start_ms, end_ms):
                conn = self._part(day, create=False)
                if conn is not None:
                    stored += [(row[0], _acc(row[1:])) for row in conn.execute(
                        f"SELECT t, {_ACC_COLS} FROM {table} WHERE tag_id=? AND t>=? AND t<? ORDER BY t",
                        (tag_id, start_ms, end_ms))]
            return rollup.in_intervals(stored, start_ms, interval_ms)

    def aggregates_many(self, tags: Sequence[TagId], start_ms: int, end_ms: int,
                        interval_ms: int) -> dict[TagId, list[Aggregate]]:
        """One indexed read per tag and day file (each a few pages: no round trips to save)."""
        with self._lock:
            return {tag: self.aggregates(tag, start_ms, end_ms, interval_ms) for tag in tags}

    def gaps(self, tag: TagId, start_ms: int, end_ms: int) -> list[Gap]:
        with self._lock:
            check_range(start_ms, end_ms)
            tag_id = self._tag_id(tag)
            before = self.as_of(tag, start_ms - 1)
            points: list[tuple[int, Quality]] = [(before.source_ms, before.quality)] if before else []
            for day in days_between(start_ms, end_ms):
                conn = self._part(day, create=False)
                if conn is not None:
                    points += [(ts, _QUALITIES[f & 3]) for ts, f in conn.execute(
                        "SELECT ts, f FROM v WHERE tag_id=? AND ts>=? AND ts<? ORDER BY ts, n",
                        (tag_id, start_ms, end_ms))]
            return find_gaps(points)

    def count(self) -> int:
        with self._lock:
            total = 0
            for day, _path in self.partitions():
                conn = self._part(day, create=False)
                assert conn is not None
                total += conn.execute("SELECT count(*) FROM v").fetchone()[0]
            return total

        # -- retention --------------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes on disk of every day file (with its write-ahead log) and the catalog."""
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def enforce_retention(self, now_ms: int) -> list[str]:
        dropped: list[str] = []
        with self._lock:
            parts = self.partitions()
            if self.retention.max_age_ms is not None:
                cutoff = now_ms - self.retention.max_age_ms
                while parts and parts[0][0] + DAY_MS <= cutoff:
                    dropped.append(self._drop(*parts.pop(0)))
            if self.retention.max_bytes is not None:
                while len(parts) > 1 and self.size_bytes() > self.retention.max_bytes:
                    dropped.append(self._drop(*parts.pop(0)))
        return dropped

    def _drop(self, day: int, path: Path) -> str:
        conn = self._parts.pop(day, None)
        if conn is not None:
            conn.close()
        self._counter.pop(day, None)
        self._checkpoint_pages.pop(day, None)
        for name in (path.name, path.name + "-wal", path.name + "-shm"):
            (path.parent / name).unlink(missing_ok=True)
        for cache in (self._last_minute, self._last_hour):
            for tag_id in [t for t, (bucket, _acc) in cache.items() if day_of(bucket) == day]:
                del cache[tag_id]
        return path.name

    def close(self) -> None:
        with self._lock:
            for conn in self._parts.values():
                conn.close()
            self._parts.clear()
            self._catalog.close()

    def __enter__(self) -> SqliteHistorian:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
