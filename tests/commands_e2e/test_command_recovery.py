"""The start-up plan for what the last run left open, and the command journal, without a network.

Every row of the table in :mod:`edge_node.commands.recovery` against a real audit chain
(:class:`uns.audit.chain.AuditLog`) and a real journal file.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from edge_node.commands.journal import CommandJournal
from edge_node.commands.recovery import (
    MAY_HAVE_WRITTEN,
    NOT_EXECUTED,
    Close,
    Discard,
    Republish,
    Resume,
    closing_entry,
    plan_recovery,
    read_trails,
    result_from,
)
from uns.audit.chain import AuditLog
from uns.audit.record import AuditEvent
from uns.audit.verify import verify
from uns.commands import audit_events
from uns.commands.allowlist import Allowlist
from uns.commands.audit_events import AuditContext
from uns.commands.checker import build_request
from uns.commands.model import CommandRequest, Outcome, ReasonCode

RULES = Allowlist.from_yaml("""
version: "r1"
lines:
  - group_id: "acme:plant1"
    edge_node_id: "packaging:Line1"
    metrics:
      - {device_id: Filler, metric: SP, datatype: Double, write: {node_id: "ns=2;s=SP"}}
""")
T0 = 1_700_000_000_000
CTX = AuditContext(source="edge:acme:plant1/packaging:Line1", opcua_endpoint="opc.tcp://plc:4840")


def request(value: float) -> CommandRequest:
    return build_request(RULES, group_id="acme:plant1", edge_node_id="packaging:Line1", device_id="Filler",
                         metric="SP", value=value, requested_by="alice", reason="recovery test", now_ms=T0)


def record(audit: AuditLog, event: AuditEvent, req: CommandRequest, **fields: object) -> None:
    rule = RULES.find("acme:plant1", "packaging:Line1", "Filler", "SP")[1]  # type: ignore[index]
    audit.append(audit_events.command_entry(event, req, CTX, rule=rule, actor_user_id="alice", **fields))


def test_journal_round_trip_keeps_the_command_hash_and_order(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path / "j.db")
    first = request(1.0)
    second = first.model_copy(update={"command_id": uuid.uuid4(), "value": 2})  # an int, as sent
    ids = [journal.add(first, T0 + 1), journal.add(second, T0 + 2)]
    entries, bad = journal.load()
    assert bad == [] and [e.id for e in entries] == ids
    assert [e.request.command_hash() for e in entries] == [first.command_hash(), second.command_hash()]
    assert isinstance(entries[1].request.value, int)  # 2 stays an int: the hash depends on it
    journal.remove(ids[0])
    assert [e.id for e in journal.load()[0]] == ids[1:]
    journal.close()
    reopened = CommandJournal(tmp_path / "j.db")  # durable across instances (a restart)
    assert [e.request.command_id for e in reopened.load()[0]] == [second.command_id]
    reopened.close()


def test_a_tampered_or_unreadable_row_is_reported_not_resumed(tmp_path: Path) -> None:
    journal = CommandJournal(tmp_path / "j.db")
    journal.add(request(1.0), T0)
    journal.add(request(2.0), T0)
    db = sqlite3.connect(tmp_path / "j.db")
    db.execute("UPDATE command_journal SET request = replace(request, '1.0', '9.0') WHERE id = 1")
    db.execute("UPDATE command_journal SET request = '{not json' WHERE id = 2")
    db.commit()
    db.close()
    entries, bad = journal.load()
    assert entries == [] and [b.id for b in bad] == [1, 2]
    assert "does not match the hash" in bad[0].error and "unreadable" in bad[1].error
    journal.close()


def test_plan_covers_every_case(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.db")
    journal = CommandJournal(tmp_path / "j.db")
    lost_queue, lost_write, queued, finished, never_audited, done, journaled_write = (
        request(float(v)) for v in range(7))
    record(audit, AuditEvent.QUEUED, lost_queue)  # queued, its row lost: not executed
    record(audit, AuditEvent.WRITTEN, lost_write, old_value=5.0, write_status_code=0)  # ran at once, cut off
    record(audit, AuditEvent.QUEUED, queued)
    record(audit, AuditEvent.QUEUED, finished)
    record(audit, AuditEvent.EXPIRED, finished, outcome="expired", reason_code="expired", message="too late")
    record(audit, AuditEvent.WRITTEN, done, write_status_code=0)
    record(audit, AuditEvent.READBACK_OK, done, outcome="confirmed")  # finished: nothing to do
    record(audit, AuditEvent.QUEUED, journaled_write)
    record(audit, AuditEvent.WRITTEN, journaled_write, write_status_code=0)
    rows = {r: journal.add(r, T0 + i) for i, r in enumerate((queued, finished, never_audited, journaled_write))}
    db = sqlite3.connect(tmp_path / "j.db")
    bad_id = journal.add(request(99.0), T0)
    db.execute("UPDATE command_journal SET request = '{' WHERE id = ?", (bad_id,))
    db.commit()
    db.close()

    entries, bad = journal.load()
    trails = read_trails(audit.path, {str(e.request.command_id) for e in entries})
    assert str(done.command_id) not in trails  # closed commands are not even read
    steps = plan_recovery(entries, bad, trails)

    def cid(step: object) -> str:
        if isinstance(step, Resume | Republish):
            return str(step.entry.request.command_id)
        assert isinstance(step, Close)
        return step.trail.command_id

    assert isinstance(steps[0], Discard) and steps[0].row.id == bad_id
    rest = steps[1:]
    kinds = [(type(s).__name__, cid(s)) for s in rest]
    assert kinds == [
        ("Republish", str(finished.command_id)),
        ("Close", str(journaled_write.command_id)),
        ("Close", str(lost_queue.command_id)),
        ("Close", str(lost_write.command_id)),
        ("Resume", str(queued.command_id)),  # resumes last, in arrival (journal) order
        ("Resume", str(never_audited.command_id)),
    ]
    closes = {cid(s): s for s in rest if isinstance(s, Close)}
    assert closes[str(lost_queue.command_id)].message == NOT_EXECUTED
    assert closes[str(lost_write.command_id)].message == MAY_HAVE_WRITTEN
    assert closes[str(journaled_write.command_id)].entry is not None
    assert closes[str(journaled_write.command_id)].entry.id == rows[journaled_write]  # type: ignore[union-attr]

    # the closing record carries the open record's facts and chains like any other
    lost = closes[str(lost_write.command_id)]
    entry = closing_entry(lost.trail, lost.message, CTX.source or "")
    assert (entry.event, entry.outcome, entry.reason_code) == (AuditEvent.FAILED, "failed", "write_failed")
    assert entry.old_value == 5.0 and entry.write_status_code == 0 and entry.target.node_id == "ns=2;s=SP"
    assert entry.payload_sha256 == lost_write.command_hash() and entry.actor_user_id == "alice"
    audit.append(entry)
    result = result_from(lost.trail, entry.model_dump(mode="json"), completed_at_ms=T0 + 99)
    assert result is not None
    assert (result.outcome, result.reason, result.message) == (Outcome.FAILED, ReasonCode.WRITE_FAILED,
                                                               MAY_HAVE_WRITTEN)
    assert result.command_id == lost_write.command_id and result.requested_value == 1.0
    assert result.written_at_ms == lost.trail.written_ts_ms is not None
    assert result.command_hash == lost_write.command_hash() and result.old_value == 5.0

    # a republished result reads the final record as stored
    again = next(s for s in rest if isinstance(s, Republish))
    republished = result_from(again.trail, again.trail.last, completed_at_ms=1)
    assert republished is not None
    assert (republished.outcome, republished.reason, republished.message) == (Outcome.EXPIRED, ReasonCode.EXPIRED,
                                                                            "too late")
    journal.close()
    audit.close()
    assert verify(tmp_path / "audit.db").ok
