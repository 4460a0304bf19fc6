"""Approvals: the queue of commands waiting for *your* signature, and cancel / reject.

The two-person rule needs a place where a supervisor finds what waits for them: ``GET
/api/approvals`` lists the open commands the caller may sign (their own unsigned ones; for a
supervisor, other users' commands awaiting a second signature), each with the target's ISA-95
path and its current value beside the requested one. Signing stays ``POST
/api/commands/{id}/sign``. ``cancel`` withdraws an open command (its requester or a supervisor);
``reject`` is an approver's refusal with a reason (a supervisor, not the requester). Both are
audited and final. Commands reach this queue only after every rule that can be checked before
signing (machine state, range, rate) passed; all are checked again when the last signature arrives.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.auth import Principal, Role
from mes_adapter.commands.service import CommandRecord
from mes_adapter.service_api import ServiceApi

from .commands import command_view
from .deps import require, service
from .errors import AUTH_RESPONSES, ErrorBody
from .models import CommandView

router = APIRouter(prefix="/api", tags=["approvals"], responses=AUTH_RESPONSES)
operator = require(Role.OPERATOR, "the approvals queue")

_CLOSE_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}, 409: {"model": ErrorBody},
                                                  422: {"model": ErrorBody}}


class ApprovalView(BaseModel):
    """One command waiting for the caller's signature."""

    target: str = Field(description="ISA-95 path of the written metric (Sparkplug ids are in command.request)")
    current_value: Any = Field(description="the target's live value now (null when not born)")
    current_quality: str | None = Field(description="its quality; null when the metric was never born")
    requested_value: Any
    requested_by: str
    critical: bool
    sign_as: str = Field(description="the meaning your signature would carry: authored (own) or approved")
    command: CommandView


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why (audited)")


def approval_view(svc: ServiceApi, who: Principal, record: CommandRecord) -> ApprovalView:
    request = record.request
    current = svc.command_current_value(request)
    own = request.requested_by == who.user_id
    return ApprovalView(
        target=svc.command_target_path(request) or request.target_label,
        current_value=current[0] if current else None, current_quality=current[1] if current else None,
        requested_value=request.value, requested_by=request.requested_by,
        critical=bool(record.decision and record.decision.critical), sign_as="authored" if own else "approved",
        command=command_view(svc, record))


@router.get("/approvals", response_model=list[ApprovalView],
            summary="Commands waiting for your signature, oldest first, with current and requested value")
def approvals(svc: ServiceApi = Depends(service), who: Principal = Depends(operator)) -> list[ApprovalView]:
    return [approval_view(svc, who, r) for r in svc.approvals(who)]


@router.post("/commands/{command_id}/cancel", response_model=CommandView, responses=_CLOSE_ERRORS,
             summary="Withdraw an open command (its requester, or a supervisor); audited")
def cancel(command_id: uuid.UUID, body: CloseBody, svc: ServiceApi = Depends(service),
           who: Principal = Depends(operator)) -> CommandView:
    return command_view(svc, svc.cancel_command(who, command_id, body.reason))


@router.post("/commands/{command_id}/reject", response_model=CommandView, responses=_CLOSE_ERRORS,
             summary="Refuse to approve an open command, with a reason (supervisor, not the requester); audited")
def reject(command_id: uuid.UUID, body: CloseBody, svc: ServiceApi = Depends(service),
           who: Principal = Depends(operator)) -> CommandView:
    return command_view(svc, svc.reject_command(who, command_id, body.reason))
