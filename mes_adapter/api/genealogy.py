"""Genealogy over REST: lots consumed and produced by batches, splits and merges, trace queries.

An identical repeat of an assertion answers 200 ``duplicate``; a contradicting one 409
``lot_already_asserted`` (see :mod:`mes_adapter.genealogy.service` for why).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from mes_adapter.auth import Principal, Role
from mes_adapter.genealogy import Consumption, GenealogyError, LotLink, ProducedLot, Trace
from mes_adapter.genealogy.service import Outcome
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody

router = APIRouter(prefix="/api/genealogy", tags=["genealogy"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading genealogy")
operator = require(Role.OPERATOR, "asserting material lots")

_REFUSALS = {409: {"model": ErrorBody}, 422: {"model": ErrorBody}}


class LotResult(BaseModel):
    outcome: Outcome


class BatchLots(BaseModel):
    line: str
    batch_id: str
    consumed: list[Consumption]
    produced: list[ProducedLot]


def _answer(response: Response, outcome: Outcome) -> LotResult:
    response.status_code = 201 if outcome is Outcome.ACCEPTED else 200
    return LotResult(outcome=outcome)


def _call(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except GenealogyError as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from None


@router.post("/consumed", response_model=LotResult, status_code=201, responses=_REFUSALS,
             summary="A batch consumed a material lot (operator)")
def consumed(body: Consumption, response: Response, svc: ServiceApi = Depends(service),
             who: Principal = Depends(operator)) -> LotResult:
    return _answer(response, _call(svc.consume_lot, body, who))


@router.post("/produced", response_model=LotResult, status_code=201, responses=_REFUSALS,
             summary="A batch produced a lot (operator)")
def produced(body: ProducedLot, response: Response, svc: ServiceApi = Depends(service),
             who: Principal = Depends(operator)) -> LotResult:
    return _answer(response, _call(svc.produce_lot, body, who))


@router.post("/links", response_model=LotResult, status_code=201, responses=_REFUSALS,
             summary="A lot split into several, or several merged into one (operator)")
def links(body: LotLink, response: Response, svc: ServiceApi = Depends(service),
          who: Principal = Depends(operator)) -> LotResult:
    return _answer(response, _call(svc.link_lots, body, who))


@router.get("/batches/{line:path}/{batch_id}", response_model=BatchLots, summary="Lots of one batch")
def batch_lots(line: str, batch_id: str, svc: ServiceApi = Depends(service),
               _: Principal = Depends(viewer)) -> BatchLots:
    key = line_key(line)
    consumed_lots, produced_lots = svc.batch_lots(key, batch_id)
    return BatchLots(line=key, batch_id=batch_id, consumed=consumed_lots, produced=produced_lots)


@router.get("/trace", response_model=Trace, summary="Trace a lot backward (to raw lots) or forward (to finished lots)")
def trace(lot_id: str = Query(..., min_length=1), direction: Literal["backward", "forward"] = Query(...),
          svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> Trace:
    return svc.trace(lot_id, direction)
