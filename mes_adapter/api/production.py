"""Production confirmations, the webhook outbox, and OEE per batch or shift."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Query

from mes_adapter.auth import Principal, Role
from mes_adapter.confirmations.outbox import DeliveryStatus
from mes_adapter.errors import UnknownConfirmationError
from mes_adapter.lines import line_key
from mes_adapter.oee.compute import Interval
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .downtime import losses_view, scope_window
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import OutboxView
from .shift_keys import shift_window

router = APIRouter(prefix="/api", tags=["production"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading production data")
supervisor = require(Role.SUPERVISOR, "requeueing a dead-lettered confirmation")


#: the status shown for a waiting confirmation when ``mes.webhook.url`` is unset: nothing will send it
#: until an endpoint is configured, so "pending" would promise a delivery that is not coming
NOT_CONFIGURED = "not_configured"


def _shown(entry: dict[str, Any], webhook: bool) -> dict[str, Any]:
    if not webhook and entry["status"] == DeliveryStatus.PENDING.value:
        return {**entry, "status": NOT_CONFIGURED}
    return entry


def _webhook(svc: ServiceApi) -> bool:
    return svc.webhook_configured()


@router.get("/confirmations", response_model=list[dict[str, Any]],
            summary="Production confirmations (newest first) with their delivery status")
def confirmations(line: str | None = Query(None), batch_id: str | None = Query(None, min_length=1),
                  limit: int = Query(100, ge=1, le=1000),
                  svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[dict[str, Any]]:
    return confirmation_rows(svc, line_key(line) if line is not None else None, batch_id, limit)


def confirmation_rows(svc: ServiceApi, key: str | None, batch_id: str | None, limit: int) -> list[dict[str, Any]]:
    """Confirmations, newest first, each with its shown delivery status and its body (also the batch report's)."""
    webhook = _webhook(svc)
    return [{**_shown(entry.as_dict(), webhook), "confirmation": json.loads(entry.body)}
            for entry in svc.outbox_entries(line=key, batch_id=batch_id, limit=limit)]


@router.get("/outbox", response_model=OutboxView, summary="Outbox depth and delivery state of each entry")
def outbox(status: DeliveryStatus | None = Query(None), limit: int = Query(100, ge=1, le=1000),
           svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> OutboxView:
    counts = svc.outbox_counts()
    webhook = _webhook(svc)
    shown = {s.value: n for s, n in counts.items()}
    if not webhook:
        shown[NOT_CONFIGURED] = shown.pop(DeliveryStatus.PENDING.value, 0)
    return OutboxView(counts=shown, depth=counts[DeliveryStatus.PENDING], webhook_configured=webhook,
                      entries=[_shown(e.as_dict(), webhook) for e in svc.outbox_entries(status=status, limit=limit)])


@router.post("/outbox/{confirmation_id}/requeue", response_model=dict[str, Any],
             responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
             summary="Give a dead-lettered confirmation a fresh set of attempts (supervisor)")
def requeue(confirmation_id: str, svc: ServiceApi = Depends(service),
            who: Principal = Depends(supervisor)) -> dict[str, Any]:
    try:
        before = svc.outbox_entry(confirmation_id)
    except UnknownConfirmationError as exc:
        raise ApiError(404, "unknown_confirmation", str(exc)) from None
    if before.status is not DeliveryStatus.DEAD_LETTERED:
        raise ApiError(409, "not_dead_lettered",
                       f"confirmation {confirmation_id} is {before.status.value}; only dead letters are requeued")
    return svc.requeue(confirmation_id, who).as_dict()


@router.get("/oee", response_model=dict[str, Any],
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="ISO 22400 OEE and losses per bucket of a batch, a shift (YYYY-MM-DD/<name>), "
                    "or by default the running batch")
def oee(line: str = Query(..., description="<enterprise>/<site>/<area>/<line>"),
        batch: str | None = Query(None, min_length=1), shift: str | None = Query(None, min_length=1),
        svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> dict[str, Any]:
    key = line_key(line)
    return oee_view(svc, key, *scope_window(svc, key, batch, shift))


def oee_view(svc: ServiceApi, key: str, scope: str, scope_key: str, window: Interval) -> dict[str, Any]:
    """The OEE of a batch or shift with its losses per bucket (also the batch report's OEE part)."""
    result = svc.batch_oee(key, scope_key) if scope == "batch" else svc.shift_oee(key, shift_window(svc, scope_key))
    return {"line": key, "scope": scope, "key": scope_key, **result.as_dict(),
            "losses": losses_view(svc, key, window)}
