"""Genealogy (issue 19 item 4): lot assertions, their refusals, and trace queries over a known graph.

The plant story: batch B1 makes dough from flour and sugar; the dough lot is split in two; B3 and
B4 each make a finished lot from one half (B4 adds a wrapper lot); the two finished lots are merged
onto one pallet. B2 used the same flour lot for something else. A recall of the flour must reach
the pallet and B2's lot; the pallet must trace back to exactly flour, sugar and wrapper.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from mes_adapter.genealogy import (
    Consumption,
    GenealogyError,
    GenealogyService,
    GenealogyStore,
    LotLink,
    ProducedLot,
    Trace,
)
from mes_adapter.genealogy.service import Outcome
from mes_adapter.genealogy.store import SCHEMA_VERSION
from tests.mes.helpers import LINE
from uns.sqlite_schema import SchemaVersionError

OTHER = "acme/plant1/packaging/line3"


def used(batch: str, lot: str, material: str, quantity: float, uom: str = "kg", line: str = LINE) -> Consumption:
    return Consumption(line=line, batch_id=batch, lot_id=lot, material_id=material, quantity=quantity, uom=uom)


def made(batch: str, lot: str, material: str, quantity: float, uom: str = "kg", line: str = LINE) -> ProducedLot:
    return ProducedLot(line=line, batch_id=batch, lot_id=lot, material_id=material, quantity=quantity, uom=uom)


def q(lot: str, quantity: float, uom: str = "kg") -> dict:
    return {"lot_id": lot, "quantity": quantity, "uom": uom}


def pairs(trace: Trace) -> list[tuple[str, str]]:
    return [(b.line, b.batch_id) for b in trace.batches]


@pytest.fixture
def genealogy(tmp_path: Path) -> GenealogyService:
    service = GenealogyService(GenealogyStore(tmp_path / "genealogy.sqlite"), clock=lambda: 1_000)
    steps = [
        service.consume(used("B1", "FLOUR-1", "RM-FLOUR", 5.0), "op"),
        service.consume(used("B1", "SUGAR-7", "RM-SUGAR", 2.0), "op"),
        service.consume(used("B2", "FLOUR-1", "RM-FLOUR", 3.0, line=OTHER), "op"),
        service.produce(made("B1", "DOUGH-1", "SF-DOUGH", 100.0), "op"),
        service.link(LotLink.model_validate({"kind": "split", "sources": [q("DOUGH-1", 100)],
                                             "targets": [q("DOUGH-1a", 60), q("DOUGH-1b", 40)]}), "op"),
        service.consume(used("B3", "DOUGH-1a", "SF-DOUGH", 60.0), "op"),
        service.produce(made("B3", "FIN-3", "SKU-12", 600, "EA"), "op"),
        service.consume(used("B4", "DOUGH-1b", "SF-DOUGH", 40.0), "op"),
        service.consume(used("B4", "WRAP-2", "PK-WRAP", 400, "EA"), "op"),
        service.produce(made("B4", "FIN-4", "SKU-12", 400, "EA"), "op"),
        service.produce(made("B2", "FIN-2", "SKU-99", 30, "EA", line=OTHER), "op"),
        service.link(LotLink.model_validate({"kind": "merge", "sources": [q("FIN-3", 600, "EA"), q("FIN-4", 400, "EA")],
                                             "targets": [q("PALLET-9", 1000, "EA")]}), "op"),
    ]
    assert steps == [Outcome.ACCEPTED] * 12
    return service


def test_trace_backward_from_the_pallet_reaches_exactly_the_raw_lots(genealogy: GenealogyService) -> None:
    trace = genealogy.backward("PALLET-9")
    assert trace.end_lots == ["FLOUR-1", "SUGAR-7", "WRAP-2"]
    assert trace.lots == ["DOUGH-1", "DOUGH-1a", "DOUGH-1b", "FIN-3", "FIN-4", "FLOUR-1", "SUGAR-7", "WRAP-2"]
    assert pairs(trace) == [(LINE, "B1"), (LINE, "B3"), (LINE, "B4")]


def test_trace_forward_from_the_flour_reaches_every_batch_and_finished_lot(genealogy: GenealogyService) -> None:
    trace = genealogy.forward("FLOUR-1")
    assert pairs(trace) == [(LINE, "B1"), (LINE, "B3"), (LINE, "B4"), (OTHER, "B2")]
    assert trace.lots == ["DOUGH-1", "DOUGH-1a", "DOUGH-1b", "FIN-2", "FIN-3", "FIN-4", "PALLET-9"]
    assert trace.end_lots == ["FIN-2", "PALLET-9"]
    wrapper = genealogy.forward("WRAP-2")  # forward never walks back into B4's other inputs
    assert (pairs(wrapper), wrapper.lots, wrapper.end_lots) == ([(LINE, "B4")], ["FIN-4", "PALLET-9"], ["PALLET-9"])


def test_unknown_lot_traces_to_nothing(genealogy: GenealogyService) -> None:
    trace = genealogy.backward("NOPE")
    assert (pairs(trace), trace.lots, trace.end_lots) == ([], [], [])


def test_identical_repeat_is_a_duplicate_and_a_different_one_is_refused(genealogy: GenealogyService) -> None:
    assert genealogy.consume(used("B1", "FLOUR-1", "RM-FLOUR", 5.0), "op") is Outcome.DUPLICATE
    with pytest.raises(GenealogyError) as refused:
        genealogy.consume(used("B1", "FLOUR-1", "RM-FLOUR", 6.0), "op")
    assert (refused.value.status, refused.value.reason) == (409, "lot_already_asserted")
    assert refused.value.message == (
        "lot 'FLOUR-1' is already recorded as consumed: 5 kg of RM-FLOUR (batch B1 on acme/plant1/packaging/line2); "
        "refused 6 kg of RM-FLOUR (batch B1 on acme/plant1/packaging/line2)")
    assert genealogy.produce(made("B1", "DOUGH-1", "SF-DOUGH", 100.0), "op") is Outcome.DUPLICATE
    with pytest.raises(GenealogyError) as other_batch:
        genealogy.produce(made("B5", "DOUGH-1", "SF-DOUGH", 100.0), "op")
    assert other_batch.value.reason == "lot_already_asserted"
    # nothing accepted earlier changed
    assert genealogy.consumed_by(LINE, "B1") == [used("B1", "FLOUR-1", "RM-FLOUR", 5.0),
                                                 used("B1", "SUGAR-7", "RM-SUGAR", 2.0)]
    assert genealogy.produced_by(LINE, "B1") == [made("B1", "DOUGH-1", "SF-DOUGH", 100.0)]


def test_split_and_merge_refusals(genealogy: GenealogyService) -> None:
    split = {"kind": "split", "sources": [q("DOUGH-1", 100)], "targets": [q("DOUGH-1a", 60), q("DOUGH-1b", 40)]}
    assert genealogy.link(LotLink.model_validate(split), "op") is Outcome.DUPLICATE
    cases = [
        ({"kind": "split", "sources": [q("FLOUR-1", 1)], "targets": [q("DOUGH-1a", 1), q("X-1", 1)]},
         "lot 'DOUGH-1a' already came from a split of DOUGH-1"),
        ({"kind": "split", "sources": [q("FLOUR-1", 1)], "targets": [q("FIN-3", 1), q("X-1", 1)]},
         "lot 'FIN-3' is produced by a batch; a split cannot make it"),
        ({"kind": "merge", "sources": [q("X-1", 1), q("X-2", 1)], "targets": [q("WRAP-2", 2)]},
         "lot 'WRAP-2' is already consumed by a batch; it is not new"),
    ]
    for body, message in cases:
        with pytest.raises(GenealogyError) as refused:
            genealogy.link(LotLink.model_validate(body), "op")
        assert (refused.value.status, refused.value.reason, refused.value.message) == (409, "lot_already_asserted",
                                                                                       message)
    assert genealogy.forward("X-1").lots == []  # none of the refused links was stored


@pytest.mark.parametrize(("body", "message"), [
    ({"kind": "split", "sources": [q("A", 1)], "targets": [q("B", 1)]},
     "a split takes one source lot into two or more target lots"),
    ({"kind": "merge", "sources": [q("A", 1)], "targets": [q("B", 1)]},
     "a merge takes two or more source lots into one target lot"),
    ({"kind": "merge", "sources": [q("A", 1), q("A", 2)], "targets": [q("B", 3)]},
     "a lot appears twice in one split or merge"),
])
def test_link_shapes(body: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LotLink.model_validate(body)


def test_a_batch_cannot_consume_its_own_output_or_produce_its_input(genealogy: GenealogyService) -> None:
    with pytest.raises(GenealogyError) as own_output:
        genealogy.consume(used("B1", "DOUGH-1", "SF-DOUGH", 1.0), "op")
    assert (own_output.value.status, own_output.value.reason) == (422, "lot_is_output")
    with pytest.raises(GenealogyError) as own_input:
        genealogy.produce(made("B1", "SUGAR-7", "RM-SUGAR", 1.0), "op")
    assert (own_input.value.status, own_input.value.reason) == (422, "lot_is_input")


@pytest.mark.parametrize(("payload", "message"), [
    (b"{", "material assertion is not JSON"),
    (b"[]", "material assertion must be a JSON object"),
    (b'{"kind": "eaten", "batch_id": "B1"}', "kind must be consumed or produced, not 'eaten'"),
    (b'{"kind": "consumed", "batch_id": "B1", "lot_id": "L", "material_id": "M", "quantity": 0, "uom": "kg"}',
     "material assertion refused: Input should be greater than 0"),
])
def test_uns_payload_refusals_are_specific(genealogy: GenealogyService, payload: bytes, message: str) -> None:
    with pytest.raises(GenealogyError, match=message) as refused:
        genealogy.handle_uns(LINE, payload)
    assert refused.value.reason == "invalid_payload"


def test_uns_assertion_is_stored_with_the_topic_line_and_is_idempotent(genealogy: GenealogyService) -> None:
    payload = (b'{"kind": "consumed", "batch_id": "B9", "lot_id": "SALT-1", "material_id": "RM-SALT",'
               b' "quantity": 0.5, "uom": "kg", "asserted_by": "weigh-station-2"}')
    assert genealogy.handle_uns(LINE, payload) is Outcome.ACCEPTED
    assert genealogy.handle_uns(LINE, payload) is Outcome.DUPLICATE  # retained redelivery
    assert genealogy.consumed_by(LINE, "B9") == [used("B9", "SALT-1", "RM-SALT", 0.5)]


def test_store_survives_reopen_and_refuses_a_newer_file(tmp_path: Path, genealogy: GenealogyService) -> None:
    path = Path(str(genealogy.store.path))
    genealogy.store.close()
    reopened = GenealogyService(GenealogyStore(path))
    assert reopened.backward("PALLET-9").end_lots == ["FLOUR-1", "SUGAR-7", "WRAP-2"]
    reopened.store.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="genealogy store has schema version 2"):
        GenealogyStore(path)


def test_final_confirmation_lists_the_consumed_lots_next_to_the_counted_material(tmp_path: Path) -> None:
    """Partial confirmations carry counts only; the final lists each asserted lot with its lot_id, and
    the lots are not counter quantities: a late supplement still nets only against the counts."""
    from tests.mes.helpers import MIN, build
    from tests.mes.test_confirmations import T0, count, end_batch, start_batch

    p = build(tmp_path)
    lots = GenealogyService(GenealogyStore(tmp_path / "genealogy.sqlite"))
    p.confirmations.lots_of = lots.consumed_by
    start_batch(p)
    count(p, "GoodCount", 100, T0)
    count(p, "Preforms", 0, T0, cell="Blower")
    count(p, "GoodCount", 400, T0 + 30 * MIN)
    count(p, "Preforms", 310, T0 + 30 * MIN, cell="Blower")
    assert lots.consume(used("B-1", "PET-LOT-77", "RM-PET-500", 310, "EA"), "op") is Outcome.ACCEPTED
    assert lots.consume(used("B-1", "CAP-LOT-3", "PK-CAP", 300, "EA"), "op") is Outcome.ACCEPTED
    end_batch(p, 2, T0 + 40 * MIN)
    [final] = p.confirmations.run_due(T0 + 42 * MIN)
    assert final.kind.value == "final" and final.produced[0].good == 300
    assert [c.model_dump() for c in final.consumed] == [
        {"material_id": "RM-PET-500", "lot_id": None, "uom": "EA", "quantity": 310},
        {"material_id": "PK-CAP", "lot_id": "CAP-LOT-3", "uom": "EA", "quantity": 300},
        {"material_id": "RM-PET-500", "lot_id": "PET-LOT-77", "uom": "EA", "quantity": 310},
    ]
    count(p, "GoodCount", 410, T0 + 35 * MIN)  # a late sample inside the batch: one supplement, counts only
    [late] = p.confirmations.run_due(T0 + 300 * MIN)
    assert (late.kind.value, late.produced[0].good) == ("late", 10)
    # 0, not -310: the lots of the final were not netted as if they were counted material
    assert [c.model_dump() for c in late.consumed] == [
        {"material_id": "RM-PET-500", "lot_id": None, "uom": "EA", "quantity": 0}]
