"""The crew on a line over REST: who worked there from when to when (labour time, docs/mes-crew.md).

An identical repeat answers 200 ``duplicate``; refusals (``unknown_line``, ``end_before_start``,
``crew_overlap``, ``crew_conflict``) say why, see :mod:`mes_adapter.crew.service`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.auth import Principal, Role
from mes_adapter.crew import CrewError, CrewPresence, Outcome
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody

router = APIRouter(prefix="/api", tags=["crew"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading the crew")
operator = require(Role.OPERATOR, "asserting the crew")


class CrewIn(BaseModel):
    """A person's presence on the line of the path; ``end_ms`` null: still there (close it later
    with the same ``start_ms`` and an end)."""

    model_config = ConfigDict(extra="forbid")

    person_id: str = Field(min_length=1, max_length=64)
    start_ms: int = Field(ge=0, le=2**62)
    end_ms: int | None = Field(None, ge=0, le=2**62)


class CrewResult(BaseModel):
    outcome: Outcome


@router.post("/lines/{line:path}/crew", response_model=CrewResult, status_code=201,
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
             summary="A person worked on the line from start to end (operator)")
def assert_crew(line: str, body: CrewIn, response: Response, svc: ServiceApi = Depends(service),
                who: Principal = Depends(operator)) -> CrewResult:
    presence = CrewPresence(line=line_key(line), **body.model_dump())
    try:
        outcome = svc.assert_crew(presence, who)
    except CrewError as exc:
        raise ApiError(exc.status, exc.reason, exc.message) from None
    response.status_code = 201 if outcome is Outcome.ACCEPTED else 200
    return CrewResult(outcome=outcome)


@router.get("/lines/{line:path}/crew", response_model=list[CrewPresence],
            summary="Who was on the line between from_ms and to_ms")
def crew(line: str, from_ms: int = Query(0, ge=0, le=2**62), to_ms: int = Query(2**62, ge=0, le=2**62),
         svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[CrewPresence]:
    return svc.crew(line_key(line), from_ms, to_ms)
