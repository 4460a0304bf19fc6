"""Contextualized records in the PostgreSQL shared by several adapter instances (``mes.state_dsn``).

The same rows and rules as the SQLite :class:`~mes_adapter.production.records.RecordStore` (bound to
context at query time, quarantine before the insert, the same metric at the same source time stored
once), in the table ``mes_record`` (schema version in ``mes_schema``, store ``records``). Each instance
writes its own groups' lines; any instance reads every line.

A batch is inserted with one statement over arrays (``unnest``) and ``ON CONFLICT DO NOTHING``: one
round trip however large the batch, and the row count it reports is exactly the new rows (a replayed
record, or the same record twice in one batch, adds nothing).
"""

from __future__ import annotations

from collections.abc import Iterable

from mes_adapter.pg_schema import Migration
from mes_adapter.pg_state import PgConnection
from mes_adapter.production.records import (
    COLUMNS,
    DEFAULT_LIMIT,
    QuarantineFirst,
    Record,
    RecordKind,
    last_before_query,
    range_query,
    record_of,
)

STORE = "records"
MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE mes_record (
        id bigserial PRIMARY KEY,
        line text NOT NULL,
        cell text NOT NULL,
        metric text NOT NULL,
        kind text NOT NULL,
        value text,
        quality text NOT NULL,
        source_ts_ms bigint NOT NULL,
        received_ms bigint,
        is_historical integer NOT NULL
    );
    CREATE UNIQUE INDEX mes_record_once ON mes_record (line, cell, metric, source_ts_ms);
    CREATE INDEX mes_record_by_time ON mes_record (line, source_ts_ms);
    """,
]

_TYPES = ("text", "text", "text", "text", "text", "text", "bigint", "bigint", "integer")
_INSERT = (f"INSERT INTO mes_record ({COLUMNS}) SELECT * FROM unnest("
           + ", ".join(f"%s::{t}[]" for t in _TYPES) + ") ON CONFLICT DO NOTHING")


class PostgresRecordStore(QuarantineFirst):
    """One instance's handle on the shared records (its own connection)."""

    refuses_nul = True

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._db = PgConnection(dsn, STORE, MIGRATIONS)

    def add_many(self, records: Iterable[Record]) -> int:
        rows = self.storable(records)
        if not rows:
            return 0
        # one statement (atomic on its own) that ignores conflicts: safe to retry on a new connection
        return self._db.count(_INSERT, [list(column) for column in zip(*rows, strict=True)])

    def query(self, line: str, from_ms: int, to_ms: int, *, metric: str | None = None,
              cell: str | None = None, kind: RecordKind | None = None,
              limit: int = DEFAULT_LIMIT) -> list[Record]:
        sql, params = range_query("mes_record", "%s", line, from_ms, to_ms, metric=metric, cell=cell, kind=kind,
                                  limit=limit)
        return [record_of(row) for row in self._db.read(sql, params)]

    def last_before(self, line: str, cell: str | None, metric: str, ts_ms: int) -> Record | None:
        rows = self._db.read(*last_before_query("mes_record", "%s", line, cell, metric, ts_ms))
        return record_of(rows[0]) if rows else None

    def close(self) -> None:
        self._db.close()
