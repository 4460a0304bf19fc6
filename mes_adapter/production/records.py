"""Contextualized records: every reading, alarm and state change of a line, queryable per batch.

Decision — bind at *query* time, not at insert: a row stores what the plant said (line, cell,
metric, value, quality, source time); the batch / work order / product / phase are attached when the
row is read, from the context timeline at the row's source time. Why:

* late context (an assertion whose ``since_ms`` lies in the past) and corrections are right at once,
  with no re-binding ``UPDATE`` that a crash could leave half done;
* the binding is a pure function of (context history, source time), so late and out-of-order data
  land in the right batch deterministically, whatever order they arrived in;
* a batch query is a handful of index range scans (one per segment of the batch).

Inserts are batched (``executemany`` in one transaction) and idempotent: the same metric at the same
source time is stored once, so store-and-forward replays and birth re-statements add nothing.

One bad value never costs the others of its batch: a record SQLite cannot hold (a source time
outside ``[0, 2^62]`` such as 2^63, a value that does not encode) is quarantined before the insert,
logged with what it was and counted in :attr:`RecordStore.quarantined`; the rest are stored.

:class:`RecordStorePort` is what ingest, OEE, downtime and the API need; :class:`RecordStore` keeps the
rows in a SQLite file (the default), :class:`~mes_adapter.production.pg_records.PostgresRecordStore` in
the PostgreSQL several adapter instances share (``mes.state_dsn``), with the same rules (quarantine
first, the same metric at the same source time once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from mes_adapter.context.service import ContextService
from mes_adapter.context.timeline import Timeline
from mes_adapter.errors import MesInputError
from mes_adapter.production.counters import MAX_TS_MS  # the latest source time a record may carry
from mes_adapter.sqlite import open_db, transaction
from uns.conventions import Quality

_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL,
    cell TEXT NOT NULL,
    metric TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT,
    quality TEXT NOT NULL,
    source_ts_ms INTEGER NOT NULL,
    received_ms INTEGER,
    is_historical INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS record_once ON record (line, cell, metric, source_ts_ms);
CREATE INDEX IF NOT EXISTS record_by_time ON record (line, source_ts_ms);
"""

DEFAULT_LIMIT = 10_000

log = logging.getLogger(__name__)

_Row = tuple[str, str, str, str, "str | None", str, int, "int | None", int]


class RecordKind(StrEnum):
    READING = "reading"
    ALARM = "alarm"
    STATE = "state"


@dataclass(frozen=True, slots=True)
class Record:
    """What the plant said, as stored."""

    line: str
    cell: str | None
    metric: str
    value: Any
    source_ts_ms: int
    quality: Quality = Quality.GOOD
    kind: RecordKind = RecordKind.READING
    received_ms: int | None = None
    is_historical: bool = False


@dataclass(frozen=True, slots=True)
class BoundRecord:
    """A record with the context that was active at its source time (all None: no batch)."""

    record: Record
    batch_id: str | None
    work_order_id: str | None
    product_id: str | None
    phase: str | None
    context_seq: int | None

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {"line": r.line, "cell": r.cell, "metric": r.metric, "kind": r.kind.value,
                "value": r.value, "quality": r.quality.value, "source_ts_ms": r.source_ts_ms,
                "received_ms": r.received_ms, "is_historical": r.is_historical,
                "batch_id": self.batch_id, "work_order_id": self.work_order_id,
                "product_id": self.product_id, "phase": self.phase, "context_seq": self.context_seq}


class RecordStorePort(Protocol):
    """Rows of readings, alarms and state changes (see the module notes); both backends."""

    #: records that could not be stored (see the module notes)
    quarantined: int

    def add_many(self, records: Iterable[Record]) -> int:
        """Insert a batch in one transaction; returns how many were new (duplicates ignored).

        Records that cannot be stored are quarantined (logged, counted); a store error (disk
        full, locked, database unreachable) is raised and nothing of the batch is written.
        """
        ...

    def query(self, line: str, from_ms: int, to_ms: int, *, metric: str | None = None,
              cell: str | None = None, kind: RecordKind | None = None,
              limit: int = DEFAULT_LIMIT) -> list[Record]:
        """Rows of a line with ``from_ms <= source_ts_ms < to_ms``, oldest first."""
        ...

    def last_before(self, line: str, cell: str | None, metric: str, ts_ms: int) -> Record | None:
        """The latest row of one metric strictly before ``ts_ms`` (e.g. the state entering a window)."""
        ...

    def close(self) -> None: ...


class QuarantineFirst:
    """The check every backend makes before an insert: what it cannot hold is quarantined, not written."""

    #: the backend cannot hold a NUL character in a text column (PostgreSQL)
    refuses_nul = False

    def __init__(self) -> None:
        self.quarantined = 0

    def storable(self, records: Iterable[Record]) -> list[_Row]:
        """The rows to insert, in order, without the quarantined records."""
        return [row for row in map(self._row_or_quarantine, records) if row is not None]

    def _row_or_quarantine(self, r: Record) -> _Row | None:
        problem = None
        value: str | None = None
        if (isinstance(r.source_ts_ms, bool) or not isinstance(r.source_ts_ms, int)
                or not 0 <= r.source_ts_ms <= MAX_TS_MS):
            problem = f"source time {r.source_ts_ms!r} is outside 0..2^62 ms"
        elif r.received_ms is not None and not 0 <= r.received_ms <= MAX_TS_MS:
            problem = f"receive time {r.received_ms!r} is outside 0..2^62 ms"
        elif self.refuses_nul and "\x00" in f"{r.line}{r.cell or ''}{r.metric}":
            problem = "its name holds a NUL character, which PostgreSQL text cannot hold"
        else:
            try:
                value = _encode(r.value)
            except (TypeError, ValueError) as exc:
                problem = f"value does not encode ({exc})"
        if problem is not None:
            self.quarantined += 1
            log.error("record quarantined: %s %s/%s value %r: %s", r.line, r.cell or "-", r.metric,
                      r.value, problem)
            return None
        return (r.line, r.cell or "", r.metric, r.kind.value, value, r.quality.value,
                r.source_ts_ms, r.received_ms, int(r.is_historical))


#: the columns of a record row, in :data:`_Row` order (both backends)
COLUMNS = "line, cell, metric, kind, value, quality, source_ts_ms, received_ms, is_historical"


def range_query(table: str, mark: str, line: str, from_ms: int, to_ms: int, *, metric: str | None,
                cell: str | None, kind: RecordKind | None, limit: int) -> tuple[str, list[Any]]:
    """The SQL and parameters of :meth:`RecordStorePort.query` (``mark``: the driver's placeholder)."""
    if to_ms < from_ms:
        raise MesInputError(f"time range ends ({to_ms}) before it starts ({from_ms})")
    sql = f"SELECT {COLUMNS} FROM {table} WHERE line = {mark} AND source_ts_ms >= {mark} AND source_ts_ms < {mark}"
    params: list[Any] = [line, from_ms, to_ms]
    for column, value in (("metric", metric), ("cell", cell), ("kind", None if kind is None else kind.value)):
        if value is not None:
            sql += f" AND {column} = {mark}"
            params.append(value)
    return sql + f" ORDER BY source_ts_ms, id LIMIT {mark}", [*params, limit]


def last_before_query(table: str, mark: str, line: str, cell: str | None, metric: str,
                      ts_ms: int) -> tuple[str, tuple[Any, ...]]:
    """The SQL and parameters of :meth:`RecordStorePort.last_before`."""
    return (f"SELECT {COLUMNS} FROM {table} WHERE line = {mark} AND cell = {mark} AND metric = {mark}"
            f" AND source_ts_ms < {mark} ORDER BY source_ts_ms DESC LIMIT 1", (line, cell or "", metric, ts_ms))


class RecordStore(QuarantineFirst):
    """SQLite rows of readings, alarms and state changes; batched, idempotent inserts."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._conn = open_db(path, durable=False)
        self._conn.executescript(_SCHEMA)

    def add_many(self, records: Iterable[Record]) -> int:
        rows = self.storable(records)
        if not rows:
            return 0
        with transaction(self._conn) as conn:
            before = conn.total_changes
            conn.executemany(f"INSERT OR IGNORE INTO record ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            return conn.total_changes - before

    def query(self, line: str, from_ms: int, to_ms: int, *, metric: str | None = None,
              cell: str | None = None, kind: RecordKind | None = None,
              limit: int = DEFAULT_LIMIT) -> list[Record]:
        sql, params = range_query("record", "?", line, from_ms, to_ms, metric=metric, cell=cell, kind=kind,
                                  limit=limit)
        return [record_of(row) for row in self._conn.execute(sql, params).fetchall()]

    def last_before(self, line: str, cell: str | None, metric: str, ts_ms: int) -> Record | None:
        row = self._conn.execute(*last_before_query("record", "?", line, cell, metric, ts_ms)).fetchone()
        return None if row is None else record_of(row)

    def close(self) -> None:
        self._conn.close()


class ContextualRecords:
    """Records joined with the context timeline at read time (see the module decision)."""

    def __init__(self, store: RecordStorePort, context: ContextService) -> None:
        self._store = store
        self._context = context

    def bind(self, records: Sequence[Record]) -> list[BoundRecord]:
        out = []
        timelines: dict[str, Timeline | None] = {}  # each line's timeline read once (another instance's: a query)
        for r in records:
            if r.line not in timelines:
                timelines[r.line] = self._context.reader(r.line)
            timeline = timelines[r.line]
            ctx = None if timeline is None else timeline.active_at(r.source_ts_ms)
            out.append(BoundRecord(r, None, None, None, None, None) if ctx is None else
                       BoundRecord(r, ctx.batch_id, ctx.work_order_id, ctx.product_id, ctx.phase,
                                   ctx.seq))
        return out

    def query(self, line: str, from_ms: int, to_ms: int, *, metric: str | None = None,
              cell: str | None = None, kind: RecordKind | None = None,
              limit: int = DEFAULT_LIMIT) -> list[BoundRecord]:
        """Rows in a time range, each with the context active at its source time."""
        return self.bind(self._store.query(line, from_ms, to_ms, metric=metric, cell=cell,
                                           kind=kind, limit=limit))

    def query_batch(self, line: str, batch_id: str, *, from_ms: int | None = None,
                    to_ms: int | None = None, metric: str | None = None, cell: str | None = None,
                    kind: RecordKind | None = None, limit: int = DEFAULT_LIMIT) -> list[BoundRecord]:
        """Rows whose source time lies in the batch's window (optionally narrowed), oldest first."""
        window = self._context.batch_window(line, batch_id)
        if window is None:
            return []
        out: list[BoundRecord] = []
        for seg in window.segments:
            start = seg.start_ms if from_ms is None else max(seg.start_ms, from_ms)
            end = seg.end_ms if seg.end_ms is not None else 2**62
            if to_ms is not None:
                end = min(end, to_ms)
            if end <= start:
                continue
            ctx = seg.assertion
            for r in self._store.query(line, start, end, metric=metric, cell=cell, kind=kind,
                                       limit=limit - len(out)):
                out.append(BoundRecord(r, ctx.batch_id, ctx.work_order_id, ctx.product_id,
                                       ctx.phase, ctx.seq))
            if len(out) >= limit:
                break
        return out


def _encode(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


def record_of(row: tuple[Any, ...]) -> Record:
    line, cell, metric, kind, value, quality, ts, received, historical = row
    return Record(line=line, cell=cell or None, metric=metric,
                  value=None if value is None else json.loads(value), source_ts_ms=ts,
                  quality=Quality(quality), kind=RecordKind(kind), received_ms=received,
                  is_historical=bool(historical))
