"""Liveness, readiness and Prometheus metrics: no auth, so probes and scrapers need no token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from mes_adapter.metrics import CONTENT_TYPE
from mes_adapter.service import AdapterService

from .deps import service

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    detail: str


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves HTTP")
def healthz() -> Health:
    return Health(status="ok", detail="alive")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}},
            summary="Readiness: the Sparkplug host is online and the UNS session connected")
def readyz(response: Response, svc: AdapterService = Depends(service)) -> Health:
    ready, detail = svc.ready
    if ready and (problems := svc.readiness_problems()):
        ready, detail = False, "; ".join(problems)
    if not ready:
        response.status_code = 503
    return Health(status="ready" if ready else "not_ready", detail=detail)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
