"""QA disposition of a batch's rejects over REST (see docs/mes-quality.md).

Reading is for any user. Classifying is for the QA role only, but the role is checked by the
service, not by a route dependency: a refused attempt by an identified user is itself a record
(``disposition_refused`` in the audit chain), which a 403 raised before the service would lose.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mes_adapter.auth import Principal, Role
from mes_adapter.lines import line_key
from mes_adapter.quality import DispositionRefusedError, DispositionRequest
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody

router = APIRouter(prefix="/api", tags=["quality"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading or classifying rejects")

_REFUSALS = {403: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody},
             422: {"model": ErrorBody}}


class DispositionView(BaseModel):
    line: str
    batch_id: str
    #: rejects the line's counters counted while the batch ran
    rejects: float
    scrap: float
    rework: float
    accepted: float
    pending: float
    #: the final confirmation is held back until nothing is pending (``mes.disposition.final: wait``)
    final_waiting: bool
    dispositions: list[dict[str, Any]]


def _view(svc: ServiceApi, line: str, batch_id: str) -> DispositionView:
    try:
        state = svc.disposition_state(line, batch_id)
    except DispositionRefusedError as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from None
    return DispositionView(line=line, batch_id=batch_id, rejects=state.rejects, scrap=state.disposed.scrap,
                           rework=state.disposed.rework, accepted=state.disposed.accepted, pending=state.pending,
                           final_waiting=svc.final_waiting_for_disposition(line, batch_id),
                           dispositions=[d.view() for d in state.dispositions])


@router.get("/lines/{line:path}/batches/{batch_id}/disposition", response_model=DispositionView,
            responses=_REFUSALS, summary="Rejects of a batch: classified and pending QA disposition")
def disposition(line: str, batch_id: str, svc: ServiceApi = Depends(service),
                _: Principal = Depends(viewer)) -> DispositionView:
    return _view(svc, line_key(line), batch_id)


@router.post("/lines/{line:path}/batches/{batch_id}/disposition", response_model=DispositionView, status_code=201,
             responses=_REFUSALS, summary="Classify pending rejects as scrap / rework / accepted, signed (qa)")
def dispose(line: str, batch_id: str, body: DispositionRequest, svc: ServiceApi = Depends(service),
            who: Principal = Depends(viewer)) -> DispositionView:
    key = line_key(line)
    try:
        svc.dispose(who, key, batch_id, body)
    except DispositionRefusedError as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from None
    return _view(svc, key, batch_id)
