"""Audit entries for records that decide a batch: context, batch lifecycle, requeues, reasons,
dispositions and the configuration a service started with.

Why one module: a reviewer reading the chain needs every decision kind to carry the same fields
in the same places (who in ``actor_*`` / ``auth_method``, the batch in ``batch_id`` /
``work_order_id``, the line in ``target.isa95_path``, the decided content in ``details``), and a
service adding a new decision should find the existing kinds here instead of inventing a shape.
The event kinds themselves live in :class:`uns.audit.record.AuditEvent` (one enum for the chain).

Identity (``auth_method``):

* ``api-token`` — a REST caller authenticated by bearer token (the user id of the token's owner).
* ``ed25519-signature`` — a user who also signed the decision with their own key.
* ``broker-acl`` — a context published over MQTT on a line whose ``_context`` topic the broker's
  ACL lets exactly one broker user publish (that user is named). MQTT 3.1.1 (what the embedded
  broker speaks) carries no publisher identity to subscribers, so the binding in the broker's ACL
  is the only trustworthy source; the payload's ``asserted_by`` is free text and is recorded as a
  *claim* in ``details``, never as the actor.
* ``unattributed`` — an MQTT context on a line with no such binding: the record says so.
* ``service`` — the service itself (start-up reconciliation, an empty retained payload, config).

Everything here is pure: it builds :class:`~uns.audit.record.AuditEntry` values; the caller appends
them to its :class:`~uns.audit.chain.AuditLog` through :class:`DecisionAudit`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .record import AuditEntry, AuditEvent, AuditRecord, AuditTarget


class AuthMethod:
    API_TOKEN = "api-token"
    SIGNATURE = "ed25519-signature"
    BROKER_ACL = "broker-acl"
    UNATTRIBUTED = "unattributed"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a decision and how that was established (see the module docstring)."""

    user_id: str
    auth_method: str
    printed_name: str | None = None
    client_id: str | None = None

    @classmethod
    def service(cls, name: str) -> Actor:
        return cls(f"service:{name}", AuthMethod.SERVICE)

    @classmethod
    def broker_user(cls, username: str | None) -> Actor:
        """The publisher of an MQTT message: the ACL-bound broker user, or unattributed."""
        if username is None:
            return cls("mqtt:unattributed", AuthMethod.UNATTRIBUTED)
        return cls(f"mqtt:{username}", AuthMethod.BROKER_ACL)


class _Appender(Protocol):
    def append(self, entry: AuditEntry) -> AuditRecord: ...


def classify_context(previous: dict[str, Any] | None, assertion: dict[str, Any]) -> AuditEvent:
    """The decision an accepted context assertion made, given the context in force before it.

    ``ended`` ends the batch; a batch id different from the one in force starts one; the same
    batch with another phase re-phases it; anything else (a corrected field) is a plain assertion."""
    if assertion.get("ended"):
        return AuditEvent.BATCH_ENDED
    if previous is None or previous.get("ended") or previous.get("batch_id") != assertion.get("batch_id"):
        return AuditEvent.BATCH_STARTED if assertion.get("batch_id") is not None else AuditEvent.CONTEXT_ASSERTED
    if previous.get("phase") != assertion.get("phase"):
        return AuditEvent.BATCH_PHASE
    return AuditEvent.CONTEXT_ASSERTED


def _entry(event: AuditEvent, actor: Actor, source: str, *, line: str | None = None, batch_id: str | None = None,
           work_order_id: str | None = None, **fields: Any) -> AuditEntry:
    return AuditEntry(event=event, actor_user_id=actor.user_id, actor_printed_name=actor.printed_name,
                      auth_method=actor.auth_method, client_id=actor.client_id, source=source,
                      target=AuditTarget(isa95_path=line) if line is not None else None,
                      batch_id=batch_id, work_order_id=work_order_id, **fields)


def context_entry(assertion: dict[str, Any], previous: dict[str, Any] | None, actor: Actor, *, source: str,
                  via: str) -> AuditEntry:
    """An accepted context assertion (``via``: ``api`` or ``uns``), classified by :func:`classify_context`.

    ``details`` holds the whole assertion as accepted (so the record alone says what the batch
    record was bound to) and the asserter's free-text claim separately from the actor."""
    event = classify_context(previous, assertion)
    return _entry(event, actor, source, line=assertion.get("line"), batch_id=assertion.get("batch_id"),
                  work_order_id=assertion.get("work_order_id"), outcome="accepted",
                  old_value=None if previous is None else {"batch_id": previous.get("batch_id"),
                                                           "phase": previous.get("phase"),
                                                           "ended": previous.get("ended", False)},
                  details={"via": via, "assertion": assertion, "claimed_asserted_by": assertion.get("asserted_by")})


def requeue_entry(confirmation_id: str, actor: Actor, *, source: str, line: str | None, batch_id: str | None,
                  attempts_before: int) -> AuditEntry:
    return _entry(AuditEvent.OUTBOX_REQUEUED, actor, source, line=line, batch_id=batch_id, outcome="requeued",
                  details={"confirmation_id": confirmation_id, "attempts_before": attempts_before})


def reason_code_entry(actor: Actor, *, source: str, line: str, batch_id: str | None, stop_id: str, code: str,
                      previous_code: str | None, reason: str | None = None) -> AuditEntry:
    """A downtime reason code entered (operator) or mapped (PLC tag: the service is the actor)."""
    return _entry(AuditEvent.REASON_CODE_SET, actor, source, line=line, batch_id=batch_id, reason=reason,
                  old_value=previous_code, requested_value=code, outcome="recorded", details={"stop_id": stop_id})


def disposition_entry(actor: Actor, *, source: str, line: str, batch_id: str, disposition_id: str,
                      quantities: dict[str, float], pending_before: float, reason: str | None,
                      signatures: list[dict[str, Any]] | None, payload_sha256: str | None) -> AuditEntry:
    return _entry(AuditEvent.DISPOSITION_RECORDED, actor, source, line=line, batch_id=batch_id, reason=reason,
                  old_value={"pending": pending_before}, requested_value=quantities, outcome="recorded",
                  signatures=signatures, payload_sha256=payload_sha256, details={"disposition_id": disposition_id})


def disposition_refused_entry(actor: Actor, *, source: str, line: str, batch_id: str, reason_code: str,
                              message: str, quantities: dict[str, float] | None) -> AuditEntry:
    return _entry(AuditEvent.DISPOSITION_REFUSED, actor, source, line=line, batch_id=batch_id,
                  reason_code=reason_code, message=message, requested_value=quantities, outcome="refused")


def order_entry(event: AuditEvent, actor: Actor, *, source: str, order: dict[str, Any], outcome: str,
                reason_code: str | None = None, message: str | None = None, reason: str | None = None,
                old_value: Any = None, command_id: str | None = None) -> AuditEntry:
    """An order decision: received or refused at intake (``order`` is the body as sent, so a refused
    order is on record with exactly what the ERP asked), or its start cancelled (with why).

    The order id is the work order (and the batch id once it runs), so it goes in ``work_order_id``.
    A cancelled start names its command in ``command_id``, so that command's trail ends with the
    cancel even when the adapter had forgotten the command (a restart) and could not cancel it."""
    line = order.get("line")
    return _entry(event, actor, source, line=line if isinstance(line, str) else None,
                  work_order_id=order.get("order_id") if isinstance(order.get("order_id"), str) else None,
                  outcome=outcome, reason_code=reason_code, message=message, reason=reason, old_value=old_value,
                  requested_value=order, command_id=command_id)


def lot_entry(event: AuditEvent, actor: Actor, *, source: str, assertion: dict[str, Any], via: str,
              claimed_by: str | None = None) -> AuditEntry:
    """A lot assertion accepted into the genealogy (consumed, produced, or a split/merge link).

    ``details`` holds the assertion as accepted; ``via`` is ``api`` or ``uns``, and a UNS publisher's
    free-text ``asserted_by`` is kept as a claim, never as the actor (see :class:`Actor`)."""
    return _entry(event, actor, source, line=assertion.get("line"), batch_id=assertion.get("batch_id"),
                  outcome="accepted",
                  details={"via": via, "assertion": assertion, "claimed_asserted_by": claimed_by})


def crew_entry(actor: Actor, *, source: str, presence: dict[str, Any], via: str, claimed_by: str | None = None,
               closed: bool = False) -> AuditEntry:
    """A person's presence on a line accepted (labour time of the batches it overlaps), or an open
    one closed (``old_value`` says it was open). ``details`` as for lots (:func:`lot_entry`)."""
    return _entry(AuditEvent.CREW_ASSERTED, actor, source, line=presence.get("line"), outcome="accepted",
                  old_value={"end_ms": None} if closed else None, requested_value=presence,
                  details={"via": via, "closed": closed, "claimed_asserted_by": claimed_by})


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes, None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def config_entries(files: Iterable[tuple[str, Path]], actor: Actor, *, source: str) -> list[AuditEntry]:
    """One ``config_loaded`` record per ``(role, path)``: what the service decides batches by.

    A file that cannot be read is recorded with ``sha256: null`` (the record still says it was named)."""
    out = []
    for role, path in files:
        digest = file_sha256(path)
        out.append(_entry(AuditEvent.CONFIG_LOADED, actor, source, outcome="loaded" if digest else "unreadable",
                          details={"role": role, "path": str(path), "sha256": digest}))
    return out


class DecisionAudit:
    """The writer services call: appends decision entries to the chain, in order."""

    def __init__(self, log: _Appender, source: str) -> None:
        self._log = log
        self.source = source

    def record(self, entry: AuditEntry) -> AuditRecord:
        return self._log.append(entry)

    def context(self, assertion: dict[str, Any], previous: dict[str, Any] | None, actor: Actor,
                via: str) -> AuditRecord:
        return self.record(context_entry(assertion, previous, actor, source=self.source, via=via))

    def config_loaded(self, files: Iterable[tuple[str, Path]]) -> list[AuditRecord]:
        return [self.record(e) for e in config_entries(files, Actor.service(self.source), source=self.source)]

    def reason_code(self, actor: Actor, *, line: str, batch_id: str | None, stop_id: str, code: str,
                    previous_code: str | None, reason: str | None = None) -> AuditRecord:
        """A downtime reason code set for a stop (operator entry, or mapped from a PLC tag by the service)."""
        return self.record(reason_code_entry(actor, source=self.source, line=line, batch_id=batch_id,
                                             stop_id=stop_id, code=code, previous_code=previous_code, reason=reason))

    def requeue(self, confirmation_id: str, actor: Actor, *, line: str | None, batch_id: str | None,
                attempts_before: int) -> AuditRecord:
        return self.record(requeue_entry(confirmation_id, actor, source=self.source, line=line, batch_id=batch_id,
                                         attempts_before=attempts_before))


__all__ = ["Actor", "AuthMethod", "DecisionAudit", "classify_context", "config_entries", "context_entry",
           "crew_entry", "disposition_entry", "disposition_refused_entry", "file_sha256", "lot_entry", "order_entry",
           "reason_code_entry", "requeue_entry"]
