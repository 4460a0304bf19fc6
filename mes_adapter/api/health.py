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


class Readiness(Health):
    #: the named checks that fail (empty when ready): ``sparkplug_host``, ``uns_mirror``, ``uns_link``,
    #: ``mes_ingest``
    failing: list[str] = []


def failing_connections(svc: AdapterService) -> dict[str, str]:
    """Each MQTT connection of the adapter that is down, by check name, with what it means.

    Why each one counts: without the Sparkplug session nothing new arrives; without the mirror
    the retained UNS goes stale (a restarted broker may hold none of it); without the UNS link
    context and command results are not heard and confirmations wait.
    """
    broker = svc.config.host.broker
    checks = {
        "sparkplug_host": (svc.host.connected, f"Sparkplug host session not online on {broker}"),
        "uns_mirror": (svc.host.mirror_connected, f"UNS mirror not connected to {broker}"),
        "uns_link": (svc.link.connected, f"UNS session (context, command results) not connected to {broker}"),
    }
    return {name: why for name, (ok, why) in checks.items() if not ok}


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves HTTP")
def healthz() -> Health:
    return Health(status="ok", detail="alive")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
            summary="Readiness: the Sparkplug host online, the UNS mirror and the UNS session connected")
def readyz(response: Response, svc: AdapterService = Depends(service)) -> Readiness:
    ready, detail = svc.ready
    failing = failing_connections(svc)
    for problem in svc.readiness_problems():  # the MES core's own checks (ingest writes)
        failing.setdefault("mes_ingest", problem)
    if failing:
        reasons = list(failing.values())
        if not ready and detail not in reasons:
            reasons.append(detail)
        ready, detail = False, "; ".join(reasons)
    if not ready:
        response.status_code = 503
    return Readiness(status="ready" if ready else "not_ready", detail=detail, failing=list(failing))


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (text exposition format)")
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
