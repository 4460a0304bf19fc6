"""The PostgreSQL historian: COPY in binary, day partitions (or TimescaleDB), an on-disk buffer for outages.

``append`` returns once the batch is committed in PostgreSQL or fsynced in the on-disk buffer. While the
buffer holds anything, new batches go behind it (order kept); every ``append`` and ``flush`` first tries
to write the buffer out. When the buffer is full, ``append`` waits for PostgreSQL (back-pressure, never
drops); after ``buffer_wait_s`` it raises ``HistorianUnavailableError`` and the caller still holds the batch.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg

from .. import rollup
from ..errors import HistorianUnavailableError, QueryError, UnknownTagError
from ..gaps import find_gaps
from ..model import Aggregate, Gap, Quality, Sample, TagId
from ..partitions import DAY_MS, HOUR_MS, MINUTE_MS, check_interval, check_range, day_of
from ..port import DEFAULT_MAX_POINTS
from ..values import from_columns, to_columns
from . import rollups
from . import spool as spool_codec
from .schema import prepare
from .spool import Spool

log = logging.getLogger(__name__)
_QUALITIES = tuple(Quality)
_COPY = "COPY hist_values (tag_id, ts, rx, num, i, txt, f, sc) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["int4", "int8", "int8", "float8", "int8", "text", "int2", "int8"]
_SELECT = "SELECT ts, rx, num, i, txt, f, sc FROM hist_values WHERE tag_id = %s"


def _sample(tag: TagId, ts: int, rx: int, num: float | None, i: int | None, txt: str | None, f: int,
            sc: int) -> Sample:
    datatype = f >> 3
    return Sample(tag, ts, ts + rx, from_columns(num, i, txt, datatype), datatype, _QUALITIES[f & 3], sc, bool(f & 4))


def _partition_name(day: int) -> str:
    return "hist_values_" + time.strftime("%Y%m%d", time.gmtime(day // 1000))


class PostgresHistorian:
    def __init__(self, dsn: str, buffer_dir: str | Path, *, max_buffer_bytes: int = 1 << 30,
                 buffer_wait_s: float | None = None, max_age_ms: int | None = None, max_bytes: int | None = None,
                 use_timescale: bool | None = None) -> None:
        self.dsn = dsn
        self.spool = Spool(Path(buffer_dir), max_buffer_bytes)
        self.buffer_wait_s = buffer_wait_s
        self.max_age_ms = max_age_ms
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._tags: dict[TagId, int] = {}
        self._days: set[int] = set()
        conn = self._connect()  # the first start needs the database: the schema is checked before anything
        self.layout = prepare(conn, use_timescale=use_timescale)
        with self._lock:
            self._flush_spool()

    # -- connection -------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.dsn, autocommit=True)
        return self._conn

    def _lost(self, exc: BaseException) -> None:
        log.warning("PostgreSQL historian: %s; batches wait in the on-disk buffer", exc)
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._days.clear()

    # -- ingest -----------------------------------------------------------------------------------

    def append(self, batch: Sequence[Sample]) -> None:
        if not batch:
            return
        for s in batch:  # refuse a bad value before anything is written (nothing half-stored)
            to_columns(s.value)
        batch_id = uuid.uuid4().hex
        waited_since = time.monotonic()
        with self._lock:
            while True:
                if self._flush_spool():
                    try:
                        self._write(batch_id, batch)
                        return
                    except psycopg.OperationalError as exc:
                        self._lost(exc)
                data = spool_codec.encode(batch)
                if self.spool.has_room(len(data)):
                    self.spool.put(batch_id, data)
                    return
                if self.buffer_wait_s is not None and time.monotonic() - waited_since > self.buffer_wait_s:
                    raise HistorianUnavailableError(
                        f"PostgreSQL unreachable and the on-disk buffer is full ({self.spool.bytes} bytes in "
                        f"{len(self.spool)} batches): the batch of {len(batch)} values was not taken")
                time.sleep(0.5)

    def flush(self) -> int:
        """Write the on-disk buffer out as far as PostgreSQL takes it; returns the batches still buffered."""
        with self._lock:
            self._flush_spool()
            return len(self.spool)

    def buffered(self) -> int:
        return len(self.spool)

    def _flush_spool(self) -> bool:
        """True when the buffer is empty (written out), False when PostgreSQL is still unreachable."""
        for batch_id, path in self.spool.pending():
            try:
                self._write(batch_id, spool_codec.decode(path.read_bytes()))
            except psycopg.OperationalError as exc:
                self._lost(exc)
                return False
            self.spool.done(path)
        return True

    def _write(self, batch_id: str, batch: Sequence[Sample]) -> None:
        conn = self._connect()
        with conn.transaction():
            # the id first: a batch already committed (its acknowledgement lost) stops here, not written twice
            inserted = conn.execute("INSERT INTO hist_batches (id) VALUES (%s) ON CONFLICT DO NOTHING",
                                    (batch_id,)).rowcount
            if not inserted:
                log.info("PostgreSQL historian: batch %s was already written, skipped", batch_id)
                return
            ids = self._intern(conn, {s.tag for s in batch})
            if self.layout == "native":
                self._ensure_partitions(conn, {day_of(s.source_ms) for s in batch})
            per_tag: dict[int, list[rollups.Point]] = {}
            with conn.cursor() as cur, cur.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                write = copy.write_row
                for s in batch:
                    tag_id = ids[s.tag]
                    write((tag_id, s.source_ms, s.receipt_ms - s.source_ms, *to_columns(s.value),
                           int(s.quality) | (4 if s.is_historical else 0) | (s.datatype << 3), s.status_code))
                    per_tag.setdefault(tag_id, []).append((s.source_ms, s.value, s.quality))
            rollups.roll(conn, per_tag)

    def _intern(self, conn: psycopg.Connection, tags: set[TagId]) -> dict[TagId, int]:
        new = [t for t in tags if t not in self._tags]
        if new:
            rows = [(t.group, t.edge, t.device, t.metric, t.path) for t in new]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO hist_tags (grp, edge, device, metric, path) VALUES (%s,%s,%s,%s,%s) "
                                "ON CONFLICT DO NOTHING", rows)
            for tag in new:
                self._tags[tag] = conn.execute(
                    "SELECT id FROM hist_tags WHERE grp=%s AND edge=%s AND device=%s AND metric=%s AND path=%s",
                    (tag.group, tag.edge, tag.device, tag.metric, tag.path)).fetchone()[0]
        return self._tags

    def _ensure_partitions(self, conn: psycopg.Connection, days: set[int]) -> None:
        for day in sorted(days - self._days):
            conn.execute(f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF hist_values "
                         f"FOR VALUES FROM ({day}) TO ({day + DAY_MS})")
            self._days.add(day)

    # -- queries ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple, *, fetch: bool = True) -> list[tuple]:
        with self._lock:
            try:
                cur = self._connect().execute(sql, params)
                return cur.fetchall() if fetch else []
            except psycopg.OperationalError as exc:
                self._lost(exc)
                raise HistorianUnavailableError(f"PostgreSQL historian unreachable: {exc}") from exc

    def _tag_id(self, tag: TagId) -> int:
        if tag not in self._tags:
            rows = self._query("SELECT id FROM hist_tags WHERE grp=%s AND edge=%s AND device=%s AND metric=%s "
                               "AND path=%s", (tag.group, tag.edge, tag.device, tag.metric, tag.path))
            if not rows:
                raise UnknownTagError(f"no value was ever stored for {tag}")
            self._tags[tag] = rows[0][0]
        return self._tags[tag]

    def raw(self, tag: TagId, start_ms: int, end_ms: int, *, max_points: int = DEFAULT_MAX_POINTS) -> list[Sample]:
        check_range(start_ms, end_ms)
        rows = self._query(f"{_SELECT} AND ts >= %s AND ts < %s ORDER BY ts, rx LIMIT %s",
                           (self._tag_id(tag), start_ms, end_ms, max_points + 1))
        if len(rows) > max_points:
            raise QueryError(f"more than {max_points} values of {tag} in [{start_ms}, {end_ms}): "
                             "narrow the range or ask for aggregates")
        return [_sample(tag, *row) for row in rows]

    def as_of(self, tag: TagId, at_ms: int) -> Sample | None:
        rows = self._query(f"{_SELECT} AND ts <= %s ORDER BY ts DESC, rx DESC LIMIT 1", (self._tag_id(tag), at_ms))
        return _sample(tag, *rows[0]) if rows else None

    def aggregates(self, tag: TagId, start_ms: int, end_ms: int, interval_ms: int) -> list[Aggregate]:
        return self.aggregates_many([tag], start_ms, end_ms, interval_ms)[tag]

    def aggregates_many(self, tags: Sequence[TagId], start_ms: int, end_ms: int,
                        interval_ms: int) -> dict[TagId, list[Aggregate]]:
        """Whole minutes or hours from the rollup tables (one query for every tag); shorter intervals
        from the raw values, by the same code."""
        check_interval(start_ms, end_ms, interval_ms)
        table = "hist_hours" if interval_ms % HOUR_MS == 0 else "hist_minutes" if interval_ms % MINUTE_MS == 0 else None
        if table is None:
            return {tag: rollup.aggregate_points([(s.source_ms, s.value, s.quality)
                                                  for s in self.raw(tag, start_ms, end_ms)],
                                                 start_ms, end_ms, interval_ms) for tag in tags}
        ids = {tag: self._tag_id(tag) for tag in tags}
        with self._lock:
            try:
                stored = rollups.read(self._connect(), table, sorted(set(ids.values())), start_ms, end_ms)
            except psycopg.OperationalError as exc:
                self._lost(exc)
                raise HistorianUnavailableError(f"PostgreSQL historian unreachable: {exc}") from exc
        return {tag: rollup.in_intervals(stored[tag_id], start_ms, interval_ms) for tag, tag_id in ids.items()}

    def gaps(self, tag: TagId, start_ms: int, end_ms: int) -> list[Gap]:
        check_range(start_ms, end_ms)
        tag_id = self._tag_id(tag)
        before = self.as_of(tag, start_ms - 1)
        points: list[tuple[int, Quality]] = [(before.source_ms, before.quality)] if before else []
        rows = self._query("SELECT ts, f FROM hist_values WHERE tag_id = %s AND ts >= %s AND ts < %s ORDER BY ts, rx",
                           (tag_id, start_ms, end_ms))
        points += [(ts, _QUALITIES[f & 3]) for ts, f in rows]
        return find_gaps(points)

    def count(self) -> int:
        return self._query("SELECT count(*) FROM hist_values", ())[0][0]

    # -- retention --------------------------------------------------------------------------------

    def partitions(self) -> list[tuple[int, str]]:
        """(day, table) of every native day partition, oldest first."""
        rows = self._query("SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                           "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'hist_values'::regclass", ())
        out = []
        for name, bound in rows:
            out.append((int(bound.split("('")[1].split("'")[0]) if "('" in bound else
                        int(bound.split("(")[1].split(")")[0]), name))
        return sorted(out)

    def size_bytes(self) -> int:
        return self._query("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits "
                           "WHERE inhparent = 'hist_values'::regclass", ())[0][0]

    def enforce_retention(self, now_ms: int) -> list[str]:
        if self.layout == "timescaledb":
            if self.max_age_ms is None:
                return []
            cutoff = now_ms - self.max_age_ms
            rows = self._query("SELECT drop_chunks('hist_values', older_than => %s::bigint)::text", (cutoff,))
            self._forget_rollups(None, day_of(cutoff))  # chunks are whole days: those before the cutoff's day
            return [r[0] for r in rows]
        dropped: list[str] = []
        parts = self.partitions()
        if self.max_age_ms is not None:
            cutoff = now_ms - self.max_age_ms
            while parts and parts[0][0] + DAY_MS <= cutoff:
                dropped.append(self._drop(*parts.pop(0)))
        if self.max_bytes is not None:
            while len(parts) > 1 and self.size_bytes() > self.max_bytes:
                dropped.append(self._drop(*parts.pop(0)))
        self._query("DELETE FROM hist_batches WHERE at < now() - interval '7 days'", (), fetch=False)
        return dropped

    def _drop(self, day: int, name: str) -> str:
        self._query(f"DROP TABLE {name}", (), fetch=False)  # name comes from pg_class, not from a caller
        self._forget_rollups(day, day + DAY_MS)
        self._days.discard(day)
        return name

    def _forget_rollups(self, start_ms: int | None, end_ms: int) -> None:
        with self._lock:
            try:
                conn = self._connect()
                with conn.transaction():
                    rollups.drop_days(conn, start_ms, end_ms)
            except psycopg.OperationalError as exc:
                self._lost(exc)
                raise HistorianUnavailableError(f"PostgreSQL historian unreachable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
