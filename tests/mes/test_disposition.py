"""QA disposition (issue 19 item 3) below the API: the split on confirmations (wait / partial),
the QA role beside the ladder, and the store's file across a reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mes_adapter.auth import Principal, Role
from mes_adapter.confirmations.planning import ConfirmationKind, quantities_of
from mes_adapter.confirmations.service import batch_intervals
from mes_adapter.quality import DispositionRefusedError, DispositionRequest, DispositionService, DispositionStore
from mes_adapter.quality.models import DispositionSplit, sign_disposition
from tests.mes.helpers import LINE, MIN, Parts, build
from tests.mes.test_confirmations import T0, count, end_batch, start_batch
from uns.audit.chain import AuditLog
from uns.audit.decisions import DecisionAudit
from uns.audit.query import AuditReader
from uns.commands.signing import UserRegistry, generate_private_key, registry_entry
from uns.sqlite_schema import SchemaVersionError

QA = Principal("quinn", "Quinn Quality", Role.QA)


class Fixture:
    def __init__(self, tmp_path: Path, final: str) -> None:
        self.parts: Parts = build(tmp_path, disposition={"required": True, "final": final})
        self.key = generate_private_key()
        registry = UserRegistry.model_validate(registry_entry(QA.user_id, QA.full_name, self.key.public_key()))
        self.audit = AuditLog(tmp_path / "audit.sqlite")
        self.store = DispositionStore(tmp_path / "disposition.sqlite")
        self.quality = DispositionService(self.store, registry, self._rejects, DecisionAudit(self.audit, "test"))
        self.parts.confirmations.dispositions = self._totals

    def _rejects(self, line: str, batch_id: str) -> float | None:
        window = self.parts.context.batch_window(line, batch_id)
        return None if window is None else self.parts.production.quantities(line, batch_intervals(window)).scrap

    def _totals(self, line: str, batch_id: str) -> tuple[float, float, float]:
        split = self.quality.totals(line, batch_id)
        return split.scrap, split.rework, split.accepted

    def dispose(self, did: str, split: DispositionSplit, who: Principal = QA) -> None:
        signature = sign_disposition(self.key, user_id=QA.user_id, full_name=QA.full_name, line=LINE, batch_id="B-1",
                                     disposition_id=did, split=split, now_ms=T0)
        self.quality.dispose(who, LINE, "B-1", DispositionRequest(disposition_id=did, split=split,
                                                                   signature=signature))

    def close(self) -> None:
        self.audit.close()
        self.store.close()


def _run(p: Parts) -> None:
    start_batch(p)
    count(p, "GoodCount", 1_000, T0)
    count(p, "RejectCount", 100, T0)
    count(p, "GoodCount", 1_500, T0 + 30 * MIN)
    count(p, "RejectCount", 130, T0 + 30 * MIN)  # 30 rejects in the first (partial) hour


def test_partial_mode_final_reports_the_split_and_pending_additively(tmp_path: Path) -> None:
    f = Fixture(tmp_path, "partial")
    p = f.parts
    _run(p)
    [partial] = p.confirmations.run_due(T0 + 61 * MIN)
    produced = partial.produced[0]
    assert (produced.good, produced.scrap, produced.rework, produced.accepted, produced.pending_disposition) == (
        500, 0, 0, 0, 30)
    f.dispose("D-1", DispositionSplit(scrap=10, rework=5))
    count(p, "RejectCount", 140, T0 + 70 * MIN)  # 10 more in the final window: 40 in all
    end_batch(p, 2, T0 + 80 * MIN)
    [final] = p.confirmations.run_due(T0 + 82 * MIN)
    produced = final.produced[0]
    # the batch's classification, and pending = (40 - 15) still pending - 30 the partial reported
    assert (final.kind, produced.good, produced.scrap, produced.rework, produced.accepted,
            produced.pending_disposition) == (ConfirmationKind.FINAL, 0, 10, 5, 0, -5)
    assert quantities_of(final).scrap == 10  # the final window's rejects, however classified
    assert sum(c.produced[0].pending_disposition or 0 for c in (partial, final)) == 25
    assert p.confirmations.run_due(T0 + 200 * MIN) == []  # nothing new, no conflict with the stored final
    f.close()


def test_wait_mode_holds_the_final_until_nothing_is_pending(tmp_path: Path) -> None:
    f = Fixture(tmp_path, "wait")
    p = f.parts
    _run(p)
    p.confirmations.run_due(T0 + 61 * MIN)
    end_batch(p, 2, T0 + 80 * MIN)
    assert p.confirmations.run_due(T0 + 82 * MIN) == []
    assert p.confirmations.waiting_for_disposition == {(LINE, "B-1")}
    f.dispose("D-1", DispositionSplit(scrap=20, rework=9))
    assert p.confirmations.run_due(T0 + 83 * MIN) == []  # one reject still pending
    with pytest.raises(DispositionRefusedError) as too_many:
        f.dispose("D-2", DispositionSplit(accepted=2))
    assert (too_many.value.status, too_many.value.reason) == (409, "exceeds_pending")
    with pytest.raises(DispositionRefusedError) as no_role:
        f.dispose("D-2", DispositionSplit(accepted=1), who=Principal("erin", "Erin Engineer", Role.ENGINEER))
    assert (no_role.value.status, no_role.value.reason) == (403, "role_required")
    f.dispose("D-2", DispositionSplit(accepted=1))
    [final] = p.confirmations.run_due(T0 + 84 * MIN)
    produced = final.produced[0]
    assert (produced.scrap, produced.rework, produced.accepted, produced.pending_disposition) == (20, 9, 1, -30)
    assert p.confirmations.waiting_for_disposition == set()
    f.close()


def test_qa_role_stands_beside_the_ladder() -> None:
    assert QA.has(Role.QA) and QA.has(Role.VIEWER)
    assert not QA.has(Role.OPERATOR) and not QA.has(Role.ENGINEER)
    engineer = Principal("erin", "Erin Engineer", Role.ENGINEER)
    assert engineer.has(Role.SUPERVISOR) and not engineer.has(Role.QA)
    assert Role.parse("qa") is Role.QA


def test_dispositions_survive_a_reopen_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    f = Fixture(tmp_path, "wait")
    _run(f.parts)
    f.dispose("D-1", DispositionSplit(scrap=3, rework=2))
    f.close()
    store = DispositionStore(tmp_path / "disposition.sqlite")
    [kept] = store.of_batch(LINE, "B-1")
    assert (kept.disposition_id, kept.user_id, kept.split) == ("D-1", "quinn", DispositionSplit(scrap=3, rework=2))
    store.close()
    db = sqlite3.connect(tmp_path / "disposition.sqlite")
    db.execute("PRAGMA user_version = 9")
    db.close()
    with pytest.raises(SchemaVersionError, match="disposition store has schema version 9"):
        DispositionStore(tmp_path / "disposition.sqlite")


def test_a_retried_disposition_is_counted_once_even_when_both_requests_run_at_once(tmp_path: Path) -> None:
    """A client retry (the answer to the first request lost, or a double click) sends the same
    disposition again, possibly re-signed, possibly while the first is still being checked: the
    split is counted once, the retry answered with the stored disposition, one audit record."""
    import threading

    f = Fixture(tmp_path, "wait")
    _run(f.parts)
    split = DispositionSplit(scrap=2, rework=1)
    signature = sign_disposition(f.key, user_id=QA.user_id, full_name=QA.full_name, line=LINE, batch_id="B-1",
                                 disposition_id="D-1", split=split, now_ms=T0)
    request = DispositionRequest(disposition_id="D-1", split=split, signature=signature)
    # both requests are past the lookup of the id before either stores it (the race a retry makes)
    both_looked = threading.Barrier(2, timeout=0.5)
    lookup = f.store.get

    def get_in_step(disposition_id: str):  # type: ignore[no-untyped-def]
        found = lookup(disposition_id)
        try:
            both_looked.wait()
        except threading.BrokenBarrierError:
            pass  # the service let only one request look at a time: nothing to line up
        return found

    f.store.get = get_in_step  # type: ignore[method-assign]
    answers: list[object] = []

    def send() -> None:
        try:
            answers.append(f.quality.dispose(QA, LINE, "B-1", request))
        except Exception as exc:  # noqa: BLE001 - what the API would answer is what the test checks
            answers.append(exc)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [type(a).__name__ for a in answers] == ["Disposition", "Disposition"], answers
    assert f.quality.totals(LINE, "B-1") == split
    f.store.get = lookup  # type: ignore[method-assign]
    # re-signed by the same user (a retry that signs again): the same stored disposition, nothing added
    again = sign_disposition(f.key, user_id=QA.user_id, full_name=QA.full_name, line=LINE, batch_id="B-1",
                             disposition_id="D-1", split=split, now_ms=T0 + 5_000)
    kept = f.quality.dispose(QA, LINE, "B-1", DispositionRequest(disposition_id="D-1", split=split, signature=again))
    assert kept.signature == signature and f.quality.totals(LINE, "B-1") == split
    # the same id with another split is still refused with its reason
    other = DispositionSplit(scrap=1)
    with pytest.raises(DispositionRefusedError) as reused:
        f.quality.dispose(QA, LINE, "B-1", DispositionRequest(
            disposition_id="D-1", split=other, signature=sign_disposition(
                f.key, user_id=QA.user_id, full_name=QA.full_name, line=LINE, batch_id="B-1",
                disposition_id="D-1", split=other, now_ms=T0)))
    assert (reused.value.status, reused.value.reason) == (409, "disposition_id_used")
    assert f.quality.totals(LINE, "B-1") == split
    with AuditReader(tmp_path / "audit.sqlite") as reader:
        assert len(list(reader.events("disposition_recorded"))) == 1
    f.close()
