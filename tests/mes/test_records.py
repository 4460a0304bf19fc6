"""Contextualized records: binding by source time, late data and late context, batched inserts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mes_adapter.context import ContextAssertion, ContextService, ContextStore
from mes_adapter.errors import MesInputError
from mes_adapter.production.records import ContextualRecords, Record, RecordKind, RecordStore
from uns.conventions import Quality

LINE = "acme/plant1/packaging/line2"
MIN = 60_000


@pytest.fixture
def parts(tmp_path: Path) -> tuple[ContextService, RecordStore, ContextualRecords]:
    context = ContextService(ContextStore(tmp_path / "ctx.sqlite"))
    store = RecordStore(tmp_path / "records.sqlite")
    return context, store, ContextualRecords(store, context)


def reading(ts: int, value: float, metric: str = "Filler/Temp", **kw: object) -> Record:
    return Record(line=LINE, cell=kw.pop("cell", "Filler"), metric=metric, value=value,  # type: ignore[arg-type]
                  source_ts_ms=ts, **kw)  # type: ignore[arg-type]


def test_late_replay_lands_in_the_ended_batch(parts) -> None:  # type: ignore[no-untyped-def]
    context, store, records = parts
    context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=0, batch_id="B-1", work_order_id="WO-1"))
    store.add_many([reading(5 * MIN, 20.0)])
    context.assert_context(ContextAssertion(line=LINE, seq=2, since_ms=30 * MIN, batch_id="B-1", ended=True))
    context.assert_context(ContextAssertion(line=LINE, seq=3, since_ms=40 * MIN, batch_id="B-2"))
    store.add_many([reading(45 * MIN, 22.0)])
    # store-and-forward replay of B-1 arrives while B-2 runs, plus a sample from the gap
    assert store.add_many([reading(20 * MIN, 21.0, is_historical=True),
                           reading(35 * MIN, 19.0, is_historical=True)]) == 2
    b1 = records.query_batch(LINE, "B-1")
    assert [(b.record.source_ts_ms, b.batch_id, b.work_order_id) for b in b1] == [
        (5 * MIN, "B-1", "WO-1"), (20 * MIN, "B-1", "WO-1")]
    assert b1[1].record.is_historical
    assert [b.record.value for b in records.query_batch(LINE, "B-2")] == [22.0]
    everything = records.query(LINE, 0, 60 * MIN)
    assert [b.batch_id for b in everything] == ["B-1", "B-1", None, "B-2"]
    assert records.query_batch(LINE, "B-unknown") == []


def test_late_context_rebinds_without_rewrites(parts) -> None:  # type: ignore[no-untyped-def]
    context, store, records = parts
    store.add_many([reading(t * MIN, float(t)) for t in range(10)])
    assert {b.batch_id for b in records.query(LINE, 0, 10 * MIN)} == {None}
    context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=3 * MIN, batch_id="B-7",
                                            phase="mix"))
    bound = records.query(LINE, 0, 10 * MIN)
    assert [b.batch_id for b in bound] == [None] * 3 + ["B-7"] * 7
    assert bound[-1].phase == "mix" and bound[-1].context_seq == 1
    narrowed = records.query_batch(LINE, "B-7", from_ms=5 * MIN, to_ms=7 * MIN)
    assert [b.record.value for b in narrowed] == [5.0, 6.0]


def test_inserts_are_idempotent_and_typed(parts) -> None:  # type: ignore[no-untyped-def]
    _, store, _ = parts
    batch = [reading(1, 1.5), reading(2, "Execute", metric="State", kind=RecordKind.STATE),
             reading(3, None, quality=Quality.BAD), reading(4, [1, 2], metric="Arr"),
             reading(5, True, metric="Alarm/High", kind=RecordKind.ALARM, cell=None)]
    assert store.add_many(batch) == 5
    assert store.add_many(batch) == 0  # replay / birth re-statement of the same source times
    rows = store.query(LINE, 0, 10)
    assert [r.value for r in rows] == [1.5, "Execute", None, [1, 2], True]
    assert rows[2].quality is Quality.BAD and rows[4].cell is None
    assert [r.value for r in store.query(LINE, 0, 10, kind=RecordKind.STATE)] == ["Execute"]
    assert store.last_before(LINE, "Filler", "State", 100).value == "Execute"  # type: ignore[union-attr]
    assert store.last_before(LINE, "Filler", "State", 2) is None
    with pytest.raises(MesInputError):
        store.query(LINE, 10, 0)


def test_thousands_of_rows_in_one_batch(parts) -> None:  # type: ignore[no-untyped-def]
    context, store, records = parts
    context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=10_000, batch_id="B-1"))
    rows = [Record(line=LINE, cell="C", metric=f"Tag{i % 50}", value=i, source_ts_ms=i)
            for i in range(20_000)]
    assert store.add_many(rows) == 20_000
    assert len(records.query_batch(LINE, "B-1", limit=100_000)) == 10_000
    assert len(records.query_batch(LINE, "B-1", limit=7)) == 7
