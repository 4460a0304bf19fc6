"""Batch context through the API (start, phase, end) and the contextualized batch records.

An API assertion takes the line's next ``seq`` (last accepted + 1) and the caller as ``asserted_by``;
it is stored first and then published retained on ``<line>/_context/batch`` by the service, so plant
apps listening to the UNS see the same context. Starting while another batch runs is refused (409):
end it first, so no batch is ever silently cut short. A ``since_ms`` outside the recent past (the
counter reorder horizon) or more than a minute ahead is refused (422, naming the field and the
accepted range; see :mod:`mes_adapter.context.plausible`): seconds sent as milliseconds would
otherwise open a batch that began in 1970.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from mes_adapter.auth import Principal, Role
from mes_adapter.context import ContextAssertion
from mes_adapter.context.plausible import ImplausibleTimeError, TimeWindow
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import (
    BatchEnd,
    BatchInfo,
    BatchPhase,
    BatchRecords,
    BatchStart,
    BoundRecordView,
    ContextResult,
    LineRecords,
)
from .views import batch_info, current_batch

router = APIRouter(prefix="/api", tags=["batches"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading batches")
#: who may start, phase and end batches; ``GET /api/me`` tells the dashboard from this same value
CONTEXT_ROLE = Role.OPERATOR
operator = require(CONTEXT_ROLE, "changing batch context")

_CONFLICT = {409: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def _next_seq(svc: ServiceApi, line: str) -> int:
    last = svc.last_context_seq(line)
    return 0 if last is None else last + 1


def _since(svc: ServiceApi, since_ms: int | None) -> int:
    """The asserted change-point time: now, or ``since_ms`` when it is plausible (else 422)."""
    now = now_ms()
    if since_ms is None:
        return now
    window = TimeWindow(max_back_ms=svc.reorder_horizon_ms())
    try:
        return window.check("since_ms", since_ms, now)
    except ImplausibleTimeError as exc:
        raise ApiError(422, "implausible_time", str(exc), field=exc.field,
                       earliest_ms=exc.earliest_ms, latest_ms=exc.latest_ms) from None


def _assert(svc: ServiceApi, assertion: ContextAssertion, who: Principal) -> ContextResult:
    outcome = svc.assert_context(assertion, who)
    return ContextResult(outcome=outcome.value, assertion=assertion.model_dump(mode="json"),
                         batch=current_batch(svc, assertion.line))


@router.post("/lines/{line:path}/batch/start", response_model=ContextResult, status_code=201, responses=_CONFLICT,
             summary="Start a batch on a line (operator)")
def start_batch(line: str, body: BatchStart, svc: ServiceApi = Depends(service),
                who: Principal = Depends(operator)) -> ContextResult:
    key = line_key(line)
    svc.check_owns(key)  # another instance's batches are read here, never changed
    since = _since(svc, body.since_ms)
    svc.reconcile_line(key)  # a batch left from before a restart on an idle line is ended first
    running = svc.batch_at(key, now_ms())
    if running is not None:
        raise ApiError(409, "batch_running",
                       f"batch {running.batch_id!r} is running on {key}; end it before starting {body.batch_id!r}")
    if svc.batch_window(key, body.batch_id) is not None:
        raise ApiError(409, "batch_id_used", f"batch {body.batch_id!r} already ran on {key}; batch ids are unique")
    assertion = ContextAssertion(
        line=key, seq=_next_seq(svc, key), since_ms=since,
        batch_id=body.batch_id, work_order_id=body.work_order_id, operation_id=body.operation_id,
        product_id=body.product_id, phase=body.phase, target_quantity=body.target_quantity, uom=body.uom,
        asserted_by=who.user_id)
    return _assert(svc, assertion, who)


@router.post("/lines/{line:path}/batch/phase", response_model=ContextResult, responses=_CONFLICT,
             summary="Change the phase of the running batch (operator)")
def batch_phase(line: str, body: BatchPhase, svc: ServiceApi = Depends(service),
                who: Principal = Depends(operator)) -> ContextResult:
    key = line_key(line)
    svc.check_owns(key)  # another instance's batches are read here, never changed
    since = _since(svc, body.since_ms)
    running = svc.batch_at(key, since)
    if running is None:
        raise ApiError(409, "no_batch_running", f"no batch is running on {key} at {since}; start one first")
    assertion = running.model_copy(update={"seq": _next_seq(svc, key), "since_ms": since, "phase": body.phase,
                                           "asserted_by": who.user_id})
    return _assert(svc, ContextAssertion.model_validate(assertion.model_dump()), who)


@router.post("/lines/{line:path}/batch/end", response_model=ContextResult, responses=_CONFLICT,
             summary="End the running batch (operator)")
def end_batch(line: str, body: BatchEnd, svc: ServiceApi = Depends(service),
              who: Principal = Depends(operator)) -> ContextResult:
    key = line_key(line)
    svc.check_owns(key)  # another instance's batches are read here, never changed
    since = _since(svc, body.since_ms)
    running = svc.batch_at(key, since)
    if running is None:
        raise ApiError(409, "no_batch_running", f"no batch is running on {key} at {since}")
    if body.batch_id is not None and body.batch_id != running.batch_id:
        raise ApiError(409, "other_batch_running",
                       f"batch {running.batch_id!r} is running on {key}, not {body.batch_id!r}")
    assertion = ContextAssertion(line=key, seq=_next_seq(svc, key), since_ms=since, batch_id=running.batch_id,
                                 work_order_id=running.work_order_id, asserted_by=who.user_id, ended=True)
    result = _assert(svc, assertion, who)
    svc.run_confirmations()
    window = svc.batch_window(key, running.batch_id)
    return result.model_copy(update={"batch": batch_info(svc, window) if window else None})


class ReconciliationView(BaseModel):
    """What the adapter did with a line's context when it started (see docs/architecture.md)."""

    line: str
    action: str
    batch_id: str | None
    end_ms: int | None
    detail: str


@router.get("/lines/{line:path}/batch/reconciliation", response_model=ReconciliationView,
            responses={404: {"model": ErrorBody}},
            summary="How the line's batch context was reconciled with the line at the adapter's start")
def reconciliation(line: str, svc: ServiceApi = Depends(service),
                   _: Principal = Depends(viewer)) -> ReconciliationView:
    key = line_key(line)
    done = svc.reconciliation(key)
    if done is None:
        raise ApiError(404, "not_reconciled", f"{key} has not been reconciled since the adapter started: "
                       "it happens when the line's first birth arrives")
    return ReconciliationView(line=done.line, action=done.action.value, batch_id=done.batch_id,
                              end_ms=done.end_ms, detail=done.detail)


@router.get("/batches", response_model=list[BatchInfo], summary="Batches per line, newest first, with counts")
def batches(line: str | None = Query(None, description="only this line"),
            from_ms: int | None = Query(None, ge=0, le=2**62), to_ms: int | None = Query(None, ge=0, le=2**62),
            limit: int = Query(100, ge=1, le=1000),
            svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[BatchInfo]:
    lines = [line_key(line)] if line is not None else svc.context_lines()
    out = [batch_info(svc, w) for key in lines for w in svc.batch_windows(key, from_ms, to_ms)]
    return sorted(out, key=lambda b: b.start_ms, reverse=True)[:limit]


@router.get("/batches/{batch_id}/records", response_model=BatchRecords,
            responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Readings, alarms and states recorded while a batch ran, with their context")
def batch_records(batch_id: str, line: str | None = Query(None, description="needed if the id ran on several lines"),
                  metric: str | None = Query(None, min_length=1), limit: int = Query(5000, ge=1, le=50_000),
                  svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> BatchRecords:
    lines = [line_key(line)] if line is not None else svc.context_lines()
    found = [key for key in lines if svc.batch_window(key, batch_id) is not None]
    if not found:
        raise ApiError(404, "unknown_batch", f"batch {batch_id!r} never ran"
                       + (f" on {lines[0]}" if line is not None else ""))
    if len(found) > 1:
        raise ApiError(409, "ambiguous_batch", f"batch {batch_id!r} ran on {found}; add ?line=")
    rows = svc.batch_records(found[0], batch_id, metric=metric, limit=limit + 1)
    views = [BoundRecordView(**r.as_dict()) for r in rows[:limit]]
    return BatchRecords(line=found[0], batch_id=batch_id, records=views, truncated=len(rows) > limit)


@router.get("/lines/{line:path}/records", response_model=LineRecords,
            responses={422: {"model": ErrorBody}},
            summary="Readings, alarms and states of a line in a time range, each with the batch context of its time")
def line_records(line: str, from_ms: int = Query(..., ge=0, le=2**62), to_ms: int = Query(..., ge=0, le=2**62),
                 metric: str | None = Query(None, min_length=1),
                 cell: str | None = Query(None, description="a cell's records only; empty: the line-level ones"),
                 limit: int = Query(5000, ge=1, le=50_000),
                 svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> LineRecords:
    """Any line whose records are in this instance's store: with the shared PostgreSQL state
    (``mes.state_dsn``) the lines of every adapter instance."""
    key = line_key(line)
    if to_ms < from_ms:
        raise ApiError(422, "bad_range", f"from_ms {from_ms} is after to_ms {to_ms}")
    rows = svc.line_records(key, from_ms, to_ms, metric=metric, cell=cell, limit=limit + 1)
    return LineRecords(line=key, from_ms=from_ms, to_ms=to_ms, records=[BoundRecordView(**r.as_dict())
                                                                        for r in rows[:limit]],
                       truncated=len(rows) > limit)

