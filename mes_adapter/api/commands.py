"""Commands to the plant floor, request side: submit, sign, status; and the allowlist for forms.

Refusals answer 4xx with the checker's reason code (``not_allowlisted``, ``out_of_range``, ...):
422 for a request the rules reject, 409 for a wrong machine state or an offline target, 429 when
the rule's rate limit is full; 503 when the adapter's MQTT session is down. Every refusal is in
the audit trail (``GET /api/audit/export``).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from mes_adapter.auth import Principal, Role
from mes_adapter.commands.service import CommandDraft, CommandRecord
from mes_adapter.service_api import ServiceApi
from uns.commands.model import Signature

from .deps import client_id, require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import AllowlistView, CommandSubmit, CommandView

router = APIRouter(prefix="/api", tags=["commands"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading commands")
operator = require(Role.OPERATOR, "submitting or signing a command")

REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody},
    429: {"model": ErrorBody}, 503: {"model": ErrorBody, "description": "MQTT session down: not sent"}}


def command_view(svc: ServiceApi, record: CommandRecord) -> CommandView:
    request = record.request
    return CommandView(
        command_id=request.command_id, status=record.status.value, message=record.message,
        command_hash=request.command_hash(), canonical=request.canonical_bytes().decode("utf-8"), request=request,
        signatures=list(request.signatures),
        decision=record.decision.model_dump(mode="json") if record.decision is not None else None,
        result=record.result.model_dump(mode="json") if record.result is not None else None,
        created_ms=record.created_ms, updated_ms=record.updated_ms, dispatched_ms=record.dispatched_ms,
        history=record.history, audit=svc.command_audit_trail(request.command_id),
        sign_with=(f"save 'request' as cmd.json; uns cmd sign cmd.json --user <you> --key <you>.key "
                   f"[--meaning approved]; POST the last entry of its 'signatures' to "
                   f"/api/commands/{request.command_id}/sign"))


@router.get("/allowlist", response_model=AllowlistView, summary="The command allowlist the adapter enforces")
def allowlist(svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> AllowlistView:
    allowlist = svc.command_allowlist()
    rules = []
    for line in allowlist.lines:
        for rule in line.metrics:
            equipment = svc.equipment_of(line.group_id, line.edge_node_id, rule.device_id)
            rules.append({"rule_id": line.rule_id(rule), "group_id": line.group_id,
                          "edge_node_id": line.edge_node_id, **rule.model_dump(mode="json", exclude_none=True),
                          "isa95_path": f"{equipment.topic}/{rule.metric}" if equipment is not None else None})
    return AllowlistView(version=allowlist.version, rules=rules)


@router.post("/commands", response_model=CommandView, status_code=201, responses=REFUSALS,
             summary="Submit a command (operator): checked against the allowlist, audited, sent once signed")
async def submit(body: CommandSubmit, request: Request, svc: ServiceApi = Depends(service),
                 who: Principal = Depends(operator)) -> CommandView:
    if body.request is not None:
        if any(v is not None for v in (body.group_id, body.edge_node_id, body.device_id, body.metric, body.reason)):
            raise ApiError(422, "request_or_fields", "give either 'request' or the command fields, not both")
        record = await svc.submit_command(who, client_id(request), request=body.request)
        return command_view(svc, record)
    missing = [name for name in ("group_id", "edge_node_id", "metric", "reason") if getattr(body, name) is None]
    if missing or "value" not in body.model_fields_set:
        raise ApiError(422, "missing_fields",
                       f"missing {missing + ([] if 'value' in body.model_fields_set else ['value'])}; "
                       "a command needs group_id, edge_node_id, metric, value and reason (device_id for DCMD)")
    assert body.group_id and body.edge_node_id and body.metric and body.reason
    draft = CommandDraft(group_id=body.group_id, edge_node_id=body.edge_node_id, device_id=body.device_id,
                         metric=body.metric, value=body.value, reason=body.reason, validity_s=body.validity_s)
    record = await svc.submit_command(who, client_id(request), draft=draft)
    return command_view(svc, record)


@router.post("/commands/{command_id}/sign", response_model=CommandView, responses=REFUSALS,
             summary="Add your Ed25519 signature (requester: operator; approving another's command: supervisor)")
async def sign(command_id: uuid.UUID, signature: Signature, svc: ServiceApi = Depends(service),
               who: Principal = Depends(operator)) -> CommandView:
    record = await svc.sign_command(who, command_id, signature)
    return command_view(svc, record)


@router.get("/commands", response_model=list[CommandView], summary="Recent commands, newest first")
def list_commands(limit: int = Query(50, ge=1, le=1000), svc: ServiceApi = Depends(service),
                  _: Principal = Depends(viewer)) -> list[CommandView]:
    return [command_view(svc, r) for r in svc.commands(limit)]


@router.get("/commands/{command_id}", response_model=CommandView | dict[str, Any],
            responses={404: {"model": ErrorBody}},
            summary="Status of one command (from the audit trail if the adapter restarted since)")
def get_command(command_id: uuid.UUID, svc: ServiceApi = Depends(service),
                _: Principal = Depends(viewer)) -> CommandView | dict[str, Any]:
    record = svc.command(command_id)
    if record is not None:
        return command_view(svc, record)
    trail = svc.command_audit_trail(command_id)
    if not trail:
        raise ApiError(404, "unknown_command", f"no command {command_id} in memory or in the audit trail")
    last = trail[-1]
    return {"command_id": str(command_id), "status": last.get("event"), "message": last.get("message") or "",
            "from_audit": True, "audit": trail}
