"""Confirmations: deterministic ids, window deltas, partial/final/late, late replay, restarts."""

from __future__ import annotations

from pathlib import Path

from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    ProductionConfirmation,
    canonical_json,
    confirmation_id,
    confirmation_topic,
    plan,
)
from mes_adapter.confirmations.service import confirmation_message
from mes_adapter.context import ContextAssertion
from mes_adapter.oee.compute import Interval
from mes_adapter.production.counters import CounterSample
from mes_adapter.production.quantities import ProductionCounters, ProductionStore, Quantities
from tests.mes.helpers import LINE, MIN, H, Parts, build
from uns.isa95 import NamespaceMapping

T0 = 1_705_471_200_000  # 2024-01-17T06:00:00Z


def start_batch(p: Parts, seq: int = 1, since: int = T0, batch: str = "B-1") -> None:
    p.context.assert_context(ContextAssertion(
        line=LINE, seq=seq, since_ms=since, batch_id=batch, work_order_id="WO-4711",
        operation_id="0010", product_id="SKU-12", target_quantity=10_000))


def end_batch(p: Parts, seq: int, at: int, batch: str = "B-1") -> None:
    p.context.assert_context(ContextAssertion(line=LINE, seq=seq, since_ms=at, batch_id=batch,
                                              ended=True))


def count(p: Parts, metric: str, value: int, ts: int, birth: bool = False, cell: str | None = None) -> None:
    p.production.observe(LINE, cell, metric, CounterSample(value, ts, birth))


def test_ids_are_deterministic_and_distinct() -> None:
    a = confirmation_id(LINE, "B-1", ConfirmationKind.PARTIAL, 0, H)
    assert a == confirmation_id(LINE, "B-1", ConfirmationKind.PARTIAL, 0, H)
    others = {confirmation_id(LINE, "B-2", ConfirmationKind.PARTIAL, 0, H),
              confirmation_id(LINE, "B-1", ConfirmationKind.FINAL, 0, H),
              confirmation_id(LINE, "B-1", ConfirmationKind.PARTIAL, 0, 2 * H),
              confirmation_id(LINE, "B-1", ConfirmationKind.LATE, 0, H, 1)}
    assert a not in others and len(others) == 4


def test_partial_and_final_window_deltas(tmp_path: Path) -> None:
    p = build(tmp_path)
    start_batch(p)
    count(p, "GoodCount", 50_000, T0)  # baseline: the counter's history before the batch
    count(p, "RejectCount", 65_500, T0)
    count(p, "Preforms", 7, T0, cell="Blower")
    count(p, "GoodCount", 51_000, T0 + 30 * MIN)
    count(p, "GoodCount", 52_500, T0 + 90 * MIN)
    count(p, "RejectCount", 64, T0 + 90 * MIN)  # UInt16 rollover: +100
    count(p, "Preforms", 1_607, T0 + 90 * MIN, cell="Blower")
    assert p.confirmations.run_due(T0 + H + 59_999) == []  # grace not over yet
    [first] = p.confirmations.run_due(T0 + H + 60_000)
    assert (first.kind, first.final, first.state) == (ConfirmationKind.PARTIAL, False, "Running")
    assert (first.start_time, first.end_time) == ("2024-01-17T06:00:00Z", "2024-01-17T07:00:00Z")
    assert (first.produced[0].good, first.produced[0].scrap) == (1000, 0)
    assert first.consumed == []  # no consumption counted before 07:00 except the baseline
    end_batch(p, 2, T0 + 100 * MIN)
    assert p.confirmations.run_due(T0 + 100 * MIN + 30_000) == []
    [final] = p.confirmations.run_due(T0 + 101 * MIN)
    assert (final.kind, final.final, final.state) == (ConfirmationKind.FINAL, True, "Completed")
    assert (final.start_time, final.end_time) == ("2024-01-17T07:00:00Z", "2024-01-17T07:40:00Z")
    assert final.produced[0].model_dump() == {"material_id": "SKU-12", "lot_id": "B-1", "uom": "EA",
                                              "good": 1500, "scrap": 100, "rework": 0}
    assert [(c.material_id, c.quantity) for c in final.consumed] == [("RM-PET-500", 1600)]
    assert (final.work_order_id, final.operation_id, final.batch_id) == ("WO-4711", "0010", "B-1")
    assert final.source.evidence_hash.startswith("sha256:")
    assert p.confirmations.run_due(T0 + 200 * MIN) == []  # nothing new
    assert len(p.outbox.entries()) == 2


def test_late_replay_after_final_makes_a_supplement(tmp_path: Path) -> None:
    p = build(tmp_path, partial_interval_s=None)
    start_batch(p)
    count(p, "GoodCount", 100, T0)
    count(p, "GoodCount", 200, T0 + 10 * MIN)
    end_batch(p, 2, T0 + 30 * MIN)
    start_batch(p, seq=3, since=T0 + 40 * MIN, batch="B-2")
    # the edge node lost its connection at 06:10; its live value after reconnecting comes first
    count(p, "GoodCount", 600, T0 + 50 * MIN, birth=True)
    [final_b1] = p.confirmations.run_due(T0 + 32 * MIN)
    assert final_b1.produced[0].good == 100
    # store-and-forward replay: 300 more were made in B-1 (06:10–06:30), 200 in the gap and B-2
    count(p, "GoodCount", 400, T0 + 25 * MIN)
    count(p, "GoodCount", 500, T0 + 45 * MIN)
    new = p.confirmations.run_due(T0 + 60 * MIN)
    [late] = [c for c in new if c.batch_id == "B-1"]
    assert (late.kind, late.supplement, late.final, late.produced[0].good) == (
        ConfirmationKind.LATE, 1, True, 200)
    assert late.confirmation_id != final_b1.confirmation_id
    # B-1 total confirmed = what was made inside its window, nothing of B-2's
    assert sum(c.quantities.good for c in p.outbox.confirmed_windows(LINE, "B-1")) == 300
    end_batch(p, 4, T0 + 70 * MIN, batch="B-2")
    [final_b2] = p.confirmations.run_due(T0 + 72 * MIN)
    assert final_b2.produced[0].good == 200  # 400→500 at 06:45 and 500→600 at 06:50
    assert p.confirmations.run_due(T0 + 90 * MIN) == []


def test_restart_rebuilds_the_same_ids_and_nothing_twice(tmp_path: Path) -> None:
    p = build(tmp_path)
    start_batch(p)
    count(p, "GoodCount", 0, T0)
    count(p, "GoodCount", 10, T0 + 30 * MIN)
    first = p.confirmations.run_due(T0 + 2 * H + MIN)
    again = build(tmp_path)  # new objects on the same files
    count(again, "GoodCount", 10, T0 + 30 * MIN)  # a re-delivered sample changes nothing
    assert again.confirmations.run_due(T0 + 2 * H + MIN) == []
    end_batch(again, 2, T0 + 150 * MIN)
    [final] = again.confirmations.run_due(T0 + 3 * H)
    assert [c.confirmation_id for c in first] == [
        confirmation_id(LINE, "B-1", ConfirmationKind.PARTIAL, T0, T0 + H),
        confirmation_id(LINE, "B-1", ConfirmationKind.PARTIAL, T0 + H, T0 + 2 * H)]
    assert final.confirmation_id == confirmation_id(LINE, "B-1", ConfirmationKind.FINAL,
                                                    T0 + 2 * H, T0 + 150 * MIN)
    # counter tracker state came back from SQLite: the next increment is a delta, not a baseline
    count(again, "GoodCount", 15, T0 + 31 * MIN)
    assert again.production.quantities(LINE, [Interval(T0, T0 + H)]).good == 15


def test_plan_is_pure_and_ordered(tmp_path: Path) -> None:
    p = build(tmp_path)
    start_batch(p)
    end_batch(p, 2, T0 + 150 * MIN)
    batch = p.context.batch_window(LINE, "B-1")
    assert batch is not None
    planned = plan(batch, T0 + 10 * H, H, 60_000, [])
    assert [(x.kind, x.start_ms - T0, x.end_ms - T0) for x in planned] == [
        (ConfirmationKind.PARTIAL, 0, H), (ConfirmationKind.PARTIAL, H, 2 * H),
        (ConfirmationKind.FINAL, 2 * H, 150 * MIN)]
    assert plan(batch, T0 + 10 * H, None, 0, []) == [planned[-1].__class__(
        batch, ConfirmationKind.FINAL, T0, T0 + 150 * MIN)]
    assert plan(batch, T0 + 10 * H, 150 * MIN, 0, [])[0].kind is ConfirmationKind.FINAL


def test_json_shape_and_topic(tmp_path: Path) -> None:
    p = build(tmp_path, partial_interval_s=None)
    start_batch(p)
    end_batch(p, 2, T0 + H)
    [conf] = p.confirmations.run_due(T0 + 2 * H)
    body = canonical_json(conf)
    assert ProductionConfirmation.model_validate_json(body) == conf
    topic, payload = confirmation_message(NamespaceMapping(mirror_root="uns"), conf)
    assert topic == "uns/acme/plant1/packaging/line2/_mes/confirmation" and payload == body
    assert confirmation_topic(NamespaceMapping(), LINE) == "acme/plant1/packaging/line2/_mes/confirmation"
    data = conf.model_dump(mode="json")
    for key in ("type", "schema_version", "confirmation_id", "work_order_id", "operation_id",
                "batch_id", "equipment_path", "start_time", "end_time", "state", "final",
                "produced", "consumed", "data", "source"):
        assert key in data
    assert data["type"] == "production_confirmation" and data["source"]["counter_window"] == [
        "2024-01-17T06:00:00Z", "2024-01-17T07:00:00Z"]


def test_quantities_from_total_and_reject(tmp_path: Path) -> None:
    from mes_adapter.config.mes import CounterSignal, LineConfig, MesConfig
    from mes_adapter.production.counters import CounterRole

    config = MesConfig(data_dir=tmp_path, lines=[LineConfig(line=LINE, counters=[
        CounterSignal(metric="Total", role=CounterRole.TOTAL),
        CounterSignal(metric="Reject", role=CounterRole.REJECT)])])
    production = ProductionCounters(config, ProductionStore(config.production_db))
    for metric, values in (("Total", (0, 120)), ("Reject", (0, 20))):
        for i, v in enumerate(values):
            production.observe(LINE, None, metric, CounterSample(v, i))
    assert production.observe(LINE, None, "NotACounter", CounterSample(5, 1)) == []
    assert production.quantities(LINE, [Interval(0, 10)]) == Quantities(100, 20, {})
