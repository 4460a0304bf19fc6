"""Audit entries for each step of a command, filled the same way by the host and the edge.

One function per kind of step so every component records the same fields for the same event
(who, what, when, where, old value, new value, why); the audit log
(:class:`uns.audit.chain.AuditLog`) adds seq, time and hashes. ``context`` carries who/where facts
the command itself does not: the client the request came from, the component writing, the batch
and work order running on the line, and the OPC UA endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uns.audit.record import AuditEntry, AuditEvent, AuditTarget

from .allowlist import WritableMetric
from .checker import Decision
from .model import CommandRequest, CommandResult, Outcome, Signature

SIGNATURE_AUTH = "ed25519-signature"

#: the audit event that closes a command, by result outcome
RESULT_EVENTS: dict[Outcome, AuditEvent] = {
    Outcome.CONFIRMED: AuditEvent.READBACK_OK,
    Outcome.MISMATCH: AuditEvent.READBACK_MISMATCH,
    Outcome.TIMEOUT: AuditEvent.READBACK_TIMEOUT,
    Outcome.FAILED: AuditEvent.FAILED,
    Outcome.EXPIRED: AuditEvent.EXPIRED,
    Outcome.REFUSED: AuditEvent.REFUSED,
}


@dataclass(frozen=True, slots=True)
class AuditContext:
    source: str | None = None
    client_id: str | None = None
    isa95_path: str | None = None
    opcua_endpoint: str | None = None
    batch_id: str | None = None
    work_order_id: str | None = None


def target_of(request: CommandRequest, rule: WritableMetric | None, context: AuditContext) -> AuditTarget:
    node_id = namespace = None
    if rule is not None and rule.write is not None:
        node_id, namespace = rule.write.node_id, rule.write.namespace_uri
    elif rule is not None and rule.call is not None:
        node_id, namespace = rule.call.method_node_id, rule.call.namespace_uri
    return AuditTarget(isa95_path=context.isa95_path, group_id=request.group_id, edge_node_id=request.edge_node_id,
                       device_id=request.device_id, metric=request.metric, opcua_endpoint=context.opcua_endpoint,
                       namespace_uri=namespace, node_id=node_id)


def signature_record(signature: Signature) -> dict[str, Any]:
    """A signature as stored in the audit trail: enough to re-verify it offline."""
    return signature.model_dump(mode="json")


def command_entry(event: AuditEvent, request: CommandRequest, context: AuditContext, *,
                  rule: WritableMetric | None = None, decision: Decision | None = None, **fields: Any) -> AuditEntry:
    """The fields every step shares, plus ``fields`` (any :class:`AuditEntry` field)."""
    base: dict[str, Any] = {
        "event": event,
        "command_id": str(request.command_id),
        "reason": request.reason,
        "client_id": context.client_id,
        "source": context.source,
        "target": target_of(request, rule, context),
        "requested_value": request.value,
        "batch_id": context.batch_id,
        "work_order_id": context.work_order_id,
        "payload_sha256": request.command_hash(),
    }
    if decision is not None:
        base.update(allowlist_rule_id=decision.rule_id, allowlist_version=decision.allowlist_version)
        if not decision.allowed:
            base.update(reason_code=decision.reason.value if decision.reason else None, message=decision.message,
                        outcome=Outcome.REFUSED.value)
    base.update(fields)
    return AuditEntry(**base)


def requested(request: CommandRequest, context: AuditContext) -> AuditEntry:
    return command_entry(AuditEvent.REQUESTED, request, context, actor_user_id=request.requested_by)


def signed(request: CommandRequest, signature: Signature, context: AuditContext) -> AuditEntry:
    return command_entry(AuditEvent.SIGNED, request, context, actor_user_id=signature.user_id,
                         actor_printed_name=signature.full_name, signature_meaning=signature.meaning.value,
                         auth_method=SIGNATURE_AUTH, signatures=[signature_record(signature)])


def refused(request: CommandRequest, decision: Decision, context: AuditContext,
            rule: WritableMetric | None = None) -> AuditEntry:
    return command_entry(AuditEvent.REFUSED, request, context, rule=rule, decision=decision,
                         actor_user_id=request.requested_by)


def dispatched(request: CommandRequest, decision: Decision, context: AuditContext,
               rule: WritableMetric | None = None) -> AuditEntry:
    """The command left for the edge; both signers are named (11.50 manifestation)."""
    first = next((s for s in request.signatures if s.user_id == request.requested_by), None)
    second = next((s for s in request.signatures if s.user_id != request.requested_by), None)
    return command_entry(
        AuditEvent.DISPATCHED, request, context, rule=rule, decision=decision,
        actor_user_id=request.requested_by,
        actor_printed_name=first.full_name if first else None,
        signature_meaning=first.meaning.value if first else None,
        auth_method=SIGNATURE_AUTH,
        second_signer_user_id=second.user_id if second else None,
        second_signer_printed_name=second.full_name if second else None,
        second_signer_meaning=second.meaning.value if second else None,
        signatures=[signature_record(s) for s in request.signatures],
    )


def result_entry(request: CommandRequest, result: CommandResult, context: AuditContext,
                 rule: WritableMetric | None = None, event: AuditEvent | None = None) -> AuditEntry:
    """The step a result reports (``event`` overrides, e.g. ``written`` before the read-back)."""
    return command_entry(
        event or RESULT_EVENTS[result.outcome], request, context, rule=rule,
        actor_user_id=request.requested_by, outcome=result.outcome.value,
        reason_code=result.reason.value if result.reason else None, message=result.message or None,
        old_value=result.old_value, old_status_code=result.old_status_code,
        old_source_ts_ms=result.old_source_ts_ms, write_status_code=result.write_status_code,
        readback_value=result.readback_value, readback_status_code=result.readback_status_code,
        readback_source_ts_ms=result.readback_source_ts_ms,
    )


__all__ = ["RESULT_EVENTS", "SIGNATURE_AUTH", "AuditContext", "command_entry", "dispatched", "refused",
           "requested", "result_entry", "signature_record", "signed", "target_of"]
