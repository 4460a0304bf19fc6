"""After an edge restart: what becomes of every command the last run did not finish.

Two sources say what was left open, and the plan (:func:`plan_recovery`) is a plain function of
both, testable without a server or a broker:

* the **command journal** (:mod:`edge_node.commands.journal`): commands that were waiting, in
  arrival order, as received;
* the **audit chain** (the edge is its one writer): per command, its last record. ``queued`` and
  ``written`` are open; ``refused``, ``expired``, ``failed`` and the three read-back outcomes are
  final (:data:`uns.commands.audit_events.RESULT_EVENTS`).

What each case becomes, and why:

==========================  ===================  ===============================================
journal row                 last audit record    step
==========================  ===================  ===============================================
yes                         none or ``queued``   :class:`Resume`: queued again in arrival order;
                                                 the normal checks run again (overdue → ``expired``)
yes                         final                :class:`Republish`: the run died between the
                                                 final record and removing the row; the result
                                                 may not have gone out, so send it again
yes / no                    ``written``          :class:`Close` ``failed``: the write may have
                                                 reached the PLC but was never read back; never
                                                 written twice, the requester is told to check
no                          ``queued``           :class:`Close` ``failed``: "edge restarted: the
                                                 command was not executed" (its row was lost)
unreadable row              —                    :class:`Discard` the row; its open ``queued``
                                                 record is closed by the sweep like a lost row
==========================  ===================  ===============================================

A closing record copies the open record's who/what/where (target, requested and old value,
signatures, rule) so a reviewer reads the whole story from it, and says it was written at
start-up. The reason code is ``write_failed`` (uns.commands has no code of its own for a
restart); the message says which case it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edge_node.errors import EdgeError
from uns.audit.query import AuditQueryError, AuditReader, StoredRecord
from uns.audit.record import AuditEntry, AuditEvent
from uns.commands.audit_events import RESULT_EVENTS
from uns.commands.model import CommandResult, Outcome, ReasonCode

from .journal import BadJournalRow, JournalEntry

OPEN_EVENTS: frozenset[str] = frozenset({AuditEvent.QUEUED.value, AuditEvent.WRITTEN.value})
FINAL_EVENTS: frozenset[str] = frozenset(e.value for e in RESULT_EVENTS.values())

NOT_EXECUTED = ("edge restarted: the command was not executed (it was queued while OPC UA was down and is "
                "not in the command journal)")
MAY_HAVE_WRITTEN = ("edge restarted after the OPC UA write and before its read-back: the value may have been "
                    "written; check it on the machine before repeating the command")


class AuditReadError(EdgeError):
    """The audit chain could not be read to find open commands."""


@dataclass(frozen=True, slots=True)
class Trail:
    """What the audit chain holds about one command: its last record (as stored) and when it began."""

    command_id: str
    first_ts_ms: int
    last: dict[str, Any]
    written_ts_ms: int | None = None

    @property
    def last_event(self) -> str:
        return str(self.last.get("event"))


@dataclass(frozen=True, slots=True)
class Resume:
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class Republish:
    trail: Trail
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class Close:
    trail: Trail
    message: str
    entry: JournalEntry | None = None


@dataclass(frozen=True, slots=True)
class Discard:
    row: BadJournalRow


Step = Resume | Republish | Close | Discard


def read_trails(audit_path: Path, journaled: set[str]) -> dict[str, Trail]:
    """Trails of the commands whose last record is open, and of every journaled command.

    Opens the chain read-only next to its writer (WAL lets it); one pass over the records, which
    the writer's own verification on open already makes at every start.
    """
    try:
        with AuditReader(audit_path) as reader:
            out: dict[str, Trail] = {}
            for head in reader.command_heads():
                if head.last.event not in OPEN_EVENTS and head.command_id not in journaled:
                    continue
                written = reader.last_event_ts(head.command_id, AuditEvent.WRITTEN.value)
                out[head.command_id] = Trail(head.command_id, head.first_ts_ms, _fields(head.last, audit_path),
                                             written)
            return out
    except AuditQueryError as exc:
        raise AuditReadError(str(exc)) from None


def _fields(record: StoredRecord, audit_path: Path) -> dict[str, Any]:
    try:
        return record.fields()
    except AuditQueryError as exc:
        raise AuditReadError(f"cannot read audit chain {audit_path}: {exc}") from None


def plan_recovery(entries: list[JournalEntry], bad_rows: list[BadJournalRow],
                  trails: dict[str, Trail]) -> list[Step]:
    """The steps, in the order to take them: discards, closes and republishes, then resumes in
    arrival order (so commands that wait still run in the order they came)."""
    first: list[Step] = [Discard(row) for row in bad_rows]
    resumes: list[Step] = []
    journaled: set[str] = set()
    for entry in entries:
        command_id = str(entry.request.command_id)
        journaled.add(command_id)
        trail = trails.get(command_id)
        event = trail.last_event if trail is not None else None
        if trail is not None and event in FINAL_EVENTS:
            first.append(Republish(trail, entry))
        elif trail is not None and event == AuditEvent.WRITTEN.value:
            first.append(Close(trail, MAY_HAVE_WRITTEN, entry))
        else:
            resumes.append(Resume(entry))
    for command_id, trail in trails.items():
        if command_id in journaled or trail.last_event not in OPEN_EVENTS:
            continue
        message = MAY_HAVE_WRITTEN if trail.last_event == AuditEvent.WRITTEN.value else NOT_EXECUTED
        first.append(Close(trail, message))
    return first + resumes


def closing_entry(trail: Trail, message: str, source: str) -> AuditEntry:
    """The final ``failed`` record of an open command, carrying its open record's facts."""
    fields = {name: trail.last.get(name) for name in AuditEntry.model_fields}
    fields.update(event=AuditEvent.FAILED, outcome=Outcome.FAILED.value, reason_code=ReasonCode.WRITE_FAILED.value,
                  message=message, source=source, readback_value=None, readback_status_code=None,
                  readback_source_ts_ms=None,
                  details={"closed_at_startup": True, "open_event": trail.last_event,
                           "open_event_seq": trail.last.get("seq")})
    return AuditEntry.model_validate(fields)


def result_from(trail: Trail, body: dict[str, Any], *, completed_at_ms: int,
                received_at_ms: int | None = None) -> CommandResult | None:
    """The :class:`CommandResult` a final record (``body``: stored, or a closing entry) reports;
    None if the record lacks what a result needs (then only the audit chain has it)."""
    target = body.get("target") or {}
    reason = body.get("reason_code")
    try:
        return CommandResult(
            command_id=uuid.UUID(trail.command_id), outcome=Outcome(body["outcome"]),
            reason=ReasonCode(reason) if reason else None, message=body.get("message") or "",
            command_hash=body.get("payload_sha256"), group_id=target["group_id"],
            edge_node_id=target["edge_node_id"], device_id=target.get("device_id"), metric=target["metric"],
            old_value=body.get("old_value"), requested_value=body.get("requested_value"),
            readback_value=body.get("readback_value"), old_status_code=body.get("old_status_code"),
            write_status_code=body.get("write_status_code"),
            readback_status_code=body.get("readback_status_code"),
            old_source_ts_ms=body.get("old_source_ts_ms"),
            readback_source_ts_ms=body.get("readback_source_ts_ms"),
            received_at_ms=received_at_ms if received_at_ms is not None else trail.first_ts_ms,
            written_at_ms=trail.written_ts_ms, completed_at_ms=completed_at_ms)
    except (KeyError, TypeError, ValueError, ValidationError):
        return None


__all__ = ["FINAL_EVENTS", "MAY_HAVE_WRITTEN", "NOT_EXECUTED", "OPEN_EVENTS", "AuditReadError", "Close", "Discard",
           "Republish", "Resume", "Step", "Trail", "closing_entry", "plan_recovery", "read_trails", "result_from"]
