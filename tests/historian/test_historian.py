"""The historian through its storage port, the same tests on embedded SQLite and on a real PostgreSQL.

Expected aggregates are computed here, independently of ``historian.rollup``, from the values the test
wrote; every assertion is on exact values and counts.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3

import psycopg
import pytest

from historian import (
    HistorianStore,
    HistorianWriter,
    Quality,
    QueryError,
    Sample,
    SchemaVersionError,
    TagId,
    UnknownTagError,
    ValueEncodingError,
)
from historian.partitions import DAY_MS, HOUR_MS, MINUTE_MS

from .conftest import Backend

DAY0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
TEMP = TagId("Plant1", "Line1Edge", "Filler", "Temperature", "acme/plant1/packaging/line1/filler/temperature")
RUN = TagId("Plant1", "Line1Edge", "Filler", "Running", "acme/plant1/packaging/line1/filler/running")
NODE = TagId("Plant1", "Line1Edge", "", "Node Control/Rebirth")

G, U, B, S = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.STALE


def sample(tag: TagId, ts: int, value, datatype: int = 10, quality: Quality = G, *, rx: int = 7, sc: int = 0,
           hist: bool = False) -> Sample:
    return Sample(tag, ts, ts + rx, value, datatype, quality, sc, hist)


# -- exact values --------------------------------------------------------------------------------------


def test_values_come_back_exactly_as_the_plant_sent_them(store: HistorianStore) -> None:
    written = [
        sample(TEMP, DAY0 + 1_000, 72.25, rx=3),
        sample(TEMP, DAY0 + 2_000, 72.5, U, sc=0x40920000, rx=250),
        sample(TEMP, DAY0 + 3_000, None, 10, B, sc=0x80050000),
        sample(TEMP, DAY0 + 4_000, float("inf"), hist=True, rx=5),
        sample(TEMP, DAY0 + 4_000, -0.5, 9, rx=9),  # same source ms: both kept, in receipt order
        sample(RUN, DAY0 + 1_500, True, 11),
        sample(RUN, DAY0 + 2_500, False, 11, S),
        sample(NODE, DAY0 + 1_000, 2**64 - 1, 8),  # UInt64 beyond a signed 64-bit column
        sample(NODE, DAY0 + 1_001, -(2**63), 4),
        sample(NODE, DAY0 + 1_002, "line 1 ready", 12),
        sample(NODE, DAY0 + 1_003, 1_764_547_200_123, 13),
    ]
    store.append(written[:5])
    store.append(written[5:])
    assert store.raw(TEMP, DAY0, DAY0 + DAY_MS) == written[:5]
    assert store.raw(RUN, DAY0, DAY0 + DAY_MS) == written[5:7]
    assert store.raw(NODE, DAY0, DAY0 + DAY_MS) == written[7:]
    got = store.raw(RUN, DAY0, DAY0 + DAY_MS)
    assert [type(s.value) for s in got] == [bool, bool]
    assert store.raw(TEMP, DAY0 + 2_000, DAY0 + 4_000) == written[1:3]  # half-open range
    assert store.count() == 11


def test_nan_is_kept_as_nan(store: HistorianStore) -> None:
    store.append([sample(TEMP, DAY0, float("nan"))])
    (got,) = store.raw(TEMP, DAY0, DAY0 + 1)
    assert math.isnan(got.value)


def test_values_across_day_partitions_read_back_in_order(store: HistorianStore) -> None:
    written = [sample(TEMP, DAY0 + d * DAY_MS + off, float(d * 10 + i)) for d in range(3)
               for i, off in enumerate((0, DAY_MS - 1))]
    store.append(list(reversed(written)))
    assert store.raw(TEMP, DAY0, DAY0 + 3 * DAY_MS) == written
    assert store.raw(TEMP, DAY0 + DAY_MS - 1, DAY0 + 2 * DAY_MS + 1) == written[1:5]


# -- bad queries and bad input ----------------------------------------------------------------------------


def test_bad_queries_are_refused_with_a_reason(store: HistorianStore) -> None:
    store.append([sample(TEMP, DAY0 + i, float(i)) for i in range(10)])
    with pytest.raises(UnknownTagError, match="no value was ever stored"):
        store.raw(RUN, DAY0, DAY0 + 10)
    with pytest.raises(QueryError, match="not after start"):
        store.raw(TEMP, DAY0 + 10, DAY0)
    with pytest.raises(QueryError, match="multiples of the interval"):
        store.aggregates(TEMP, DAY0 + 1, DAY0 + MINUTE_MS, MINUTE_MS)
    with pytest.raises(QueryError, match="positive"):
        store.aggregates(TEMP, DAY0, DAY0 + MINUTE_MS, 0)
    with pytest.raises(QueryError, match="more than 5 values"):
        store.raw(TEMP, DAY0, DAY0 + 10, max_points=5)
    assert len(store.raw(TEMP, DAY0, DAY0 + 10, max_points=10)) == 10


def test_a_value_of_an_unknown_type_refuses_the_batch_and_keeps_what_was_stored(store: HistorianStore) -> None:
    store.append([sample(TEMP, DAY0, 1.0)])
    with pytest.raises(ValueEncodingError, match="got bytes"):
        store.append([sample(TEMP, DAY0 + 1, 2.0), sample(TEMP, DAY0 + 2, b"\x00", 17)])
    assert store.raw(TEMP, DAY0, DAY0 + 10) == [sample(TEMP, DAY0, 1.0)]


# -- aggregates -----------------------------------------------------------------------------------------


def expected_aggregates(points: list[Sample], start: int, end: int, interval: int) -> list[tuple]:
    """Straightforward reference: each value holds until the tag's next sample or the interval's end."""
    out = []
    for b0 in range(start, end, interval):
        inside = sorted((p for p in points if b0 <= p.source_ms < b0 + interval), key=lambda p: p.source_ms)
        if not inside:
            continue
        usable = [p for p in inside if p.quality in (G, U) and p.value is not None]
        nums = [float(p.value) for p in usable if not isinstance(p.value, str)]
        integral = weight = 0.0
        for i, p in enumerate(inside):
            until = inside[i + 1].source_ms if i + 1 < len(inside) else b0 + interval
            if p in usable and not isinstance(p.value, str):
                integral += float(p.value) * (until - p.source_ms)
                weight += until - p.source_ms
        out.append((b0, b0 + interval, len(usable), min(nums, default=None), max(nums, default=None),
                    usable[0].value if usable else None, usable[-1].value if usable else None,
                    integral / weight if weight else None, len(inside)))
    return out


def as_tuples(aggs) -> list[tuple]:
    return [(a.start_ms, a.end_ms, a.count, a.min, a.max, a.first, a.last, a.twa, a.samples) for a in aggs]


def irregular_series() -> list[Sample]:
    """Three hours of a temperature with uneven spacing, an UNCERTAIN run, BAD and STALE holes."""
    points, ts = [], DAY0
    for i in range(700):
        ts += 7_000 + (i * 4_357) % 23_000  # 7..30 s apart
        quality = B if i % 97 == 5 else S if i % 131 == 7 else U if i % 11 == 3 else G
        value = None if quality is B else round(60 + 15 * math.sin(i / 9) + (i % 7) * 0.25, 2)
        points.append(sample(TEMP, ts, value, quality=quality))
    return points


@pytest.mark.parametrize("interval", [10_000, MINUTE_MS, 5 * MINUTE_MS, HOUR_MS, 2 * HOUR_MS])
def test_aggregates_equal_values_computed_from_what_was_written(store: HistorianStore, interval: int) -> None:
    points = irregular_series()
    assert points[-1].source_ms < DAY0 + 4 * HOUR_MS
    batches = [points[i:i + 53] for i in range(0, len(points), 53)]
    late = batches.pop(4)  # arrives last: lands inside buckets already rolled up
    for batch in [*batches, late]:
        store.append(batch)
    got = as_tuples(store.aggregates(TEMP, DAY0, DAY0 + 4 * HOUR_MS, interval))
    want = expected_aggregates(points, DAY0, DAY0 + 4 * HOUR_MS, interval)
    assert [g[:7] + g[8:] for g in got] == [w[:7] + w[8:] for w in want]
    assert [g[7] for g in got] == [None if w[7] is None else pytest.approx(w[7], rel=1e-12) for w in want]
    assert sum(g[8] for g in got) == 700


def test_booleans_average_to_the_fraction_of_time_true_and_text_counts_without_numbers(store: HistorianStore) -> None:
    store.append([sample(RUN, DAY0, True, 11), sample(RUN, DAY0 + 45_000, False, 11),
                  sample(NODE, DAY0 + 1_000, "a", 12), sample(NODE, DAY0 + 2_000, "b", 12)])
    (run,) = store.aggregates(RUN, DAY0, DAY0 + MINUTE_MS, MINUTE_MS)
    assert (run.count, run.min, run.max, run.first, run.last, run.twa) == (2, 0.0, 1.0, True, False, 0.75)
    (node,) = store.aggregates(NODE, DAY0, DAY0 + MINUTE_MS, MINUTE_MS)
    assert (node.count, node.min, node.max, node.first, node.last, node.twa) == (2, None, None, "a", "b", None)


# -- as of and gaps -------------------------------------------------------------------------------------


def test_as_of_answers_the_last_value_at_or_before_the_time_across_days(store: HistorianStore) -> None:
    a, b = sample(TEMP, DAY0 + 5_000, 1.0), sample(TEMP, DAY0 + 9_000, 2.0, quality=B)
    store.append([a, b])
    assert store.as_of(TEMP, DAY0 + 4_999) is None
    assert store.as_of(TEMP, DAY0 + 5_000) == a
    assert store.as_of(TEMP, DAY0 + 8_999) == a
    assert store.as_of(TEMP, DAY0 + 3 * DAY_MS) == b  # two empty days later: still the last one known


def test_gaps_where_quality_was_bad_or_the_node_dead(store: HistorianStore) -> None:
    qualities = [G, B, B, G, U, S, S, G, G, B]
    store.append([sample(TEMP, DAY0 + i * 1_000, float(i), quality=q) for i, q in enumerate(qualities)])
    got = [(g.start_ms - DAY0, None if g.end_ms is None else g.end_ms - DAY0, g.quality)
           for g in store.gaps(TEMP, DAY0, DAY0 + MINUTE_MS)]
    assert got == [(1_000, 3_000, B), (5_000, 7_000, S), (9_000, None, B)]
    # a range that starts inside a gap reports it from when it opened
    inside = store.gaps(TEMP, DAY0 + 6_000, DAY0 + 8_000)
    assert [(g.start_ms - DAY0, g.end_ms - DAY0, g.quality) for g in inside] == [(5_000, 7_000, S)]


# -- retention ------------------------------------------------------------------------------------------


def five_days() -> list[Sample]:
    return [sample(TEMP, DAY0 + d * DAY_MS + h * HOUR_MS, float(d * 100 + h)) for d in range(5) for h in (0, 12, 23)]


def test_retention_by_age_drops_exactly_the_days_outside_the_window(backend: Backend) -> None:
    store = backend.open(max_age_ms=2 * DAY_MS)
    written = five_days()
    store.append(written)
    now = DAY0 + 4 * DAY_MS + 23 * HOUR_MS  # window starts at day 2, 23:00: day 2 keeps a value inside it
    dropped = store.enforce_retention(now)
    assert len(dropped) == 2  # days 0 and 1, whose last millisecond is older than the window
    assert store.raw(TEMP, DAY0, DAY0 + 5 * DAY_MS) == written[6:]
    assert store.count() == 9
    assert store.enforce_retention(now) == []
    assert store.as_of(TEMP, DAY0 + DAY_MS + 1) is None
    # the dropped days' rollups went with them; the kept days' are whole
    hours = store.aggregates(TEMP, DAY0, DAY0 + 5 * DAY_MS, HOUR_MS)
    assert [(a.start_ms, a.first) for a in hours] == [(s.source_ms, s.value) for s in written[6:]]


def test_retention_by_size_drops_the_oldest_days_and_never_the_newest(backend: Backend) -> None:
    store = backend.open(max_bytes=1)
    written = five_days()
    store.append(written)
    assert len(store.enforce_retention(DAY0)) == 4
    assert store.raw(TEMP, DAY0, DAY0 + 5 * DAY_MS) == written[12:]
    assert store.count() == 3


# -- schema version ------------------------------------------------------------------------------------


def _set_version(backend: Backend, version: str) -> None:
    if backend.name == "sqlite":
        with sqlite3.connect(backend.tmp_path / "history" / "historian.sqlite") as conn:
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    else:
        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            conn.execute("UPDATE hist_meta SET value=%s WHERE key='schema_version'", (version,))


def test_a_v1_store_reopens_with_its_data_and_other_versions_are_refused(backend: Backend) -> None:
    first = backend.open()
    first.append([sample(TEMP, DAY0, 1.5)])
    first.close()
    again = backend.open()
    assert again.raw(TEMP, DAY0, DAY0 + 1) == [sample(TEMP, DAY0, 1.5)]
    again.close()
    _set_version(backend, "99")
    with pytest.raises(SchemaVersionError, match="version 99, newer than this uns-hub reads"):
        backend.open()
    _set_version(backend, "0")
    with pytest.raises(SchemaVersionError, match="no migration from version 0 to 1"):
        backend.open()


def test_a_migration_step_runs_once_and_records_the_new_version(backend: Backend) -> None:
    backend.open().close()
    ran: list[int] = []
    if backend.name == "sqlite":
        from historian.sqlite.schema import open_catalog

        path = str(backend.tmp_path / "history" / "historian.sqlite")

        def step(conn) -> None:
            ran.append(1)
            conn.execute("ALTER TABLE tags ADD COLUMN unit TEXT")

        open_catalog(path, migrations={1: step}, target=2).close()
        open_catalog(path, migrations={1: step}, target=2).close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
            assert "unit" in [r[1] for r in conn.execute("PRAGMA table_info(tags)")]
        with pytest.raises(SchemaVersionError, match="version 2, newer"):
            open_catalog(path)
    else:
        from historian.postgres.schema import prepare

        def step(conn) -> None:
            ran.append(1)
            conn.execute("ALTER TABLE hist_tags ADD COLUMN unit text")

        with psycopg.connect(backend.dsn, autocommit=True) as conn:
            assert prepare(conn, migrations={2: step}, target=3) == "native"
            prepare(conn, migrations={2: step}, target=3)
            assert conn.execute("SELECT value FROM hist_meta WHERE key='schema_version'").fetchone() == ("3",)
            assert conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'hist_tags' "
                                "AND column_name = 'unit'").fetchall() == [("unit",)]
            with pytest.raises(SchemaVersionError, match="version 3, newer"):
                prepare(conn)
    assert ran == [1]


def test_a_version_1_postgres_historian_gets_its_rollups_built_from_its_values_on_start(backend: Backend) -> None:
    """Schema version 1 had no rollup tables: the step to 2 builds them from the stored values."""
    if backend.name != "postgres":
        pytest.skip("the embedded store has had its rollups since version 1")
    points = irregular_series()
    first = backend.open()
    first.append(points)
    first.close()
    with psycopg.connect(backend.dsn, autocommit=True) as conn:  # make it what version 1 wrote
        conn.execute("DROP TABLE hist_minutes, hist_hours")
        conn.execute("UPDATE hist_meta SET value = '1' WHERE key = 'schema_version'")
    again = backend.open()
    with psycopg.connect(backend.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM hist_meta WHERE key = 'schema_version'").fetchone() == ("2",)
    for interval in (MINUTE_MS, HOUR_MS):
        got = as_tuples(again.aggregates(TEMP, DAY0, DAY0 + 4 * HOUR_MS, interval))
        want = expected_aggregates(points, DAY0, DAY0 + 4 * HOUR_MS, interval)
        assert [g[:7] + g[8:] for g in got] == [w[:7] + w[8:] for w in want]
        assert [g[7] for g in got] == [None if w[7] is None else pytest.approx(w[7], rel=1e-12) for w in want]


def test_aggregates_of_several_tags_in_one_read_equal_each_tag_alone(store: HistorianStore) -> None:
    store.append(irregular_series() + [sample(RUN, DAY0 + i * 45_000, i % 3 == 0, datatype=11) for i in range(300)])
    for interval in (10_000, MINUTE_MS, HOUR_MS):
        many = store.aggregates_many([TEMP, RUN], DAY0, DAY0 + 4 * HOUR_MS, interval)
        assert many == {tag: store.aggregates(tag, DAY0, DAY0 + 4 * HOUR_MS, interval) for tag in (TEMP, RUN)}
        assert sum(a.samples for a in many[RUN]) == 300
    with pytest.raises(UnknownTagError):
        store.aggregates_many([TEMP, NODE], DAY0, DAY0 + HOUR_MS, HOUR_MS)


# -- back-pressure --------------------------------------------------------------------------------------


async def test_the_writer_makes_put_wait_when_full_and_drops_nothing(store: HistorianStore) -> None:
    writer = HistorianWriter(store, max_batches=2)
    batches = [[sample(TEMP, DAY0 + b * 100 + i, float(b * 100 + i)) for i in range(100)] for b in range(3)]
    await writer.put(batches[0])
    await writer.put(batches[1])
    third = asyncio.create_task(writer.put(batches[2]))
    done, _ = await asyncio.wait({third}, timeout=0.3)
    assert not done, "a full queue must make put wait, not drop or overflow"
    writer.start()
    await third
    await writer.stop()
    assert store.raw(TEMP, DAY0, DAY0 + 1_000) == [s for b in batches for s in b]
    assert writer.written == 300


# -- PostgreSQL outages: the on-disk buffer ----------------------------------------------------------------

postgres_only = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def numbered_batches(n: int, size: int) -> list[list[Sample]]:
    return [[sample(TEMP, DAY0 + (b * size + i) * 10, float(b * size + i)) for i in range(size)] for b in range(n)]


@postgres_only
def test_a_postgres_crash_mid_ingest_loses_and_doubles_nothing(backend: Backend) -> None:
    import threading

    store = backend.open()
    batches = numbered_batches(60, 500)
    done = threading.Semaphore(0)
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            for batch in batches:
                store.append(batch)
                done.release()
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
            done.release()

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        for _ in range(10):
            done.acquire()
        backend.server.crash()  # immediate shutdown while the ingest thread keeps appending
        for _ in range(20):
            done.acquire()
        assert store.buffered() > 0, "batches appended while PostgreSQL was down wait in the on-disk buffer"
    finally:
        if backend.server.proc is None:
            backend.server.start()
    thread.join(timeout=120)
    assert failures == []
    assert store.flush() == 0
    assert store.count() == 30_000
    assert store.raw(TEMP, DAY0, DAY0 + DAY_MS) == [s for b in batches for s in b]


@postgres_only
def test_a_batch_committed_but_not_acknowledged_is_not_written_twice(backend: Backend) -> None:
    from historian.postgres.spool import encode

    store = backend.open()
    (batch,) = numbered_batches(1, 100)
    store.append(batch)
    with psycopg.connect(backend.dsn) as conn:
        (batch_id,) = conn.execute("SELECT id FROM hist_batches").fetchone()
    store.spool.put(batch_id, encode(batch))  # as if the connection dropped just after the commit
    assert store.flush() == 0
    assert store.count() == 100
    assert store.raw(TEMP, DAY0, DAY0 + DAY_MS) == batch


@postgres_only
def test_a_full_buffer_refuses_the_batch_and_keeps_everything_taken(backend: Backend) -> None:
    from historian import HistorianUnavailableError

    store = backend.open(max_buffer_bytes=1_000, buffer_wait_s=0.2)
    first, second, third = numbered_batches(3, 50)
    store.append(first)
    backend.server.crash()
    try:
        store.append(second)  # an empty buffer always takes one batch
        with pytest.raises(HistorianUnavailableError, match="on-disk buffer is full"):
            store.append(third)
        assert store.buffered() == 1
    finally:
        backend.server.start()
    store.append(third)  # the caller still held it: now it goes in, behind the buffered one
    assert store.buffered() == 0
    assert store.raw(TEMP, DAY0, DAY0 + DAY_MS) == first + second + third


@postgres_only
def test_the_buffer_survives_a_restart_of_the_historian_itself(backend: Backend) -> None:
    store = backend.open()
    batches = numbered_batches(4, 200)
    store.append(batches[0])
    backend.server.crash()
    try:
        for batch in batches[1:]:
            store.append(batch)
        assert store.buffered() == 3
        store.close()
    finally:
        backend.server.start()
    reopened = backend.open()  # writes the buffer out on start
    assert reopened.buffered() == 0
    assert reopened.count() == 800
    assert reopened.raw(TEMP, DAY0, DAY0 + DAY_MS) == [s for b in batches for s in b]


@postgres_only
def test_a_string_with_nul_is_refused_before_the_copy_and_nothing_of_the_batch_is_stored(backend: Backend) -> None:
    store = backend.open()
    store.append([sample(NODE, DAY0, "ok", 12)])
    with pytest.raises(ValueEncodingError, match="NUL character"):
        store.append([sample(NODE, DAY0 + 1, "fine", 12), sample(NODE, DAY0 + 2, "a\x00b", 12)])
    assert store.raw(NODE, DAY0, DAY0 + 10) == [sample(NODE, DAY0, "ok", 12)]
    assert store.buffered() == 0


async def test_the_writer_reports_the_store_error_and_keeps_the_batches_behind_it(store: HistorianStore) -> None:
    writer = HistorianWriter(store, max_batches=8, batch_max=1)
    good = [sample(TEMP, DAY0, 1.0)]
    await writer.put(good)
    await writer.put([sample(TEMP, DAY0 + 1, b"\x01", 17)])
    await writer.put([sample(TEMP, DAY0 + 2, 3.0)])
    writer.start()
    with pytest.raises(ValueEncodingError, match="got bytes"):
        await writer.drain()
    assert store.raw(TEMP, DAY0, DAY0 + 10) == good
    assert writer.queued() == 1  # the batch behind the bad one is still queued, not lost


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # day files are the embedded store's
def test_a_day_file_of_another_schema_version_is_refused_by_the_embedded_store(backend: Backend) -> None:
    store = backend.open()
    store.append([sample(TEMP, DAY0, 1.0)])
    store.close()
    (day_file,) = (backend.tmp_path / "history").glob("day-*.sqlite")
    with sqlite3.connect(day_file) as conn:
        conn.execute("PRAGMA user_version=7")
    reopened = backend.open()
    with pytest.raises(SchemaVersionError, match="day-20251201.sqlite has historian schema version 7, newer"):
        reopened.raw(TEMP, DAY0, DAY0 + 1)


class _DiskFullTwice:
    """The real store behind a disk that is full for the first two appends (what SQLite raises then)."""

    def __init__(self, store: HistorianStore) -> None:
        self.store = store
        self.failures = 2

    def append(self, batch: list) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")
        self.store.append(batch)


async def test_the_writer_keeps_a_batch_the_disk_refused_and_writes_it_once_space_returns(
        store: HistorianStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk is the machine's fault, not the batch's: the writer keeps the batch and tries again
    (an adapter whose historian gave up would hold the host back for good), and nothing is doubled."""
    import historian.writer as writer_module

    monkeypatch.setattr(writer_module, "_RETRY_MIN_S", 0.01)
    writer = HistorianWriter(_DiskFullTwice(store), max_batches=8)  # type: ignore[arg-type]
    batch = [sample(TEMP, DAY0, 1.0), sample(TEMP, DAY0 + 1, 2.0)]
    await writer.put(batch)
    writer.start()
    await asyncio.wait_for(writer.drain(), 10)
    assert (writer.retries, writer.written) == (2, 2)
    assert store.raw(TEMP, DAY0, DAY0 + 10) == batch
    await writer.stop()
