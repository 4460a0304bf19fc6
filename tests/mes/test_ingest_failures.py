"""Issue 12 defects 4 and 6: a failed write loses nothing, one unstorable value loses nothing else.

"Disk full" here is SQLite's own SQLITE_FULL, produced by capping the file with ``PRAGMA
max_page_count`` on the store's connection (the real error path; the tmpfs version runs in
tests/faults/test_counter_truth.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mes_adapter.oee.compute import Interval
from mes_adapter.production.counters import CounterSample
from mes_adapter.production.ingest import Ingest, Observation
from tests.mes.helpers import LINE, build
from uns.conventions import Quality


def obs(metric: str, value: object, ts: int, **kw: object) -> Observation:
    return Observation(line=LINE, cell=kw.pop("cell", None), metric=metric, value=value,  # type: ignore[arg-type]
                       quality=Quality.GOOD, source_ts_ms=ts, received_ms=kw.pop("received", ts), **kw)  # type: ignore[arg-type]


def fill(conn: sqlite3.Connection) -> None:
    """Cap the database at its current size: the next write that needs a page fails SQLITE_FULL."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages}")


def free(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA max_page_count=1073741823")


def test_disk_full_keeps_every_record_and_count_and_writes_them_when_space_returns(tmp_path: Path) -> None:
    p = build(tmp_path)
    ingest = Ingest(p.config, p.production, p.records)
    ingest.observe(obs("GoodCount", 100, 1_000))
    ingest.observe(obs("GoodCount", 110, 2_000))
    assert ingest.flush() == 2
    conns = [p.production._store._conn, p.records._conn]  # noqa: SLF001 - the store's own connections
    for conn in conns:
        fill(conn)
    # thousands of values while the disk is full: none may be lost
    for i in range(1, 3001):
        ingest.observe(obs("GoodCount", 110 + i, 2_000 + i * 10))
        ingest.observe(obs("Temp", 20.0 + i / 1000, 2_000 + i * 10, cell="Filler"))
    assert ingest.flush() == 0
    assert ingest.failing is not None and "full" in ingest.failing
    assert ingest.write_failures >= 2
    waiting = p.production.backlog  # a few samples fit in the last free page
    assert waiting > 2000 and ingest.pending == 6000 + waiting
    assert p.production.quantities(LINE, [Interval(0, 10**9)]).good == 10 + 3000 - waiting
    for conn in conns:
        free(conn)
    ingest.flush()
    assert ingest.failing is None and ingest.pending == 0
    assert p.production.quantities(LINE, [Interval(0, 10**9)]).good == 3010
    # and each increment sits at its own source time, not lumped at the recovery
    assert p.production.quantities(LINE, [Interval(0, 2_000 + 1500 * 10 + 1)]).good == 1510
    assert len(p.records.query(LINE, 0, 10**9, metric="Temp")) == 3000
    assert len(p.records.query(LINE, 0, 10**9, metric="GoodCount")) == 3002


def test_a_locked_database_is_retried_and_loses_nothing(tmp_path: Path) -> None:
    p = build(tmp_path)
    ingest = Ingest(p.config, p.production, p.records)
    ingest.observe(obs("GoodCount", 5, 1_000))
    ingest.flush()
    store_conn = p.production._store._conn  # noqa: SLF001
    store_conn.execute("PRAGMA busy_timeout=0")
    other = sqlite3.connect(p.config.production_db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        ingest.observe(obs("GoodCount", 9, 2_000))
        ingest.observe(obs("GoodCount", 12, 3_000))
        assert ingest.failing is not None and "locked" in ingest.failing
        assert p.production.backlog == 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    ingest.flush()
    assert ingest.failing is None
    assert p.production.quantities(LINE, [Interval(0, 10**9)]).good == 7


def test_one_out_of_range_timestamp_is_quarantined_and_the_rest_of_the_flush_is_stored(tmp_path: Path) -> None:
    p = build(tmp_path)
    ingest = Ingest(p.config, p.production, p.records)
    ingest.observe(obs("Temp", 20.5, 1_000, cell="Filler"))
    ingest.observe(obs("Speed", 300, 2**63, cell="Filler", received=1_500))
    ingest.observe(obs("State", "Execute", 2_000))
    assert ingest.flush() == 2
    assert p.records.quarantined == 1
    assert [(r.metric, r.value) for r in p.records.query(LINE, 0, 10**9)] == [("Temp", 20.5), ("State", "Execute")]


def test_a_counter_sample_with_time_2_pow_63_is_counted_at_its_receive_time(tmp_path: Path) -> None:
    p = build(tmp_path)
    p.production.observe(LINE, None, "GoodCount", CounterSample(100, 1_000, received_ms=1_000))
    p.production.observe(LINE, None, "GoodCount", CounterSample(120, 2**63, received_ms=2_000))
    p.production.observe(LINE, None, "GoodCount", CounterSample(130, 3_000, received_ms=3_000))
    assert p.production.quantities(LINE, [Interval(0, 2_001)]).good == 20
    assert p.production.quantities(LINE, [Interval(0, 10**9)]).good == 30
    assert p.production.clock_corrected == 1


def test_a_counter_value_sqlite_cannot_hold_is_quarantined_and_spanned(tmp_path: Path) -> None:
    p = build(tmp_path)
    p.production.observe(LINE, None, "GoodCount", CounterSample(100, 1_000))
    p.production.observe(LINE, None, "GoodCount", CounterSample(2**64, 2_000))
    p.production.observe(LINE, None, "GoodCount", CounterSample(130, 3_000))
    assert p.production.quarantined == 1
    assert p.production.quantities(LINE, [Interval(0, 10**9)]).good == 30
