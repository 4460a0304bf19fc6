"""Counter samples and production deltas in the PostgreSQL shared by several adapter instances.

The same rows and rules as the SQLite :class:`~mes_adapter.production.quantities.ProductionStore` (a
sample and its deltas written together, here by one statement, so a restarted tracker resumes from the
same samples and no increment is counted twice), in the tables ``mes_counter_sample`` and ``mes_counter_delta`` (schema
version in ``mes_schema``, store ``production``). Each instance writes the counters of its own lines;
any instance sums any line's deltas, which is how a batch's counts are the same whichever instance's
API is asked.
"""

from __future__ import annotations

from collections.abc import Sequence

from mes_adapter.config.mes import CounterSignal
from mes_adapter.oee.compute import Interval
from mes_adapter.pg_schema import Migration
from mes_adapter.pg_state import PgConnection
from mes_adapter.production.counters import CounterDelta, CounterRole, CounterSample
from mes_adapter.production.quantities import DELTA_COLUMNS, add_sums, delta_rows, sample_row, samples_of

STORE = "production"
MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE mes_counter_delta (
        id bigserial PRIMARY KEY,
        line text NOT NULL,
        cell text NOT NULL,
        metric text NOT NULL,
        role text NOT NULL,
        material_id text,
        source_ts_ms bigint NOT NULL,
        delta double precision NOT NULL,
        reason text NOT NULL,
        received_ms bigint NOT NULL
    );
    CREATE INDEX mes_counter_delta_by_time ON mes_counter_delta (line, source_ts_ms);
    CREATE TABLE mes_counter_sample (
        line text NOT NULL,
        cell text NOT NULL,
        metric text NOT NULL,
        source_ts_ms bigint NOT NULL,
        value double precision NOT NULL,
        is_birth integer NOT NULL,
        PRIMARY KEY (line, cell, metric, source_ts_ms)
    );
    """,
]


_DELTA_TYPES = ("text", "text", "text", "text", "text", "bigint", "double precision", "text", "bigint")
_RECORD = ("WITH sample AS (INSERT INTO mes_counter_sample VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING)"
           f" INSERT INTO mes_counter_delta ({DELTA_COLUMNS}) SELECT * FROM unnest("
           + ", ".join(f"%s::{t}[]" for t in _DELTA_TYPES) + ")")


class PostgresProductionStore:
    """One instance's handle on the shared counters (its own connection)."""

    def __init__(self, dsn: str) -> None:
        self._db = PgConnection(dsn, STORE, MIGRATIONS)

    def record(self, line: str, signal: CounterSignal, sample: CounterSample,
               deltas: Sequence[CounterDelta], received_ms: int) -> None:
        # one statement (atomic on its own, one round trip): the sample, and its deltas from arrays
        columns = [list(column) for column in zip(*delta_rows(line, signal, deltas, received_ms), strict=True)]
        self._db.rows(_RECORD, [*sample_row(line, signal, sample), *(columns or [[]] * len(_DELTA_TYPES))])

    def samples(self, line: str, signal: CounterSignal) -> list[CounterSample]:
        return samples_of(self._db.read(  # type: ignore[arg-type]
            "SELECT source_ts_ms, value, is_birth FROM mes_counter_sample"
            " WHERE line = %s AND cell = %s AND metric = %s ORDER BY source_ts_ms",
            (line, signal.cell or "", signal.metric)))

    def prune_samples(self, line: str, signal: CounterSignal, before_ms: int) -> None:
        self._db.count("DELETE FROM mes_counter_sample WHERE line = %s AND cell = %s AND metric = %s"
                      " AND source_ts_ms < %s", (line, signal.cell or "", signal.metric, before_ms))

    def sums(self, line: str, intervals: Sequence[Interval]) -> tuple[dict[CounterRole, float], dict[str, float]]:
        roles: dict[CounterRole, float] = {}
        consumed: dict[str, float] = {}
        for iv in intervals:
            add_sums(self._db.read(  # type: ignore[arg-type]
                "SELECT role, material_id, SUM(delta) FROM mes_counter_delta"
                " WHERE line = %s AND source_ts_ms >= %s AND source_ts_ms < %s"
                " GROUP BY role, material_id", (line, iv.start_ms, iv.end_ms)), roles, consumed)
        return roles, consumed

    def deltas(self, line: str, from_ms: int, to_ms: int) -> list[tuple[str, int, float, str]]:
        return self._db.read(  # type: ignore[return-value]
            "SELECT role, source_ts_ms, delta, reason FROM mes_counter_delta"
            " WHERE line = %s AND source_ts_ms >= %s AND source_ts_ms < %s ORDER BY source_ts_ms, id",
            (line, from_ms, to_ms))

    def close(self) -> None:
        self._db.close()
