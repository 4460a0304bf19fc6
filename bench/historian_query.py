"""Historian aggregate query over 24 h of 1,000 tags at 1 s (86.4 M values), SQLite and PostgreSQL side by side.

Target (issue 16, bench/README.md): an aggregate query over 24 h of 1,000 tags at 1 s under 500 ms on
each backend. The query is ``aggregates_many(every tag, the day, interval)``: per interval and tag
count, min, max, first, last and time-weighted average, read from the stored minute/hour rollups and
merged by ``historian.rollup`` (the backends' own query path). Per hour that is 24,000 aggregates; the
per-minute figure (1,440,000 aggregates) is printed too, and so are 15-minute intervals.

How the 86.4 M values are made (ingest at ~200,000 values/s would take ~7 minutes per backend):

1. the first second of every tag (1,000 values) goes through the store's ``append``: it creates the
   tags, the day partition and its rollups the normal way;
2. the other 86,399 seconds of every tag are inserted in bulk by SQL inside the store's own tables
   (SQLite: the day file's clustered ``v`` table, one ``INSERT … SELECT`` over a recursive CTE per tag;
   PostgreSQL: the native day partition of ``hist_values`` with its (tag, ts) index, ``INSERT … SELECT``
   over ``generate_series`` per tag), with exactly the columns the writer writes (packed flags,
   receipt offset, typed value);
3. every minute and hour rollup is computed from the same values, in Python, by the code the writer
   runs on each batch (``rollup.minute_parts`` / ``hour_parts``, i.e. the whole day as one batch, which
   the merge makes exact) and stored through the backend's own row encoding (SQLite ``INSERT OR
   REPLACE`` of ``_acc_row``; PostgreSQL ``historian.postgres.rollups.write``: binary COPY + upsert).

Before timing, each store is reopened, its count checked (86,400,000), and for three tags the hourly
aggregates from the rollups are checked equal to ``rollup.aggregate_points`` over ``raw`` (86,400 values
each). Values: ``50 + ((t·7919 + s·104729) mod 1000) / 100`` (Double), 1 % UNCERTAIN, the same IEEE
arithmetic in Python, SQLite and PostgreSQL (float8 casts). Disk: ~3.4 GB (SQLite) + ~11 GB (PostgreSQL)
in temp dirs removed at the end. PostgreSQL is the Debian package, started here on a free loopback port.

Repeat with::

    .venv/bin/python bench/historian_query.py                      # 1,000 tags x 24 h, 5 query runs each
    .venv/bin/python bench/historian_query.py --tags 100 --no-postgres   # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from historian import Quality, Sample, SqliteHistorian, TagId, rollup  # noqa: E402
from historian.partitions import DAY_MS, HOUR_MS, MINUTE_MS  # noqa: E402
from historian.sqlite.store import _ACC_COLS, _acc_row  # noqa: E402

DAY0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
SECONDS = 86_400
DOUBLE = 10
Rollups = tuple[list[tuple[int, int, rollup.Acc]], list[tuple[int, int, rollup.Acc]]]


def tag_ids(tags: int) -> list[TagId]:
    return [TagId("Plant1", f"Edge{t // 100}", f"Dev{t % 100}", f"Metric{t}", f"acme/plant1/area/line{t // 100}/m{t}")
            for t in range(tags)]


def value(t: int, s: int) -> float:
    return 50.0 + ((t * 7919 + s * 104729) % 1000) / 100.0


def point(t: int, s: int) -> tuple[int, float, Quality]:
    return DAY0 + s * 1000 + t % 997, value(t, s), Quality.UNCERTAIN if (t + s) % 100 == 0 else Quality.GOOD


def first_second(tags: list[TagId]) -> list[Sample]:
    out = []
    for t, tag in enumerate(tags):
        ts, v, q = point(t, 0)
        out.append(Sample(tag, ts, ts + 3, v, DOUBLE, q, 0, False))
    return out


def compute_rollups(tags: int) -> Rollups:
    """Every tag's minute and hour accumulators, by the writer's code, over the whole day's points."""
    values = [50.0 + k / 100.0 for k in range(1000)]  # value(t, s) is one of these: the same IEEE result
    steps = [s * 104729 % 1000 for s in range(SECONDS)]
    minutes, hours = [], []
    for t in range(tags):
        base, a = DAY0 + t % 997, t * 7919 % 1000
        pts = list(zip(range(base, base + SECONDS * 1000, 1000), [values[(a + k) % 1000] for k in steps],
                       [Quality.UNCERTAIN if (t + s) % 100 == 0 else Quality.GOOD for s in range(SECONDS)],
                       strict=True))
        assert pts[-1] == point(t, SECONDS - 1)
        by_minute = rollup.minute_parts(pts)
        minutes += [(t, bucket, acc) for bucket, acc in by_minute]
        hours += [(t, bucket, acc) for bucket, acc in rollup.hour_parts(by_minute)]
    return minutes, hours


# -- SQLite -------------------------------------------------------------------------------------------

_SQLITE_BULK = """
WITH RECURSIVE secs(s) AS (SELECT 1 UNION ALL SELECT s + 1 FROM secs WHERE s < 86399)
INSERT INTO v (tag_id, ts, n, rx, v, f, sc)
SELECT :id, :day0 + s * 1000 + :t % 997, :n0 + s, 3 + s % 40, 50.0 + ((:t * 7919 + s * 104729) % 1000) / 100.0,
       (CASE WHEN (:t + s) % 100 = 0 THEN 1 ELSE 0 END) | (10 << 3), 0
FROM secs
"""


def generate_sqlite(directory: Path, tags: list[TagId], rolled: Rollups) -> None:
    store = SqliteHistorian(directory)
    store.append(first_second(tags))
    store.close()
    with sqlite3.connect(directory / "historian.sqlite") as cat:
        ids = {metric: i for i, metric in cat.execute("SELECT id, metric FROM tags")}
    conn = sqlite3.connect(next(directory.glob("day-*.sqlite")), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # the load, not the measurement: the layout is the same
    conn.execute("BEGIN")
    for t, tag in enumerate(tags):
        conn.execute(_SQLITE_BULK, {"id": ids[tag.metric], "day0": DAY0, "t": t, "n0": len(tags) + t * SECONDS})
        if t % 50 == 49:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
    for table, rows in zip(("minutes", "hours"), rolled, strict=True):
        conn.executemany(f"INSERT OR REPLACE INTO {table} (tag_id, t, {_ACC_COLS}) VALUES "
                         "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                         ((ids[tags[t].metric], bucket, *_acc_row(acc)) for t, bucket, acc in rows))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# -- PostgreSQL ---------------------------------------------------------------------------------------

_PG_BULK = """
INSERT INTO hist_values (tag_id, ts, rx, num, i, txt, f, sc)
SELECT %(id)s, %(day0)s + s * 1000 + %(t)s %% 997, 3 + s %% 40,
       50.0::float8 + ((%(t)s * 7919 + s * 104729) %% 1000)::float8 / 100.0::float8, NULL, NULL,
       (CASE WHEN (%(t)s + s) %% 100 = 0 THEN 1 ELSE 0 END) | (10 << 3), 0
FROM generate_series(1::bigint, 86399::bigint) AS s
"""


def generate_postgres(dsn: str, buffer_dir: Path, tags: list[TagId], rolled: Rollups):
    import psycopg

    from historian.postgres import PostgresHistorian
    from historian.postgres import rollups as pg_rollups

    store = PostgresHistorian(dsn, buffer_dir)
    store.append(first_second(tags))
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = dict(conn.execute("SELECT metric, id FROM hist_tags").fetchall())
        # the load, not the measurement: no flush per commit, fewer checkpoints while 11 GB go in
        conn.execute("SET synchronous_commit = off")
        conn.execute("ALTER SYSTEM SET max_wal_size = '16GB'")
        conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        conn.execute("SELECT pg_reload_conf()")
        for start in range(0, len(tags), 50):
            with conn.transaction():
                for t in range(start, min(start + 50, len(tags))):
                    conn.execute(_PG_BULK, {"id": ids[tags[t].metric], "day0": DAY0, "t": t})
        for table, rows in zip(("hist_minutes", "hist_hours"), rolled, strict=True):
            with conn.transaction():
                pg_rollups.write(conn, table, ((ids[tags[t].metric], bucket, *pg_rollups.acc_row(acc))
                                               for t, bucket, acc in rows))
        conn.execute("VACUUM ANALYZE")


# -- the measurement ----------------------------------------------------------------------------------


def check(store, tags: list[TagId]) -> None:
    """The store holds every value, and its rollups answer what the raw values answer."""
    assert store.count() == len(tags) * SECONDS, store.count()
    for tag in (tags[0], tags[len(tags) // 2], tags[-1]):
        pts = [(s.source_ms, s.value, s.quality) for s in store.raw(tag, DAY0, DAY0 + DAY_MS)]
        assert len(pts) == SECONDS
        want = rollup.aggregate_points(pts, DAY0, DAY0 + DAY_MS, HOUR_MS)
        got = store.aggregates(tag, DAY0, DAY0 + DAY_MS, HOUR_MS)
        assert [(a.count, a.min, a.max, a.first, a.last) for a in got] == \
            [(a.count, a.min, a.max, a.first, a.last) for a in want]
        assert all(abs(g.twa - w.twa) < 1e-9 for g, w in zip(got, want, strict=True))


def time_queries(store, tags: list[TagId], intervals: list[int], runs: int) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for interval in intervals:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            answer = store.aggregates_many(tags, DAY0, DAY0 + DAY_MS, interval)
            times.append((time.perf_counter() - started) * 1000)
            assert sum(len(rows) for rows in answer.values()) == len(tags) * DAY_MS // interval
        out[interval] = times
    return out


def timed(label: str, fn: Callable[[], object]) -> object:
    started = time.perf_counter()
    result = fn()
    print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def report(name: str, results: dict[int, list[float]]) -> None:
    for interval, times in results.items():
        print(f"{name:9} per {interval // 1000:>5} s: median {statistics.median(times):8.1f} ms "
              f"(runs {min(times):.1f}–{max(times):.1f}; {len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--intervals", type=int, nargs="+", default=[HOUR_MS, 15 * MINUTE_MS, MINUTE_MS])
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    tags = tag_ids(args.tags)
    print(f"{args.tags:,} tags x {SECONDS:,} s = {args.tags * SECONDS:,} values; load average {os.getloadavg()}")
    rolled: Rollups = timed("rollups computed", lambda: compute_rollups(args.tags))  # type: ignore[assignment]
    work = Path(tempfile.mkdtemp(prefix="hist-query-"))
    results: dict[str, dict[int, list[float]]] = {}
    server = None
    try:
        timed("sqlite generated", lambda: generate_sqlite(work / "sqlite", tags, rolled))
        if not args.no_postgres:
            from tests.support.postgres import PostgresServer

            server = PostgresServer(work / "pglog")
            server.start()
            timed("postgres generated", lambda: generate_postgres(server.dsn, work / "pgbuf", tags, rolled))
        for rows in rolled:
            rows.clear()  # the memory, before the queries
        stores = {"sqlite": SqliteHistorian(work / "sqlite")}
        if server is not None:
            from historian.postgres import PostgresHistorian

            stores["postgres"] = PostgresHistorian(server.dsn, work / "pgbuf")
        for name, store in stores.items():
            timed(f"{name} checked", lambda store=store: check(store, tags))
            results[name] = {}
        for run in range(args.runs):  # alternate, so both see the same load on a shared machine
            for name, store in stores.items():
                for interval, times in time_queries(store, tags, args.intervals, 1).items():
                    results[name].setdefault(interval, []).extend(times)
            print(f"  run {run + 1} done, load average {os.getloadavg()}", flush=True)
        for store in stores.values():
            store.close()
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)
    for name, by_interval in results.items():
        report(name, by_interval)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
