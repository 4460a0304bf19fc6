"""Liveness, readiness and Prometheus metrics: no auth, so probes and scrapers need no token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from mes_adapter.service_api import ServiceApi
from mes_adapter.status.metrics import CONTENT_TYPE

from .deps import service

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    detail: str


class Readiness(Health):
    #: the named checks that fail (empty when ready): ``sparkplug_host``, ``uns_mirror``, ``uns_link``,
    #: ``mes_ingest``, ``quality_episodes`` (see :meth:`~mes_adapter.service.AdapterService.readiness`)
    failing: list[str] = []


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves HTTP")
def healthz() -> Health:
    return Health(status="ok", detail="alive")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
            summary="Readiness: the Sparkplug host online, the UNS mirror and the UNS session connected")
def readyz(response: Response, svc: ServiceApi = Depends(service)) -> Readiness:
    failing = svc.readiness()
    if failing:
        response.status_code = 503
    detail = "; ".join(failing.values()) or "ready"
    return Readiness(status="not_ready" if failing else "ready", detail=detail, failing=list(failing))


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
