"""Store-and-forward buffer and bdSeq, in one SQLite file of the edge node's data directory.

Why SQLite: a kill -9 (or a power cut) must not lose a value the edge node accepted while the
broker or the primary host was away, and the backlog may be millions of values, far more than
memory should hold. One file holds both the buffer and the bdSeq so a restore of the data dir
restores a consistent pair.

Durability: WAL journal, and ``synchronous=FULL`` by default: every commit (one per publish
interval, not one per value) is fsynced, so a committed value survives a power cut as well as a
process kill. ``NORMAL`` (configurable) skips the fsync of each commit and only survives a process
kill; with one commit per 100 ms the fsync costs little, so FULL is the default.

Rows are keyed by an autoincrement id (arrival order) and replayed in source-time order
``(ts, id)``. Deletes of confirmed rows use id ranges where the ids are contiguous (the common
case), so replaying a million rows is a few hundred statements, not a million.

Bounded: at most ``max_values`` rows. When full, ``drop_oldest`` deletes the oldest *arrivals*
(lowest ids; cheap, and for one clock the same as the oldest source times) and ``reject_new``
refuses the new values; both are counted (:attr:`SparkplugStore.dropped`, :attr:`rejected`) and
logged.

Values: scalars are stored natively (bool as 0/1, restored from the datatype column); anything
else (arrays, DataSet, Template, UInt64 above 2**63, properties) as a one-metric Sparkplug
payload encoded by :mod:`uns.sparkplug.codec`, so the store needs no format of its own.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path

from edge_node.errors import EdgeError
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import SparkplugError
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType
from uns.sqlite_tx import write_transaction

from .model import MetricUpdate

__all__ = ["SparkplugStore", "StoreError"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buffer (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     INTEGER NOT NULL,
    device TEXT    NOT NULL,   -- '' for node-level metrics ('' is never a valid device id)
    name   TEXT    NOT NULL,
    dt     INTEGER NOT NULL,   -- Sparkplug DataType code
    kind   INTEGER NOT NULL,   -- 0 null, 1 native scalar in value, 2 encoded metric in value
    value
);
CREATE INDEX IF NOT EXISTS buffer_ts ON buffer (ts, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_NULL, _NATIVE, _ENCODED = 0, 1, 2
_INT64_MAX = 2**63 - 1
_NODE = ""

DatatypeOf = Callable[[str | None, str], DataType]


class StoreError(EdgeError, RuntimeError):
    """The store file cannot be opened or written (disk full, permissions, corrupt file)."""


class SparkplugStore:
    """The SQLite buffer. Not thread-safe: one owner (the edge client's event loop)."""

    def __init__(self, path: Path, *, max_values: int = 5_000_000, full_policy: str = "drop_oldest",
                 synchronous: str = "FULL", clock: Callable[[], float] = time.time) -> None:
        if full_policy not in ("drop_oldest", "reject_new"):
            raise ValueError(f"full_policy must be drop_oldest or reject_new, not {full_policy!r}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.max_values = max_values
        self.full_policy = full_policy
        self._clock = clock
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            self.depth: int = self._db.execute("SELECT COUNT(*) FROM buffer").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store-and-forward file {self.path}: {exc}") from exc
        #: values deleted to make room (drop_oldest)
        self.dropped = 0
        #: values refused because the store was full (reject_new)
        self.rejected = 0
        #: values ever written
        self.written = 0
        self._last_full_log = 0.0

    # -- bdSeq ------------------------------------------------------------------------------

    def load_bd_seq(self) -> int | None:
        """The bdSeq of the last CONNECT this data dir made, or None for a fresh node."""
        row = self._db.execute("SELECT value FROM meta WHERE key='bd_seq'").fetchone()
        return None if row is None else int(row[0])

    def save_bd_seq(self, bd_seq: int) -> None:
        """Durable before the CONNECT that carries it is sent (one fsync'd commit)."""
        self._write("INSERT INTO meta(key, value) VALUES('bd_seq', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (bd_seq,))

    def probe(self) -> None:
        """One small committed write: does the store work (again)? Raises :class:`StoreError`."""
        self._write("INSERT INTO meta(key, value) VALUES('probe', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (int(self._clock()),))

    # -- buffer -----------------------------------------------------------------------------

    def append(self, updates: Sequence[MetricUpdate], datatype_of: DatatypeOf) -> int:
        """Write ``updates`` in one transaction; returns how many were kept (see the full policy)."""
        if not updates:
            return 0
        rows = [self._row(u, datatype_of(u.device_id, u.name)) for u in updates]
        room = self.max_values - self.depth
        excess = len(rows) - room
        rejected = dropped = deleted = 0  # applied to the counters only once the commit succeeded
        if excess > 0:
            if self.full_policy == "reject_new":
                rejected = excess
                rows = rows[:max(room, 0)]
            else:
                deleted = min(excess, self.depth)
                dropped = excess
                if excess > deleted:  # a single batch larger than the whole store
                    rows = rows[excess - deleted:]
        try:
            with self._tx():
                if deleted:
                    self._db.execute("DELETE FROM buffer WHERE id IN (SELECT id FROM buffer ORDER BY id LIMIT ?)",
                                     (deleted,))
                if rows:
                    self._db.executemany(
                        "INSERT INTO buffer(ts, device, name, dt, kind, value) VALUES (?,?,?,?,?,?)", rows)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {len(updates)} values to {self.path}: {exc}") from exc
        if rejected:
            self.rejected += rejected
            self._log_full(f"store full ({self.max_values} values): rejected {rejected} new values "
                           f"({self.rejected} so far)")
        if dropped:
            self.dropped += dropped
            self._log_full(f"store full ({self.max_values} values): dropped the {dropped} oldest "
                           f"({self.dropped} so far)")
        self.depth += len(rows) - deleted
        self.written += len(rows)
        return len(rows)

    def fetch(self, limit: int, *, after: tuple[int, int] | None = None,
              devices: Collection[str | None] | None = None) -> list[MetricUpdate]:
        """Up to ``limit`` buffered values in source-time order, strictly after ``after=(ts, id)``.

        ``devices`` restricts to those targets (None = node level); rows of other devices stay
        buffered until their device is born again. Each update has ``seq_id`` = its row id and
        ``is_historical=True``.
        """
        sql = "SELECT id, ts, device, name, dt, kind, value FROM buffer"
        where: list[str] = []
        params: list[object] = []
        if after is not None:
            where.append("(ts, id) > (?, ?)")
            params.extend(after)
        if devices is not None:
            keys = [_NODE if d is None else d for d in devices]
            if not keys:
                return []
            where.append(f"device IN ({','.join('?' * len(keys))})")
            params.extend(keys)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, id LIMIT ?"
        params.append(limit)
        out: list[MetricUpdate] = []
        for row_id, ts, device, name, dt, kind, value in self._db.execute(sql, params):
            update = self._update(row_id, ts, device or None, name, dt, kind, value)
            if update is not None:
                out.append(update)
        return out

    def delete(self, ids: Iterable[int]) -> int:
        """Forget delivered rows; contiguous ids become one ranged DELETE."""
        ranges = _ranges(sorted(set(ids)))
        if not ranges:
            return 0
        try:
            with self._tx():
                before = self._db.total_changes
                self._db.executemany("DELETE FROM buffer WHERE id BETWEEN ? AND ?", ranges)
                removed = self._db.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"cannot delete delivered values from {self.path}: {exc}") from exc
        self.depth -= removed
        return removed

    def oldest_ts(self) -> int | None:
        row = self._db.execute("SELECT ts FROM buffer ORDER BY ts, id LIMIT 1").fetchone()
        return None if row is None else int(row[0])

    def count(self) -> int:
        """The exact row count from disk (``depth`` is the cheap running figure)."""
        return int(self._db.execute("SELECT COUNT(*) FROM buffer").fetchone()[0])

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:  # pragma: no cover - closing twice or after a disk error
            pass

    def __enter__(self) -> SparkplugStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _tx(self) -> write_transaction:
        return write_transaction(self._db)

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            with self._tx():
                self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to {self.path}: {exc}") from exc

    def _log_full(self, message: str) -> None:
        now = self._clock()
        if now - self._last_full_log >= 10.0:
            self._last_full_log = now
            log.warning(message)

    @staticmethod
    def _row(update: MetricUpdate, datatype: DataType) -> tuple[object, ...]:
        device = _NODE if update.device_id is None else update.device_id
        value = update.value
        if update.properties:
            kind, stored = _ENCODED, _encode_metric(update, datatype)
        elif update.is_null or value is None:
            kind, stored = _NULL, None
        elif isinstance(value, bool) or isinstance(value, (float, str, bytes)) or (
                isinstance(value, int) and -_INT64_MAX - 1 <= value <= _INT64_MAX):
            kind, stored = _NATIVE, value
        else:
            kind, stored = _ENCODED, _encode_metric(update, datatype)
        return (update.timestamp, device, update.name, int(datatype), kind, stored)

    @staticmethod
    def _update(row_id: int, ts: int, device: str | None, name: str, dt: int, kind: int,
                value: object) -> MetricUpdate | None:
        if kind == _NULL:
            return MetricUpdate(device, name, None, ts, is_null=True, is_historical=True, seq_id=row_id)
        if kind == _NATIVE:
            if dt == DataType.Boolean:
                value = bool(value)
            return MetricUpdate(device, name, value, ts, is_historical=True, seq_id=row_id)
        try:
            metric = decode_payload(value, MessageType.NBIRTH).metrics[0]  # type: ignore[arg-type]
        except (SparkplugError, IndexError) as exc:
            log.error("store row %d (%s/%s) cannot be decoded, skipped: %s", row_id, device, name, exc)
            return None
        return MetricUpdate(device, name, metric.value, ts, is_null=metric.is_null,
                            properties=metric.properties, is_historical=True, seq_id=row_id)


def _encode_metric(update: MetricUpdate, datatype: DataType) -> bytes:
    metric = Metric(name=update.name, value=update.value, datatype=datatype, timestamp=update.timestamp,
                    is_null=update.is_null, properties=update.properties)
    return encode_payload(Payload(metrics=[metric], timestamp=update.timestamp, seq=0), MessageType.NBIRTH)


def _ranges(ids: Sequence[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    if not ids:
        return out
    start = prev = ids[0]
    for i in ids[1:]:
        if i != prev + 1:
            out.append((start, prev))
            start = i
        prev = i
    out.append((start, prev))
    return out
