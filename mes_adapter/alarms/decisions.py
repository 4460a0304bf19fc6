"""Exceptions and batch holds opened by alarm rules, and the signed release of a hold.

Fed by :class:`~mes_adapter.alarms.service.AlarmService` with every journaled alarm row and the
condition's previous row. For each rule that fires (:class:`~mes_adapter.alarms.rules.RuleBook`)
an exception is stored with cause, owner and action; a ``hold`` rule also puts the batch running
at the alarm's source time on hold. A held batch is listed by ``/api/holds``, is retained on
``<line>/_context/hold`` (``{"batch_id", "held": true, ...}``), and its final confirmation is not
built while the hold lasts (:meth:`DecisionDesk.is_held`, the confirmation service's gate).

Release: an Ed25519 signature (the command signers' registry, :mod:`uns.commands.signing`) by the
calling user, whose role is at least ``alarms.release_role``, over :func:`release_hash`, which
binds the hold, the line, the batch and the release comment, so a signature cannot be replayed on
another hold or with another comment. Every exception opened or closed, every hold, every release
and every refused release goes into the audit chain.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from mes_adapter.auth import Principal, Role
from mes_adapter.config.mes import AlarmsConfig
from mes_adapter.errors import MesInputError
from mes_adapter.sqlite import transaction
from uns.audit.canonical import canonical_json, sha256_hex
from uns.audit.chain import AuditLog
from uns.audit.record import AuditEntry, AuditEvent, AuditTarget
from uns.commands.model import Signature, SignatureMeaning
from uns.commands.signing import SignatureRefusedError, UserRegistry, verify_signature

from .rules import RuleBook, Trigger
from .store import AlarmEvent

log = logging.getLogger("uns.adapter.alarms")

RELEASE_SCHEMA = "uns-hub.hold-release.v1"
SOURCE = "mes-adapter"

#: ``(line, hold payload or None)`` → retained ``<line>/_context/hold``
PublishHold = Callable[[str, dict[str, Any]], None]


class DecisionRefusedError(MesInputError):
    """A close or release the adapter refuses; ``status`` and ``reason`` are the API's answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class AlarmException(BaseModel):
    id: int
    alarm_id: int = Field(description="the alarm journal row that opened it")
    rule_index: int
    line: str
    cell: str | None
    condition: str
    severity: int
    cause: str
    owner: str
    action: str
    batch_id: str | None
    phase: str | None
    opened_ms: int
    closed_ms: int | None
    closed_by: str | None
    closing_comment: str | None
    open: bool


class Shelf(BaseModel):
    """A condition shelved by an operator: until ``until_ms`` it opens no exception and holds nothing
    (the journal and ``_alarms`` still record it: shelving silences the MES reaction, not the data)."""

    id: int
    line: str
    cell: str | None
    condition: str
    shelved_ms: int
    until_ms: int
    shelved_by: str
    comment: str


class BatchHold(BaseModel):
    id: int
    line: str
    batch_id: str
    exception_id: int
    reason: str
    held_ms: int
    released_ms: int | None
    released_by: str | None
    release_comment: str | None
    held: bool


def release_hash(hold: BatchHold, comment: str) -> str:
    """What a release signature signs (as ``command_hash``): hold, line, batch and comment, canonical JSON."""
    return sha256_hex(canonical_json({"schema": RELEASE_SCHEMA, "hold_id": hold.id, "line": hold.line,
                                      "batch_id": hold.batch_id, "comment": comment}))


_EXC = ("id, alarm_id, rule_index, line, cell, condition, severity, cause, owner, action, batch_id, phase, "
        "opened_ms, closed_ms, closed_by, closing_comment")
_SHELF = "id, line, cell, condition, shelved_ms, until_ms, shelved_by, comment"
_HOLD = "id, line, batch_id, exception_id, reason, held_ms, released_ms, released_by, release_comment"


class DecisionDesk:
    """Opens exceptions and holds from alarm rows; closes and releases them on request."""

    def __init__(self, conn: sqlite3.Connection, config: AlarmsConfig, registry: UserRegistry, audit: AuditLog,
                 publish_hold: PublishHold, clock: Callable[[], int]) -> None:
        self._conn = conn
        self._config = config
        self._registry = registry
        self._audit = audit
        self._publish_hold = publish_hold
        self._clock = clock
        self.rules = RuleBook(config)
        self.errors = 0
        #: rule firings not acted on because the condition was shelved
        self.suppressed_shelved = 0
        #: exceptions opened by rules, and batch holds among them, since start (/metrics)
        self.exceptions_opened = 0
        self.holds_opened = 0

    # -- from the alarm stream -------------------------------------------------------------------

    def on_alarm(self, event: AlarmEvent, previous: AlarmEvent | None) -> None:
        shelved = self.shelved(event.line, event.cell, event.condition)
        for trigger in self.rules.evaluate(event, previous):
            if shelved is not None:
                self.suppressed_shelved += 1
                continue
            try:
                self._open(trigger)
            except Exception:  # noqa: BLE001 - one failed rule must not stop the alarm stream
                self.errors += 1
                log.exception("exception of rule %d on %s not opened", trigger.index, event.condition)

    def _open(self, trigger: Trigger) -> None:
        event, rule = trigger.event, trigger.rule
        now = self._clock()
        cause = rule.cause or event.message or event.condition
        with transaction(self._conn) as conn:
            exception_id = int(conn.execute(
                "INSERT INTO alarm_exception (alarm_id, rule_index, line, cell, condition, severity, cause, owner,"
                " action, batch_id, phase, opened_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.id, trigger.index, event.line, event.cell, event.condition, event.severity, cause, rule.owner,
                 rule.action, event.batch_id, event.phase, now)).lastrowid or 0)
            hold_id = None
            if rule.hold and event.batch_id is not None and self.open_hold(event.line, event.batch_id) is None:
                hold_id = int(conn.execute(
                    "INSERT INTO batch_hold (line, batch_id, exception_id, reason, held_ms) VALUES (?, ?, ?, ?, ?)",
                    (event.line, event.batch_id, exception_id,
                     f"{event.condition} on {event.cell or event.line} (severity {event.severity}): {cause}",
                     now)).lastrowid or 0)
        self.exceptions_opened += 1
        self.holds_opened += hold_id is not None
        exception = self.exception(exception_id)
        assert exception is not None
        self._append(AuditEvent.EXCEPTION_OPENED, None, exception.line, event.cell, exception.batch_id,
                     reason=cause, details={"exception": exception.model_dump(mode="json")})
        if hold_id is not None:
            hold = self.hold(hold_id)
            assert hold is not None
            self._append(AuditEvent.BATCH_HELD, None, hold.line, event.cell, hold.batch_id, reason=hold.reason,
                         details={"hold": hold.model_dump(mode="json")})
            self._announce(hold)

    # -- queries -----------------------------------------------------------------------------------

    def exception(self, exception_id: int) -> AlarmException | None:
        row = self._conn.execute(f"SELECT {_EXC} FROM alarm_exception WHERE id = ?", (exception_id,)).fetchone()
        return None if row is None else _exception(row)

    def exceptions(self, line: str | None, open_only: bool, batch_id: str | None = None) -> list[AlarmException]:
        sql, params = f"SELECT {_EXC} FROM alarm_exception WHERE 1 = 1", []
        if line is not None:
            sql += " AND line = ?"
            params.append(line)
        if batch_id is not None:
            sql += " AND batch_id = ?"
            params.append(batch_id)
        if open_only:
            sql += " AND closed_ms IS NULL"
        return [_exception(r) for r in self._conn.execute(sql + " ORDER BY id", params).fetchall()]

    def hold(self, hold_id: int) -> BatchHold | None:
        row = self._conn.execute(f"SELECT {_HOLD} FROM batch_hold WHERE id = ?", (hold_id,)).fetchone()
        return None if row is None else _hold(row)

    def open_hold(self, line: str, batch_id: str) -> BatchHold | None:
        row = self._conn.execute(f"SELECT {_HOLD} FROM batch_hold WHERE line = ? AND batch_id = ? "
                                 "AND released_ms IS NULL", (line, batch_id)).fetchone()
        return None if row is None else _hold(row)

    def holds(self, line: str | None, held_only: bool) -> list[BatchHold]:
        sql, params = f"SELECT {_HOLD} FROM batch_hold WHERE 1 = 1", []
        if line is not None:
            sql += " AND line = ?"
            params.append(line)
        if held_only:
            sql += " AND released_ms IS NULL"
        return [_hold(r) for r in self._conn.execute(sql + " ORDER BY id", params).fetchall()]

    def is_held(self, line: str, batch_id: str) -> bool:
        """The confirmation gate: True while the batch has an unreleased hold."""
        return self.open_hold(line, batch_id) is not None

    def shelved(self, line: str, cell: str | None, condition: str) -> Shelf | None:
        """The shelf in force now for this condition (the latest that has not expired), if any."""
        row = self._conn.execute(
            f"SELECT {_SHELF} FROM alarm_shelf WHERE line = ? AND cell IS ? AND condition = ? AND until_ms > ?"
            " ORDER BY until_ms DESC LIMIT 1", (line, cell, condition, self._clock())).fetchone()
        return None if row is None else Shelf(**dict(zip(_SHELF.split(", "), row, strict=True)))

    def shelves(self, line: str | None) -> list[Shelf]:
        """Shelves in force now."""
        sql, params = f"SELECT {_SHELF} FROM alarm_shelf WHERE until_ms > ?", [self._clock()]
        if line is not None:
            sql += " AND line = ?"
            params.append(line)
        rows = self._conn.execute(sql + " ORDER BY id", params).fetchall()
        return [Shelf(**dict(zip(_SHELF.split(", "), r, strict=True))) for r in rows]

    # -- requests ------------------------------------------------------------------------------------

    def close_exception(self, exception_id: int, principal: Principal, comment: str, client: str) -> AlarmException:
        exception = self.exception(exception_id)
        if exception is None:
            raise DecisionRefusedError(404, "unknown_exception", f"no exception {exception_id}")
        if not exception.open:
            raise DecisionRefusedError(409, "already_closed",
                                       f"exception {exception_id} was closed by {exception.closed_by!r}")
        with transaction(self._conn) as conn:
            conn.execute("UPDATE alarm_exception SET closed_ms = ?, closed_by = ?, closing_comment = ? WHERE id = ?",
                         (self._clock(), principal.user_id, comment, exception_id))
        closed = self.exception(exception_id)
        assert closed is not None
        self._append(AuditEvent.EXCEPTION_CLOSED, principal, closed.line, closed.cell, closed.batch_id,
                     reason=comment, client=client, details={"exception": closed.model_dump(mode="json")})
        return closed

    def shelve(self, line: str, cell: str | None, condition: str, duration_s: float, principal: Principal,
               comment: str, client: str) -> Shelf:
        """Shelve a condition for ``duration_s`` (expiry is by time; nothing to undo)."""
        now = self._clock()
        with transaction(self._conn) as conn:
            shelf_id = int(conn.execute(
                "INSERT INTO alarm_shelf (line, cell, condition, shelved_ms, until_ms, shelved_by, comment)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (line, cell, condition, now, now + int(duration_s * 1000), principal.user_id, comment)).lastrowid or 0)
        row = self._conn.execute(f"SELECT {_SHELF} FROM alarm_shelf WHERE id = ?", (shelf_id,)).fetchone()
        shelf = Shelf(**dict(zip(_SHELF.split(", "), row, strict=True)))
        self._append(AuditEvent.ALARM_SHELVED, principal, line, cell, None, reason=comment, client=client,
                     details={"shelf": shelf.model_dump(mode="json")})
        return shelf

    def release(self, hold_id: int, principal: Principal, comment: str, signature: Signature,
                client: str) -> BatchHold:
        hold = self.hold(hold_id)
        if hold is None:
            raise DecisionRefusedError(404, "unknown_hold", f"no hold {hold_id}")
        if not hold.held:
            raise DecisionRefusedError(409, "already_released", f"hold {hold_id} was released by {hold.released_by!r}")
        try:
            self._check_release(hold, principal, comment, signature)
        except DecisionRefusedError as refusal:
            self._append(AuditEvent.REFUSED, principal, hold.line, None, hold.batch_id, reason=comment, client=client,
                         reason_code=refusal.reason, message=str(refusal), signature=signature,
                         details={"hold_id": hold.id, "request": "release"})
            raise
        with transaction(self._conn) as conn:
            conn.execute("UPDATE batch_hold SET released_ms = ?, released_by = ?, release_comment = ?,"
                         " release_signature = ? WHERE id = ? AND released_ms IS NULL",
                         (self._clock(), principal.user_id, comment, signature.model_dump_json(), hold_id))
        released = self.hold(hold_id)
        assert released is not None
        self._append(AuditEvent.BATCH_RELEASED, principal, released.line, None, released.batch_id, reason=comment,
                     client=client, signature=signature, details={"hold": released.model_dump(mode="json")})
        self._announce(released)
        return released

    def _check_release(self, hold: BatchHold, principal: Principal, comment: str, signature: Signature) -> None:
        needed = Role[self._config.release_role.upper()]
        if not principal.has(needed):
            raise DecisionRefusedError(403, "role_not_allowed",
                                       f"releasing a held batch needs role {needed.name.lower()}; "
                                       f"{principal.user_id!r} is {principal.role.name.lower()}")
        if signature.user_id != principal.user_id:
            raise DecisionRefusedError(403, "signer_not_caller",
                                       f"the release is signed by {signature.user_id!r}, but requested by "
                                       f"{principal.user_id!r}: each user signs their own release")
        if signature.meaning is not SignatureMeaning.APPROVED:
            raise DecisionRefusedError(403, "signature_invalid",
                                       f"a release is signed with meaning 'approved', not {signature.meaning.value!r}")
        try:
            verify_signature(signature, release_hash(hold, comment), self._registry)
        except SignatureRefusedError as exc:
            raise DecisionRefusedError(403, "signature_invalid", str(exc)) from None

    # -- output ----------------------------------------------------------------------------------------

    def _announce(self, hold: BatchHold) -> None:
        try:
            self._publish_hold(hold.line, {"batch_id": hold.batch_id, "held": hold.held, "hold_id": hold.id,
                                           "reason": hold.reason, "held_ms": hold.held_ms,
                                           "released_ms": hold.released_ms, "released_by": hold.released_by})
        except Exception:  # noqa: BLE001 - stored already; the UNS copy must not lose the decision
            self.errors += 1
            log.exception("hold %d not published", hold.id)

    def _append(self, kind: AuditEvent, principal: Principal | None, line: str, cell: str | None,
                batch_id: str | None, *, reason: str | None = None, client: str | None = None,
                reason_code: str | None = None, message: str | None = None, signature: Signature | None = None,
                details: dict[str, Any] | None = None) -> None:
        self._audit.append(AuditEntry(
            event=kind, actor_user_id=principal.user_id if principal else f"service:{SOURCE}",
            actor_printed_name=principal.full_name if principal else None,
            auth_method=("ed25519-signature" if signature is not None else "token") if principal else "service",
            signature_meaning=signature.meaning.value if signature is not None else None,
            reason=reason, reason_code=reason_code, message=message, client_id=client, source=SOURCE,
            target=AuditTarget(isa95_path=line if cell is None else f"{line}/{cell}"), batch_id=batch_id,
            signatures=[json.loads(signature.model_dump_json())] if signature is not None else None,
            details=details))


def _exception(row: tuple[Any, ...]) -> AlarmException:
    return AlarmException(id=row[0], alarm_id=row[1], rule_index=row[2], line=row[3], cell=row[4], condition=row[5],
                          severity=row[6], cause=row[7], owner=row[8], action=row[9], batch_id=row[10],
                          phase=row[11], opened_ms=row[12], closed_ms=row[13], closed_by=row[14],
                          closing_comment=row[15], open=row[13] is None)


def _hold(row: tuple[Any, ...]) -> BatchHold:
    return BatchHold(id=row[0], line=row[1], batch_id=row[2], exception_id=row[3], reason=row[4], held_ms=row[5],
                     released_ms=row[6], released_by=row[7], release_comment=row[8], held=row[6] is None)
