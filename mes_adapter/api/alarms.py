"""Condition alarms, and the exceptions and batch holds alarm rules open.

``GET /api/exceptions`` and ``POST /api/exceptions/{id}/close``; ``GET /api/holds`` and
``POST /api/holds/{id}/release`` (a signature of the caller, role ``alarms.release_role``).

``GET /api/alarms`` lists the newest state of every condition that is active or still retained
(unacknowledged or unconfirmed); ``GET /api/alarms/history`` the journal rows, one per change, each
bound to the batch and phase running at the event's source time (docs/alarms.md).

``POST /api/alarms/acknowledge`` and ``/confirm`` create an ordinary command (allowlist, Ed25519
signatures, audit chain, the edge's read-back): they answer like ``POST /api/commands``, with the
command to sign at ``/api/commands/{id}/sign`` and its result on ``GET /api/commands/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.alarms import AlarmEvent, AlarmException, BatchHold, DecisionRefusedError, Shelf
from mes_adapter.auth import Principal, Role
from mes_adapter.commands.conditions import ConditionMethod
from mes_adapter.service_api import ServiceApi
from uns.commands.model import Signature

from .commands import REFUSALS, command_view
from .deps import client_id, require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import CommandView
from .plant import known_line

router = APIRouter(prefix="/api", tags=["alarms"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading alarms")


@router.get("/alarms", response_model=list[AlarmEvent], responses={404: {"model": ErrorBody}},
            summary="Alarms active or still retained (unacknowledged / unconfirmed), newest state each")
def active_alarms(line: str | None = Query(None, description="only this line (<enterprise>/<site>/<area>/<line>)"),
                  svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[AlarmEvent]:
    return svc.active_alarms(None if line is None else known_line(svc, line))


@router.get("/alarms/history", response_model=list[AlarmEvent],
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="The alarm journal: one row per change, with the batch and phase at source time")
def alarm_history(line: str | None = Query(None, description="only this line"),
                  batch_id: str | None = Query(None, min_length=1, description="only rows bound to this batch"),
                  phase: str | None = Query(None, min_length=1, description="only rows bound to this phase"),
                  condition: str | None = Query(None, min_length=1, description="ConditionName, e.g. Jam"),
                  from_ms: int | None = Query(None, ge=0, le=2**62, description="source time at or after"),
                  to_ms: int | None = Query(None, ge=0, le=2**62, description="source time before"),
                  limit: int = Query(1000, ge=1, le=10_000),
                  svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[AlarmEvent]:
    key = None if line is None else known_line(svc, line)
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ApiError(422, "bad_range", f"from_ms {from_ms} is after to_ms {to_ms}")
    return svc.alarm_history(line=key, batch_id=batch_id, phase=phase, condition=condition, from_ms=from_ms,
                             to_ms=to_ms, limit=limit)


# -- exceptions and holds (alarm rules, docs/alarms.md "Exceptions and holds") ----------------------


class CloseException(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000, description="the closing comment: what was done")


class ShelveAlarm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str = Field(min_length=1, description="<enterprise>/<site>/<area>/<line>")
    cell: str | None = Field(None, min_length=1, description="the condition's cell")
    condition: str = Field(min_length=1, max_length=200, description="ConditionName")
    duration_s: float = Field(gt=0, le=7 * 86400, description="how long (shelving expires by itself)")
    comment: str = Field(min_length=1, max_length=2000, description="why")


class ConditionCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: str = Field(min_length=1, description="<enterprise>/<site>/<area>/<line>")
    cell: str = Field(min_length=1, max_length=200, description="the condition's cell (its Sparkplug device)")
    condition: str = Field(min_length=1, max_length=200, pattern=r"^[^/#+]+$", description="ConditionName, e.g. Jam")
    comment: str = Field(min_length=1, max_length=2000,
                         description="the Part 9 comment, also the command's reason (audited)")
    validity_s: float | None = Field(None, gt=0, le=86_400, description="how long the command may wait")


class ReleaseHold(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000, description="why the batch may go on")
    signature: Signature = Field(description="the caller's Ed25519 signature (meaning 'approved') over "
                                             "release_hash(hold, comment) as command_hash")


# The two writes are ``async``: they run on the event loop, like the alarm stream that writes the same
# SQLite connection, so two transactions never interleave on it (a threadpool handler could).


def _refused(exc: DecisionRefusedError) -> ApiError:
    return ApiError(exc.status, exc.reason, str(exc))


@router.get("/exceptions", response_model=list[AlarmException], responses={404: {"model": ErrorBody}},
            summary="Production exceptions opened by alarm rules (cause, owner, action, closing comment)")
def exceptions(line: str | None = Query(None, description="only this line"),
               open_only: bool = Query(False, alias="open", description="only those not closed yet"),
               batch_id: str | None = Query(None, min_length=1, description="only those of this batch"),
               svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[AlarmException]:
    return svc.alarm_exceptions(None if line is None else known_line(svc, line), open_only=open_only,
                                batch_id=batch_id)


@router.post("/exceptions/{exception_id}/close", response_model=AlarmException,
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
             summary="Close an exception with a comment (operator); audited")
async def close_exception(body: CloseException, request: Request, svc: ServiceApi = Depends(service),
                    principal: Principal = Depends(require(Role.OPERATOR, "closing an exception")),
                    exception_id: int = Path(ge=1, le=2**62)) -> AlarmException:
    try:
        return svc.close_alarm_exception(exception_id, principal, body.comment, client_id(request))
    except DecisionRefusedError as exc:
        raise _refused(exc) from None


@router.get("/holds", response_model=list[BatchHold], responses={404: {"model": ErrorBody}},
            summary="Batch holds opened by alarm rules; a held batch's final confirmation waits")
def holds(line: str | None = Query(None, description="only this line"),
          held: bool = Query(False, description="only holds not released yet"),
          svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[BatchHold]:
    return svc.batch_holds(None if line is None else known_line(svc, line), held_only=held)


@router.post("/holds/{hold_id}/release", response_model=BatchHold,
             responses={403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
             summary="Release a held batch with the caller's signature (role alarms.release_role); audited")
async def release_hold(body: ReleaseHold, request: Request, svc: ServiceApi = Depends(service),
                 principal: Principal = Depends(require(Role.OPERATOR, "releasing a batch")),
                 hold_id: int = Path(ge=1, le=2**62)) -> BatchHold:
    try:
        return svc.release_batch_hold(hold_id, principal, body.comment, body.signature, client_id(request))
    except DecisionRefusedError as exc:
        raise _refused(exc) from None


@router.get("/alarms/shelved", response_model=list[Shelf], responses={404: {"model": ErrorBody}},
            summary="Conditions shelved now (no exception, no hold until the shelf expires)")
def shelved(line: str | None = Query(None, description="only this line"),
            svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[Shelf]:
    return svc.alarm_shelves(None if line is None else known_line(svc, line))


@router.post("/alarms/shelve", response_model=Shelf, status_code=201, responses={404: {"model": ErrorBody}},
             summary="Shelve a condition for a time (operator); audited")
async def shelve(body: ShelveAlarm, request: Request, svc: ServiceApi = Depends(service),
                 principal: Principal = Depends(require(Role.OPERATOR, "shelving an alarm"))) -> Shelf:
    key = known_line(svc, body.line)
    return svc.shelve_alarm(key, body.cell, body.condition, body.duration_s, principal, body.comment,
                            client_id(request))


async def _condition_command(method: ConditionMethod, body: ConditionCommand, request: Request, svc: ServiceApi,
                             who: Principal) -> CommandView:
    line = known_line(svc, body.line)
    try:
        record = await svc.condition_command(who, client_id(request), line=line, cell=body.cell,
                                             condition=body.condition, method=method, comment=body.comment,
                                             validity_s=body.validity_s)
    except ValueError as exc:  # a cell name the ISA-95 mapping refuses
        raise ApiError(422, "invalid_cell", str(exc)) from None
    return command_view(svc, record)


_ACK_SUMMARY = ("Acknowledge an OPC UA condition (operator): a command like any other, signed at "
                "/api/commands/{id}/sign, confirmed when the edge reads AckedState back true")


@router.post("/alarms/acknowledge", response_model=CommandView, status_code=201, responses=REFUSALS,
             summary=_ACK_SUMMARY)
async def acknowledge(body: ConditionCommand, request: Request, svc: ServiceApi = Depends(service),
                      who: Principal = Depends(require(Role.OPERATOR, "acknowledging an alarm"))) -> CommandView:
    return await _condition_command("acknowledge", body, request, svc, who)


@router.post("/alarms/confirm", response_model=CommandView, status_code=201, responses=REFUSALS,
             summary="Confirm an acknowledged OPC UA condition (operator); as /alarms/acknowledge, read back "
                     "through ConfirmedState")
async def confirm(body: ConditionCommand, request: Request, svc: ServiceApi = Depends(service),
                  who: Principal = Depends(require(Role.OPERATOR, "confirming an alarm"))) -> CommandView:
    return await _condition_command("confirm", body, request, svc, who)
