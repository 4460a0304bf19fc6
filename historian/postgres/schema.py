"""The PostgreSQL layout, its schema version, and the TimescaleDB variant.

``hist_values`` is partitioned by source time: one native range partition per UTC day
(``hist_values_YYYYMMDD``, created before the first COPY that needs it), or, when the ``timescaledb``
extension is available, a hypertable with one-day chunks, compressed by tag after ``compress_after_ms``.
Retention drops whole partitions (or chunks). The three value columns hold exactly one typed value
(``historian.values.to_columns``); ``f`` packs quality, is_historical and the Sparkplug datatype like
the embedded store. ``hist_batches`` records each written batch's id (exactly once across a lost
acknowledgement).

``hist_minutes`` and ``hist_hours`` (schema version 2) hold one mergeable accumulator
(``historian.rollup.Acc``) per tag and minute or hour, written in the same transaction as the values by
the same rollup code as the embedded store; aggregates of whole minutes or hours are read from them, not
from the values. Clustered on nothing but their primary key (tag, bucket): a query of many tags over a
range is one index scan. First and last values are a float column when they are floats (the common
case: no JSON to parse when reading a million buckets) and JSON text otherwise (keeping their type:
integer, boolean, text). Version 1 had no rollups: the step to 2 builds them from the stored values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import psycopg

from ..migrations import plan

SCHEMA_VERSION = 2

ROLLUP_TABLES = ("hist_minutes", "hist_hours")
_ROLLUP_COLUMNS = ("tag_id integer NOT NULL, t bigint NOT NULL, fa bigint NOT NULL, la bigint NOT NULL, "
                   "ln double precision, s bigint NOT NULL, c bigint NOT NULL, mn double precision, "
                   "mx double precision, fvn double precision, fvj text, fms bigint, lvn double precision, lvj text, "
                   "lms bigint, "
                   "ig double precision NOT NULL, w bigint NOT NULL, PRIMARY KEY (tag_id, t)")
ROLLUP_DDL = "".join(f"CREATE TABLE IF NOT EXISTS {table} ({_ROLLUP_COLUMNS});\n" for table in ROLLUP_TABLES)

BASE_DDL = """
CREATE TABLE IF NOT EXISTS hist_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS hist_tags (
    id serial PRIMARY KEY,
    grp text NOT NULL, edge text NOT NULL, device text NOT NULL, metric text NOT NULL, path text NOT NULL,
    UNIQUE (grp, edge, device, metric, path)
);
CREATE TABLE IF NOT EXISTS hist_batches (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
""" + ROLLUP_DDL

_VALUE_COLUMNS = ("tag_id integer NOT NULL, ts bigint NOT NULL, rx bigint NOT NULL, num double precision, "
                  "i bigint, txt text, f smallint NOT NULL, sc bigint NOT NULL")

NATIVE_DDL = f"""
CREATE TABLE IF NOT EXISTS hist_values ({_VALUE_COLUMNS}) PARTITION BY RANGE (ts);
CREATE INDEX IF NOT EXISTS hist_values_tag_ts ON hist_values (tag_id, ts);
"""

TIMESCALE_DDL = f"""
CREATE TABLE IF NOT EXISTS hist_values ({_VALUE_COLUMNS});
SELECT create_hypertable('hist_values', 'ts', chunk_time_interval => 86400000, if_not_exists => true);
CREATE INDEX IF NOT EXISTS hist_values_tag_ts ON hist_values (tag_id, ts);
CREATE OR REPLACE FUNCTION hist_now_ms() RETURNS bigint LANGUAGE sql STABLE AS
    $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;
SELECT set_integer_now_func('hist_values', 'hist_now_ms', replace_if_exists => true);
ALTER TABLE hist_values SET (timescaledb.compress, timescaledb.compress_segmentby = 'tag_id',
                             timescaledb.compress_orderby = 'ts');
"""


def _add_rollups(conn: psycopg.Connection) -> None:
    """Version 1 → 2: the rollup tables, built from every stored value (one tag and day at a time)."""
    from .rollups import rebuild

    conn.execute(ROLLUP_DDL)
    rebuild(conn)


MIGRATIONS: Mapping[int, Callable[[psycopg.Connection], None]] = {1: _add_rollups}


def timescale_available(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def prepare(conn: psycopg.Connection, *, use_timescale: bool | None = None, compress_after_ms: int = 7 * 86_400_000,
            migrations: Mapping[int, Callable[[psycopg.Connection], None]] = MIGRATIONS,
            target: int = SCHEMA_VERSION) -> str:
    """Create or migrate the schema (one transaction per step); returns "timescaledb" or "native".

    A database that already has historian tables decides by itself which layout it has: an existing
    hypertable stays one, an existing native table stays partitioned natively.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(727001)")  # two instances starting together
        exists = conn.execute("SELECT to_regclass('hist_meta') IS NOT NULL").fetchone()[0]
        if not exists:
            if use_timescale is None:
                use_timescale = timescale_available(conn)
            conn.execute(BASE_DDL)
            if use_timescale:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.execute(TIMESCALE_DDL)
                conn.execute("SELECT add_compression_policy('hist_values', %s::bigint, if_not_exists => true)",
                             (compress_after_ms,))
            else:
                conn.execute(NATIVE_DDL)
            conn.execute("INSERT INTO hist_meta VALUES ('schema_version', %s), ('layout', %s)",
                         (str(target), "timescaledb" if use_timescale else "native"))
            return "timescaledb" if use_timescale else "native"
        row = conn.execute("SELECT value FROM hist_meta WHERE key = 'schema_version'").fetchone()
        steps = plan(int(row[0]) if row else None, target, migrations, "the PostgreSQL historian (table hist_meta)")
    for version in steps:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(727001)")
            now = int(conn.execute("SELECT value FROM hist_meta WHERE key = 'schema_version'").fetchone()[0])
            if now == version:  # another instance may have migrated meanwhile
                migrations[version](conn)
                conn.execute("UPDATE hist_meta SET value = %s WHERE key = 'schema_version'", (str(version + 1),))
    return conn.execute("SELECT value FROM hist_meta WHERE key = 'layout'").fetchone()[0]
