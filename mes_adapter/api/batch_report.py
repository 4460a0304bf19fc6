"""One batch's report, assembled server-side: what a supervisor signs off and prints.

``GET /api/lines/{line}/batches/{batch_id}/report`` gathers, in one read, what the dashboard's batch
report shows: the batch (counts, order, product, start/end), its OEE with the loss breakdown, the stops
with their reasons, the alarm journal rows and the exceptions and holds bound to the batch, the
commands to the line's equipment created while it ran, the production confirmations with their
delivery state, and the context history (each change point: phase, who asserted it). One endpoint
rather than eight calls from the browser, so every part describes the same batch window and the page
cannot show parts of two different states of the adapter.

The parts come from the same service reads as their own endpoints (``/api/oee``, ``/api/stops``,
``/api/alarms/history``, ``/api/exceptions``, ``/api/holds``, ``/api/confirmations``); a line
without MES configuration has no OEE and no stops, and says so in ``oee_unavailable`` instead of
failing the whole report.

A line of another adapter instance (another Sparkplug group, ``host.groups``): with the shared
PostgreSQL state (``mes.state_dsn``) the batch, its counts, the context history and the confirmations
are read from the shared store, the same as that instance answers; what that instance keeps on its own
(OEE and stops, alarms, exceptions, holds, commands, the QA disposition split) is not in this report,
and ``owned_elsewhere`` says so.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from mes_adapter.alarms import AlarmEvent, AlarmException, BatchHold
from mes_adapter.auth import Principal, Role
from mes_adapter.commands.service import CommandRecord
from mes_adapter.context import BatchWindow
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import require, service
from .downtime import scope_window
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import BatchInfo
from .production import confirmation_rows, oee_view
from .views import batch_info

router = APIRouter(prefix="/api", tags=["batches"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading a batch report")

#: enough for any batch; a report that hits it says so (``*_truncated``) rather than dropping rows silently
ROW_LIMIT = 1000


class ContextStep(BaseModel):
    """One change point of the batch's context: from ``since_ms`` until ``until_ms`` (None: still open)."""

    seq: int
    since_ms: int
    until_ms: int | None
    phase: str | None
    work_order_id: str | None
    operation_id: str | None
    product_id: str | None
    target_quantity: float | None
    uom: str | None
    asserted_by: str


class BatchCommand(BaseModel):
    """A command to the line's equipment created while the batch ran, as the report lists it."""

    command_id: str
    created_ms: int
    target: str = Field(description="ISA-95 path of the target (or the Sparkplug ids when unmapped)")
    value: Any
    requested_by: str
    reason: str
    status: str
    message: str
    signed_by: list[str] = Field(description="'<user> (<meaning>)' for each signature")


class BatchReport(BaseModel):
    batch: BatchInfo
    generated_ms: int = Field(description="when the report was assembled (a running batch's figures move on)")
    oee: dict[str, Any] | None = Field(description="as GET /api/oee?batch=: ISO 22400 OEE with `losses` per bucket")
    oee_unavailable: str | None = Field(description="why there is no OEE and no stops (line not configured)")
    stops: list[dict[str, Any]] | None = Field(description="as GET /api/stops?batch=: each stop with reason and "
                                                           "bucket; null: kept by another instance (owned_elsewhere)")
    alarms: list[AlarmEvent] | None = Field(description="alarm journal rows bound to the batch, by source time; "
                                                        "null: kept by another instance")
    exceptions: list[AlarmException] | None = Field(description="null: kept by another instance")
    holds: list[BatchHold] | None = Field(description="null: kept by another instance")
    commands: list[BatchCommand] | None = Field(description="commands to the line created in the batch window, "
                                                            "oldest first, among those the adapter still holds in "
                                                            "memory; null: kept by another instance")
    confirmations: list[dict[str, Any]] = Field(description="as GET /api/confirmations?batch_id=: with delivery "
                                                            "status, oldest first")
    context: list[ContextStep]
    truncated: list[str] = Field(description="parts that hit the row limit and are cut short")
    owned_elsewhere: str | None = Field(None, description="set for a line of another adapter instance: which "
                                                          "parts that instance keeps and this report lacks")


def _context(window: BatchWindow) -> list[ContextStep]:
    return [ContextStep(seq=s.assertion.seq, since_ms=s.start_ms, until_ms=s.end_ms, phase=s.assertion.phase,
                        work_order_id=s.assertion.work_order_id, operation_id=s.assertion.operation_id,
                        product_id=s.assertion.product_id, target_quantity=s.assertion.target_quantity,
                        uom=s.assertion.uom, asserted_by=s.assertion.asserted_by) for s in window.segments]


def _commands(svc: ServiceApi, key: str, window: BatchWindow, until_ms: int) -> list[BatchCommand]:
    """Commands whose target belongs to ``key``, created in ``[start, end]`` of the batch."""

    def of_line(record: CommandRecord) -> bool:
        r = record.request
        equipment = svc.equipment_of(r.group_id, r.edge_node_id, r.device_id)
        return equipment is not None and equipment.line.topic == key

    out = []
    for record in reversed(svc.commands(ROW_LIMIT)):
        request = record.request
        unmapped = f"{request.edge_node_id}/{request.device_id or '-'}:{request.metric}"
        if not (window.start_ms <= record.created_ms <= until_ms and of_line(record)):
            continue
        out.append(BatchCommand(
            command_id=str(request.command_id), created_ms=record.created_ms,
            target=svc.command_target_path(request) or unmapped,
            value=request.value, requested_by=request.requested_by, reason=request.reason,
            status=record.status.value, message=record.message,
            signed_by=[f"{s.user_id} ({s.meaning})" for s in request.signatures]))
    return out


@router.get("/lines/{line:path}/batches/{batch_id}/report", response_model=BatchReport,
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Everything about one batch: counts, OEE and losses, stops, alarms, exceptions, commands, "
                    "confirmations, context history")
def batch_report(line: str, batch_id: str, svc: ServiceApi = Depends(service),
                 _: Principal = Depends(viewer)) -> BatchReport:
    key = line_key(line)
    window = svc.batch_window(key, batch_id)
    if window is None:
        raise ApiError(404, "unknown_batch", f"batch {batch_id!r} never ran on {key}")
    generated = now_ms()
    oee, unavailable, stops, elsewhere = None, None, [], None
    if not svc.owns_line(key):
        elsewhere = (f"line {key} is in Sparkplug group {svc.line_group(key)!r}, owned by another adapter instance: "
                     "its OEE and stops, alarms, exceptions, holds, commands and QA disposition split are kept "
                     "there (ask that instance)")
        unavailable = elsewhere
    elif svc.is_configured(key):
        scope = scope_window(svc, key, batch_id, None)
        oee = oee_view(svc, key, *scope)
        stops = [svc.stop_as_dict(s) for s in svc.stops(key, scope[2])]
    else:
        unavailable = f"line {key!r} has no MES configuration (counters, state): no OEE and no stops"
    confirmations = confirmation_rows(svc, key, batch_id, ROW_LIMIT + 1)
    truncated = ["confirmations"] if len(confirmations) > ROW_LIMIT else []
    report = BatchReport(batch=batch_info(svc, window), generated_ms=generated, oee=oee, oee_unavailable=unavailable,
                         stops=None, alarms=None, exceptions=None, holds=None, commands=None,
                         confirmations=list(reversed(confirmations[:ROW_LIMIT])), context=_context(window),
                         truncated=truncated, owned_elsewhere=elsewhere)
    if elsewhere is not None:  # what the owner keeps is null here, never an empty list that reads as "none"
        return report
    alarms = svc.alarm_history(line=key, batch_id=batch_id, phase=None, condition=None, from_ms=None, to_ms=None,
                               limit=ROW_LIMIT + 1)
    if len(alarms) > ROW_LIMIT:
        truncated.insert(0, "alarms")
    report.stops = stops
    report.alarms = alarms[:ROW_LIMIT]
    report.exceptions = svc.alarm_exceptions(key, open_only=False, batch_id=batch_id)
    report.holds = [h for h in svc.batch_holds(key, held_only=False) if h.batch_id == batch_id]
    report.commands = _commands(svc, key, window, window.end_ms if window.end_ms is not None else generated)
    return report
