"""Condition alarms: what is active now, and the journal filtered by line, batch, phase, condition, window.

``GET /api/alarms`` lists the newest state of every condition that is active or still retained
(unacknowledged or unconfirmed); ``GET /api/alarms/history`` the journal rows, one per change, each
bound to the batch and phase running at the event's source time (docs/alarms.md).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from mes_adapter.alarms import AlarmEvent
from mes_adapter.auth import Principal, Role
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
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
