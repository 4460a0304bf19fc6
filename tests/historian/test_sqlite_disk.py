"""The embedded historian's footprint and its behaviour on a full disk (SQLite backend only).

A plant's steady rate is many small batches: each rewrites whole pages, and a write-ahead log
checkpointed only every 64 MiB held copy after copy of the same pages (on the adapter's 8 MiB test
disk it filled the disk within a minute and kept it full). At a steady rate the log is checkpointed
every 1,000 pages and shrinks back; a full disk raises the disk's own error (not "cannot rollback"),
and once space returns the same store writes again with nothing lost or doubled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from historian import Quality, Sample, SqliteHistorian, TagId
from historian.partitions import DAY_MS
from historian.sqlite.schema import CHECKPOINT_PAGES_STEADY
from tests.support.disk import fill, small_tmpfs
from uns.sqlite_tx import is_disk_full

DAY0 = 20_000 * DAY_MS
TAGS = [TagId("g", "e", "d", f"m{i:03d}", f"a/b/c/d/m{i:03d}") for i in range(60)]


def _batch(k: int) -> list[Sample]:
    ts = DAY0 + k * 1000
    return [Sample(tag, ts, ts + 5, float(k), 10, Quality.GOOD, 0, False) for tag in TAGS]


def _wal(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("day-*.sqlite-wal"))


def test_small_batches_keep_the_write_ahead_log_small(tmp_path: Path) -> None:
    store = SqliteHistorian(tmp_path / "h")
    largest = 0
    try:
        for k in range(300):
            store.append(_batch(k))
            largest = max(largest, _wal(tmp_path / "h"))
        assert store.count() == 300 * len(TAGS)
        assert [s.value for s in store.raw(TAGS[7], DAY0, DAY0 + 300_000)] == [float(k) for k in range(300)]
    finally:
        store.close()
    # one checkpoint interval plus the batch that crossed it (the old setting let it reach 64 MiB)
    assert largest <= (CHECKPOINT_PAGES_STEADY + 200) * 4096 + 32 * 1024, largest


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_raises_its_own_error_and_the_store_writes_again_once_space_returns(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        store = SqliteHistorian(disk / "h")
        try:
            store.append(_batch(0))
            filler = fill(disk)
            refused = 0
            k = 1
            while refused == 0 and k < 200:  # the next page the log needs finds no room
                try:
                    store.append(_batch(k))
                    k += 1
                except Exception as exc:  # noqa: BLE001 - what it is, is the assertion
                    assert is_disk_full(exc), repr(exc)  # never "cannot rollback - no transaction is active"
                    refused = k
            assert refused, "the disk never filled"
            filler.unlink()
            for j in range(refused, refused + 20):  # the refused batch again, then more
                store.append(_batch(j))
            values = [s.value for s in store.raw(TAGS[0], DAY0, DAY0 + 1_000_000)]
            assert values == [float(j) for j in range(refused + 20)]  # nothing lost, nothing doubled
        finally:
            store.close()


def test_a_batch_across_midnight_retried_after_its_second_day_failed_is_stored_once(tmp_path: Path) -> None:
    """One transaction per day file: day 1 commits, day 2 fails (its file cannot be opened here, as
    on a full disk at midnight); the writer retries the same batch, and day 1 is not written twice."""
    store = SqliteHistorian(tmp_path / "h")
    try:
        batch = [Sample(TAGS[0], DAY0 + DAY_MS - 1000, DAY0 + DAY_MS - 995, 1.0, 10, Quality.GOOD, 0, False),
                 Sample(TAGS[0], DAY0 + DAY_MS + 1000, DAY0 + DAY_MS + 1005, 2.0, 10, Quality.GOOD, 0, False)]
        blocker = store._path(DAY0 + DAY_MS)
        blocker.mkdir()  # SQLite cannot open a directory: the second day's write fails
        with pytest.raises(Exception) as refused:  # noqa: PT011 - which error is the machine's
            store.append(batch)
        assert "unable to open" in str(refused.value)
        assert [s.value for s in store.raw(TAGS[0], DAY0, DAY0 + DAY_MS)] == [1.0]  # day 1 committed
        blocker.rmdir()
        store.append(batch)  # the writer's retry: the very same batch
        assert [s.value for s in store.raw(TAGS[0], DAY0, DAY0 + 2 * DAY_MS)] == [1.0, 2.0]
        store.append(list(batch))  # another batch with the same values is new data: stored again
        assert [s.value for s in store.raw(TAGS[0], DAY0, DAY0 + 2 * DAY_MS)] == [1.0, 1.0, 2.0, 2.0]
    finally:
        store.close()
