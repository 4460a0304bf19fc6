"""The PostgreSQL backend's minute and hour rollups: kept per batch, read for aggregates, rebuilt on migration.

The merging is ``historian.rollup`` (the embedded store's code): each batch's part of a bucket is merged
into the stored accumulator when it comes after the bucket's last sample, and the bucket is recomputed
from its raw values (already copied in the same transaction) when it reaches back inside it. The stored
accumulators a batch touches are read ``FOR UPDATE`` in one query per table and written back with one
binary COPY into a temporary table and one upsert, so a batch costs two round trips per table whatever its
number of tags. Each tag is written by one adapter instance (instances split the plant by Sparkplug
group), so two transactions never race to create the same bucket.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from operator import itemgetter

import psycopg

from .. import rollup
from ..model import Quality, Value
from ..partitions import DAY_MS, HOUR_MS, MINUTE_MS
from ..values import from_columns

_QUALITIES = tuple(Quality)
_ACC_COLS = "fa, la, ln, s, c, mn, mx, fvn, fvj, fms, lvn, lvj, lms, ig, w"
_COPY_TYPES = ["int4", "int8", "int8", "int8", "float8", "int8", "int8", "float8", "float8", "float8", "text", "int8",
               "float8", "text", "int8", "float8", "int8"]
_WIDTH = {"hist_minutes": MINUTE_MS, "hist_hours": HOUR_MS}
Point = tuple[int, Value, Quality]


def _split(value: Value) -> tuple[float | None, str | None]:
    """A first/last value as (float column, JSON column): a float goes in the first, None in neither."""
    if type(value) is float:
        return value, None  # type: ignore[return-value]
    return None, None if value is None else json.dumps(value)


def acc_row(acc: rollup.Acc) -> tuple:
    return (acc.first_any_ms, acc.last_any_ms, acc.last_num, acc.samples, acc.count, acc.min, acc.max,
            *_split(acc.first), acc.first_ms, *_split(acc.last), acc.last_ms, acc.integral, acc.weight)


def acc_of(row: Sequence) -> rollup.Acc:
    fa, la, ln, s, c, mn, mx, fvn, fvj, fms, lvn, lvj, lms, ig, w = row
    return rollup.Acc(fa, la, ln, s, c, mn, mx, fvn if fvj is None else json.loads(fvj), fms,
                      lvn if lvj is None else json.loads(lvj), lms, ig, w)


def points(conn: psycopg.Connection, tag_id: int, start_ms: int, end_ms: int) -> list[Point]:
    """The tag's raw points in ``[start_ms, end_ms)`` in the order ``raw`` answers them."""
    rows = conn.execute("SELECT ts, num, i, txt, f FROM hist_values WHERE tag_id = %s AND ts >= %s AND ts < %s "
                        "ORDER BY ts, rx", (tag_id, start_ms, end_ms)).fetchall()
    return [(ts, from_columns(num, i, txt, f >> 3), _QUALITIES[f & 3]) for ts, num, i, txt, f in rows]


def parts_of(per_tag: dict[int, list[Point]]) -> dict[str, dict[tuple[int, int], rollup.Acc]]:
    """A batch's part of every (tag, minute) and (tag, hour) it touches."""
    minutes: dict[tuple[int, int], rollup.Acc] = {}
    hours: dict[tuple[int, int], rollup.Acc] = {}
    for tag_id, pts in per_tag.items():
        pts.sort(key=itemgetter(0))  # stable: receipt order for equal source times
        by_minute = rollup.minute_parts(pts)
        minutes.update(((tag_id, bucket), acc) for bucket, acc in by_minute)
        hours.update(((tag_id, bucket), acc) for bucket, acc in rollup.hour_parts(by_minute))
    return {"hist_minutes": minutes, "hist_hours": hours}


def roll(conn: psycopg.Connection, per_tag: dict[int, list[Point]]) -> None:
    """Merge a batch (already copied into ``hist_values`` in this transaction) into both rollup tables."""
    for table, parts in parts_of(per_tag).items():
        keys = list(parts)
        stored = {(r[0], r[1]): acc_of(r[2:]) for r in conn.execute(
            f"SELECT r.tag_id, r.t, {_ACC_COLS} FROM {table} r "
            "JOIN unnest(%s::int[], %s::bigint[]) AS k(tag_id, t) ON r.tag_id = k.tag_id AND r.t = k.t "
            "FOR UPDATE OF r", ([k[0] for k in keys], [k[1] for k in keys]))}
        rows = []
        for key, part in parts.items():
            acc = rollup.merge_in_order(stored.get(key), part)
            if acc is None:
                acc = rollup.from_sorted(points(conn, key[0], key[1], key[1] + _WIDTH[table]))
                assert acc is not None
            rows.append((*key, *acc_row(acc)))
        write(conn, table, rows)


def write(conn: psycopg.Connection, table: str, rows: Iterable[tuple]) -> None:
    """Upsert rollup rows: binary COPY into a temporary table, then one INSERT … ON CONFLICT."""
    staging = f"{table}_in"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS")
    with conn.cursor() as cur, cur.copy(f"COPY {staging} (tag_id, t, {_ACC_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(row)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _ACC_COLS.split(", "))
    conn.execute(f"INSERT INTO {table} SELECT * FROM {staging} ON CONFLICT (tag_id, t) DO UPDATE SET {updates}")
    conn.execute(f"DELETE FROM {staging}")


def read(conn: psycopg.Connection, table: str, tag_ids: list[int], start_ms: int,
         end_ms: int) -> dict[int, list[tuple[int, rollup.Acc]]]:
    """Every stored bucket of these tags in ``[start_ms, end_ms)``, per tag in time order (one query)."""
    out: dict[int, list[tuple[int, rollup.Acc]]] = {tag_id: [] for tag_id in tag_ids}
    with conn.cursor(binary=True) as cur:  # numbers in binary: no text to parse per column
        cur.execute(f"SELECT tag_id, t, {_ACC_COLS} FROM {table} WHERE tag_id = ANY(%s) AND t >= %s AND t < %s "
                    "ORDER BY tag_id, t", (tag_ids, start_ms, end_ms))
        for row in cur.fetchall():
            out[row[0]].append((row[1], acc_of(row[2:])))
    return out


def drop_days(conn: psycopg.Connection, start_ms: int | None, end_ms: int) -> None:
    """Forget the rollups of the days whose values retention dropped (``start_ms`` None: everything before)."""
    for table in _WIDTH:
        conn.execute(f"DELETE FROM {table} WHERE t >= %s AND t < %s",
                     (start_ms if start_ms is not None else -(2**63), end_ms))


def rebuild(conn: psycopg.Connection) -> None:
    """Every rollup from the stored values, one tag and day at a time (the migration from version 1)."""
    days = conn.execute(f"SELECT DISTINCT tag_id, ts - ts % {DAY_MS} FROM hist_values ORDER BY 1, 2").fetchall()
    for tag_id, day in days:
        by_minute = rollup.minute_parts(points(conn, tag_id, day, day + DAY_MS))
        write(conn, "hist_minutes", [(tag_id, bucket, *acc_row(acc)) for bucket, acc in by_minute])
        write(conn, "hist_hours", [(tag_id, bucket, *acc_row(acc)) for bucket, acc in rollup.hour_parts(by_minute)])
