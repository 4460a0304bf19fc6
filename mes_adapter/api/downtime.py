"""Stops of a line and their reason codes: what an operator sees and explains (docs/mes-downtime.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.auth import Principal, Role
from mes_adapter.downtime.config import ReasonCode, UnknownReasonError
from mes_adapter.downtime.losses import losses_dict
from mes_adapter.downtime.service import NoSuchStopError
from mes_adapter.lines import line_key
from mes_adapter.oee.compute import Interval
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .shift_keys import shift_window
from .views import current_batch

router = APIRouter(prefix="/api", tags=["downtime"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading stops")
#: who may give a stop its reason (``GET /api/me`` tells the dashboard)
REASON_ROLE = Role.OPERATOR
operator = require(REASON_ROLE, "giving a stop its reason")


class StopReasonEntry(BaseModel):
    """A reason code for one stop, entered by the authenticated user (who and when are taken from the request)."""

    model_config = ConfigDict(extra="forbid")

    line: str = Field(description="<enterprise>/<site>/<area>/<line>")
    start_ms: int = Field(description="the stop's start_ms as listed by GET /api/stops")
    code: str = Field(min_length=1, description="a code of the configured reason hierarchy")
    comment: str | None = Field(None, max_length=2000)


def scope_window(svc: ServiceApi, key: str, batch: str | None, shift: str | None) -> tuple[str, str, Interval]:
    """``(scope, key, window)`` of a batch, a shift, or by default the running batch or the current shift."""
    if not svc.is_configured(key):
        raise ApiError(404, "line_not_configured", f"line {key!r} has no MES configuration (counters, state)")
    if batch is not None and shift is not None:
        raise ApiError(422, "batch_or_shift", "give batch= or shift=, not both")
    if shift is not None:
        window = shift_window(svc, shift)
        return "shift", window.key, svc.shift_interval(window)
    if batch is None:
        running = current_batch(svc, key)
        if running is None:
            current_shift = svc.shift_calendar().shift_at(now_ms())
            if current_shift is None:
                raise ApiError(404, "nothing_running", f"no batch runs on {key} and no shift is on; "
                                                       "give batch= or shift=")
            return "shift", current_shift.key, svc.shift_interval(current_shift)
        batch = running.batch_id
    if svc.batch_window(key, batch) is None:
        raise ApiError(404, "unknown_batch", f"batch {batch!r} never ran on {key}")
    return "batch", batch, svc.batch_interval(key, batch)


def losses_view(svc: ServiceApi, key: str, window: Interval) -> dict[str, Any]:
    """Losses per bucket of ``window`` as JSON."""
    return losses_dict(svc.losses(key, window))


@router.get("/stops", response_model=dict[str, Any], responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Stops of a batch or shift (default: running batch, else current shift), with reason and bucket")
def stops(line: str = Query(..., description="<enterprise>/<site>/<area>/<line>"),
          batch: str | None = Query(None, min_length=1), shift: str | None = Query(None, min_length=1),
          unexplained: bool = Query(False, description="only stops (not micro-stops) that have no reason yet"),
          svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> dict[str, Any]:
    key = line_key(line)
    scope, scope_key, window = scope_window(svc, key, batch, shift)
    found = [s for s in svc.stops(key, window) if not unexplained or (s.reason is None and not s.event.micro)]
    return {"line": key, "scope": scope, "key": scope_key, "start_ms": window.start_ms, "end_ms": window.end_ms,
            "stops": [svc.stop_as_dict(s) for s in found]}


@router.get("/stops/reasons", response_model=list[ReasonCode],
            summary="The configured reason hierarchy (bucket, category, code, description): what a stop may be given")
def reasons(svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[ReasonCode]:
    return svc.reason_codes()


@router.post("/stops/reason", response_model=dict[str, Any],
             responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
             summary="Give a stop its reason code (operator); replaces an earlier reason, history is kept")
def explain(entry: StopReasonEntry, svc: ServiceApi = Depends(service),
            who: Principal = Depends(operator)) -> dict[str, Any]:
    key = line_key(entry.line)
    if not svc.is_configured(key):
        raise ApiError(404, "line_not_configured", f"line {key!r} has no MES configuration (counters, state)")
    try:
        stop = svc.explain_stop(key, entry.start_ms, entry.code, who, entry.comment)
    except UnknownReasonError as exc:
        raise ApiError(422, "unknown_reason_code", str(exc)) from None
    except NoSuchStopError as exc:
        raise ApiError(404, "no_such_stop", str(exc)) from None
    return {"line": key, **svc.stop_as_dict(stop)}
