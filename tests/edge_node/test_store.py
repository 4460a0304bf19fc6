"""The SQLite store-and-forward buffer: values round-trip, order, bounds, bdSeq."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_node.model import MetricUpdate
from edge_node.store import SparkplugStore, StoreError
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import PropertyValue

TYPES = {
    (None, "b"): DataType.Boolean, (None, "i"): DataType.Int32, (None, "u"): DataType.UInt64,
    (None, "f"): DataType.Double, (None, "s"): DataType.String, (None, "y"): DataType.Bytes,
    (None, "a"): DataType.Int16Array, ("D1", "i"): DataType.Int32, ("D2", "i"): DataType.Int32,
}


def datatype_of(device: str | None, name: str) -> DataType:
    return TYPES[(device, name)]


def test_values_round_trip_with_their_python_types(tmp_path: Path) -> None:
    store = SparkplugStore(tmp_path / "s.sqlite")
    updates = [
        MetricUpdate(None, "b", True, 1), MetricUpdate(None, "b", False, 2), MetricUpdate(None, "i", -5, 3),
        MetricUpdate(None, "u", 2**64 - 1, 4), MetricUpdate(None, "f", 1.25, 5), MetricUpdate(None, "s", "x", 6),
        MetricUpdate(None, "y", b"\x00\x01", 7), MetricUpdate(None, "a", [1, -2, 3], 8),
        MetricUpdate(None, "i", None, 9, is_null=True,
                     properties={"Quality": PropertyValue(DataType.Int32, 0)}),
        MetricUpdate("D1", "i", 7, 10),
    ]
    assert store.append(updates, datatype_of) == len(updates)
    back = store.fetch(100)
    assert [(u.device_id, u.name, u.value, u.timestamp) for u in back] == \
        [(u.device_id, u.name, u.value, u.timestamp) for u in updates]
    assert [type(u.value) for u in back[:2]] == [bool, bool]
    assert back[8].is_null and back[8].properties["Quality"].value == 0  # type: ignore[index]
    assert all(u.is_historical and u.seq_id is not None for u in back)


def test_fetch_is_in_source_time_order_after_a_cursor_and_per_device(tmp_path: Path) -> None:
    store = SparkplugStore(tmp_path / "s.sqlite")
    store.append([MetricUpdate("D1", "i", v, ts) for v, ts in ((1, 30), (2, 10), (3, 20))], datatype_of)
    store.append([MetricUpdate("D2", "i", 9, 15)], datatype_of)
    assert [u.value for u in store.fetch(10)] == [2, 9, 3, 1]
    first = store.fetch(2)
    assert [u.value for u in store.fetch(10, after=(first[-1].timestamp, first[-1].seq_id or 0))] == [3, 1]
    assert [u.value for u in store.fetch(10, devices={"D1"})] == [2, 3, 1]
    assert store.fetch(10, devices=set()) == []


def test_delete_uses_ranges_and_keeps_depth(tmp_path: Path) -> None:
    store = SparkplugStore(tmp_path / "s.sqlite")
    store.append([MetricUpdate(None, "i", v, v) for v in range(100)], datatype_of)
    ids = [u.seq_id for u in store.fetch(100)]
    assert store.delete([i for i in ids if i is not None and i % 10 != 3]) == 90
    assert store.depth == store.count() == 10
    assert store.delete(ids) == 10  # twice is harmless
    assert store.depth == 0


@pytest.mark.parametrize("policy", ["drop_oldest", "reject_new"])
def test_bounded_with_a_policy_and_a_counter(tmp_path: Path, policy: str) -> None:
    store = SparkplugStore(tmp_path / "s.sqlite", max_values=10, full_policy=policy)
    store.append([MetricUpdate(None, "i", v, v) for v in range(8)], datatype_of)
    kept = store.append([MetricUpdate(None, "i", v, v) for v in range(8, 13)], datatype_of)
    values = [u.value for u in store.fetch(100)]
    assert store.depth == store.count() == 10
    if policy == "drop_oldest":
        assert kept == 5 and store.dropped == 3 and values == list(range(3, 13))
    else:
        assert kept == 2 and store.rejected == 3 and values == list(range(10))


def test_bdseq_and_buffer_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SparkplugStore(path) as store:
        assert store.load_bd_seq() is None
        store.save_bd_seq(41)
        store.append([MetricUpdate(None, "s", "kept", 1)], datatype_of)
    with SparkplugStore(path, synchronous="NORMAL") as store:
        assert store.load_bd_seq() == 41
        assert store.depth == 1 and store.fetch(1)[0].value == "kept"
        assert store.oldest_ts() == 1


def _limit_pages(store: SparkplugStore, pages: int) -> None:
    """SQLite's own size cap: writes beyond it fail with SQLITE_FULL, exactly as on a full disk."""
    store._db.execute(f"PRAGMA max_page_count={pages}")  # noqa: SLF001 - a real SQLite limit, not a fake


def test_a_full_database_fails_cleanly_and_works_again_once_there_is_room(tmp_path: Path) -> None:
    """Issue 12: a write that fails for lack of space (also a failed COMMIT) leaves no transaction
    open and changes no counter; once space returns, the very same store writes again."""
    store = SparkplugStore(tmp_path / "s.sqlite", max_values=10, full_policy="drop_oldest")
    store.append([MetricUpdate(None, "i", i, i) for i in range(10)], datatype_of)
    used = store._db.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001
    _limit_pages(store, used)
    big = [MetricUpdate(None, "s", "x" * 5000, 100 + i) for i in range(5)]
    with pytest.raises(StoreError, match="cannot write 5 values"):
        store.append(big, datatype_of)
    assert not store._db.in_transaction  # noqa: SLF001
    assert (store.depth, store.dropped, store.written, store.count()) == (10, 0, 10, 10)
    _limit_pages(store, 1_000_000)
    store.probe()
    assert store.append(big, datatype_of) == 5
    store.save_bd_seq(3)
    assert (store.depth, store.dropped, store.count(), store.load_bd_seq()) == (10, 5, 10, 3)
    assert [u.timestamp for u in store.fetch(100)] == [5, 6, 7, 8, 9, 100, 101, 102, 103, 104]
