"""Crew and labour time (issue 19 item 5) below the API: the overlap rule, the refusals, the audit
records with the identity that asserted, the UNS payload, the store across a reopen, and the labour
time on partial and final confirmations next to the machine time."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mes_adapter.crew import CrewError, CrewPresence, CrewService, CrewStore, Outcome, labour_ms
from mes_adapter.crew.store import SCHEMA_VERSION
from mes_adapter.oee.compute import Interval
from tests.mes.helpers import LINE, MIN, build
from tests.mes.test_confirmations import T0, count, end_batch, start_batch
from uns.audit.chain import AuditLog
from uns.audit.decisions import Actor, DecisionAudit
from uns.audit.query import AuditReader
from uns.sqlite_schema import SchemaVersionError

OTHER = "acme/plant1/packaging/line3"


def on(person: str, start: int, end: int | None, line: str = LINE) -> CrewPresence:
    return CrewPresence(line=line, person_id=person, start_ms=start, end_ms=end)


@pytest.fixture
def crew(tmp_path: Path):  # type: ignore[no-untyped-def]
    audit = AuditLog(tmp_path / "audit.sqlite")
    service = CrewService(CrewStore(tmp_path / "crew.sqlite"), lambda line: line in (LINE, OTHER),
                          audit=DecisionAudit(audit, "test"))
    yield service
    service.store.close()
    audit.close()


def test_labour_is_the_sum_of_each_persons_overlap_with_the_run_window() -> None:
    # the batch ran 0..60 min, then (after a context gap) 70..100 min; stops and holds inside count
    run = [Interval(T0, T0 + 60 * MIN), Interval(T0 + 70 * MIN, T0 + 100 * MIN)]
    crew = [on("ann", T0 - 10 * MIN, T0 + 30 * MIN),        # 30 min inside
            on("bob", T0 + 20 * MIN, None),                 # open: 40 + 30 min inside
            on("cem", T0 + 60 * MIN, T0 + 70 * MIN),        # only in the gap: nothing
            on("dan", T0 + 200 * MIN, T0 + 300 * MIN)]      # after the batch: nothing
    assert labour_ms(crew, run) == (30 + 40 + 30) * MIN
    # overlapping pieces of a window count once; an empty window is no labour
    assert labour_ms(crew[:1], [Interval(T0, T0 + 10 * MIN), Interval(T0 + 5 * MIN, T0 + 20 * MIN)]) == 20 * MIN
    assert labour_ms(crew, []) == 0


def test_bad_input_is_refused_with_its_reason_and_nothing_is_stored(crew: CrewService) -> None:
    assert crew.assert_presence(on("ann", T0, T0 + 60 * MIN), "op") is Outcome.ACCEPTED
    refusals = [
        (on("ann", T0, T0 + 60 * MIN, line="acme/plant1/packaging/line9"), 404, "unknown_line"),
        (on("bob", T0, T0), 422, "end_before_start"),
        (on("bob", T0, T0 - 1), 422, "end_before_start"),
        (on("ann", T0 + 30 * MIN, T0 + 90 * MIN), 409, "crew_overlap"),           # same line, overlapping
        (on("ann", T0 + 59 * MIN, None, line=OTHER), 409, "crew_overlap"),        # another line at the same time
        (on("ann", T0, T0 + 30 * MIN), 409, "crew_conflict"),                     # the same presence, other end
    ]
    for presence, status, reason in refusals:
        with pytest.raises(CrewError) as refused:
            crew.assert_presence(presence, "op")
        assert (refused.value.status, refused.value.reason) == (status, reason), refused.value.message
    assert "ann is already on record as ann on acme/plant1/packaging/line2" in str(
        pytest.raises(CrewError, crew.assert_presence, on("ann", T0 + MIN, None), "op").value)
    assert crew.assert_presence(on("ann", T0, T0 + 60 * MIN), "op") is Outcome.DUPLICATE   # a retry
    assert crew.assert_presence(on("ann", T0 + 60 * MIN, None, line=OTHER), "op") is Outcome.ACCEPTED  # touching
    assert crew.crew(LINE) == [on("ann", T0, T0 + 60 * MIN)]
    assert crew.crew(OTHER) == [on("ann", T0 + 60 * MIN, None, line=OTHER)]


def test_an_open_presence_is_closed_once_and_every_decision_is_audited_with_its_asserter(
        crew: CrewService, tmp_path: Path) -> None:
    assert crew.assert_presence(on("ann", T0, None), "alice", actor=Actor("alice", "api-token")) is Outcome.ACCEPTED
    # a badge reader on the UNS closes it; its free-text asserted_by is a claim, the broker user is the actor
    payload = b'{"person_id": "ann", "start_ms": %d, "end_ms": %d, "asserted_by": "badge-3"}' % (T0, T0 + MIN)
    assert crew.handle_uns(LINE, payload, Actor.broker_user("mes")) is Outcome.ACCEPTED
    assert crew.handle_uns(LINE, payload, Actor.broker_user("mes")) is Outcome.DUPLICATE  # redelivered
    with pytest.raises(CrewError) as refused:  # closed: no second end
        crew.assert_presence(on("ann", T0, T0 + 2 * MIN), "alice")
    assert refused.value.reason == "crew_conflict"
    for bad, reason in ((b"[1]", "invalid_payload"), (b"{", "invalid_payload"),
                        (b'{"person_id": "x", "start_ms": -1}', "invalid_payload")):
        with pytest.raises(CrewError) as refused:
            crew.handle_uns(LINE, bad)
        assert refused.value.reason == reason
    assert crew.crew(LINE) == [on("ann", T0, T0 + MIN)]
    with AuditReader(tmp_path / "audit.sqlite") as reader:
        records = [r.fields() for r in reader.events("crew_asserted")]
    assert [(r["actor_user_id"], r["auth_method"], r["target"]["isa95_path"], r["old_value"], r["requested_value"],
             r["details"]) for r in records] == [
        ("alice", "api-token", LINE, None, {"line": LINE, "person_id": "ann", "start_ms": T0, "end_ms": None},
         {"via": "api", "closed": False, "claimed_asserted_by": None}),
        ("mqtt:mes", "broker-acl", LINE, {"end_ms": None},
         {"line": LINE, "person_id": "ann", "start_ms": T0, "end_ms": T0 + MIN},
         {"via": "uns", "closed": True, "claimed_asserted_by": "badge-3"})]


def test_store_survives_a_reopen_and_refuses_a_newer_file(crew: CrewService) -> None:
    crew.assert_presence(on("ann", T0, T0 + MIN), "op")
    path = Path(str(crew.store.path))
    crew.store.close()
    reopened = CrewStore(path)
    assert reopened.of_person("ann") == [on("ann", T0, T0 + MIN)]
    reopened.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="crew store has schema version 2"):
        CrewStore(path)
    crew.store = CrewStore(":memory:")  # the fixture closes what it holds


def test_confirmations_carry_labour_time_per_window_next_to_machine_time(tmp_path: Path) -> None:
    p = build(tmp_path)
    crew = CrewService(CrewStore(tmp_path / "crew.sqlite"), lambda line: line == LINE)
    p.confirmations.labour_time = crew.labour_ms
    p.confirmations.machine_time = lambda _line, parts: sum(iv.duration_ms for iv in parts) // 2  # half ran
    start_batch(p)
    count(p, "GoodCount", 0, T0)
    crew.assert_presence(on("ann", T0 - 30 * MIN, T0 + 90 * MIN), "op")   # 60 + 30 min of the batch
    crew.assert_presence(on("bob", T0 + 50 * MIN, None), "op")            # 10 + 30 min
    crew.assert_presence(on("cem", T0 + 95 * MIN, None, line="acme/plant1/packaging/line2"), "op")  # 0 + 0: ends
    end_batch(p, 2, T0 + 90 * MIN)
    partial, final = p.confirmations.run_due(T0 + 92 * MIN)
    assert [(c.kind.value, [(d.name, d.value) for d in c.data]) for c in (partial, final)] == [
        ("partial", [("machine_time", 30 * 60.0), ("labour_time", (60 + 10) * 60.0)]),
        ("final", [("machine_time", 15 * 60.0), ("labour_time", (30 + 30) * 60.0)])]
    crew.store.close()
