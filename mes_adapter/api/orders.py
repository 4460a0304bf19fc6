"""Orders over REST: intake (ISA-95 / B2MML production request), the order list per line, and the
start of a batch from an order through the signed command path (see docs/mes-orders.md).

``POST /api/orders/{id}/start`` answers 202 with the order (``starting``) and the start command
(usually ``awaiting_signature``): the caller signs it with ``POST /api/commands/{command_id}/sign``
like any command; the order turns ``running`` when the edge confirms the write.

``POST /api/orders/{id}/cancel`` (supervisor, with a reason) withdraws a start under way whose
command has not reached the PLC: the order goes back to ``received``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.auth import Principal, Role
from mes_adapter.lines import line_key
from mes_adapter.orders import Order, OrderError, OrderIn, OrderStatus
from mes_adapter.service_api import ServiceApi

from .commands import command_view
from .deps import client_id, require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import CommandView

router = APIRouter(prefix="/api", tags=["orders"], responses=AUTH_RESPONSES)
#: who may receive and start orders, and who may cancel a start (``GET /api/me`` tells the dashboard)
START_ROLE, CANCEL_ROLE = Role.OPERATOR, Role.SUPERVISOR
viewer = require(Role.VIEWER, "reading orders")
operator = require(START_ROLE, "receiving and starting orders")
supervisor = require(CANCEL_ROLE, "cancelling an order's start")

_REFUSALS = {404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}}


class OrderStart(BaseModel):
    """The order as it now stands and the command that writes its batch parameters."""

    order: Order
    command: CommandView


class OrderCancel(BaseModel):
    """Why the start is withdrawn (audited)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


def _refused(exc: OrderError) -> ApiError:
    return ApiError(exc.status, exc.reason, exc.message)


@router.post("/orders", response_model=Order, status_code=201, responses=_REFUSALS,
             summary="Receive a production order from the ERP (operator)")
def receive(body: OrderIn, svc: ServiceApi = Depends(service), who: Principal = Depends(operator)) -> Order:
    try:
        return svc.receive_order(body, who)
    except OrderError as exc:
        raise _refused(exc) from None


@router.get("/orders", response_model=list[Order], summary="Orders by due time, per line and status")
def orders(line: str | None = Query(None, description="<enterprise>/<site>/<area>/<line>"),
           status: OrderStatus | None = Query(None), limit: int = Query(1000, ge=1, le=10000),
           svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[Order]:
    return svc.orders(line_key(line) if line else None, status, limit)


@router.get("/orders/{order_id}", response_model=Order, responses=_REFUSALS, summary="One order")
def order(order_id: str, svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> Order:
    try:
        return svc.order(order_id)
    except OrderError as exc:
        raise _refused(exc) from None


@router.post("/orders/{order_id}/start", response_model=OrderStart, status_code=202, responses=_REFUSALS,
             summary="Start a batch from an order: submit the signed StartBatch write (operator)")
async def start(order_id: str, request: Request, svc: ServiceApi = Depends(service),
                who: Principal = Depends(operator)) -> OrderStart:
    try:
        order, record = await svc.start_order(order_id, who, client_id(request))
    except OrderError as exc:
        raise _refused(exc) from None
    return OrderStart(order=order, command=command_view(svc, record))


@router.post("/orders/{order_id}/cancel", response_model=Order, responses=_REFUSALS,
             summary="Cancel an order's start under way (supervisor): the order goes back to received")
def cancel(order_id: str, body: OrderCancel, svc: ServiceApi = Depends(service),
           who: Principal = Depends(supervisor)) -> Order:
    try:
        return svc.cancel_order_start(order_id, who, body.reason)
    except OrderError as exc:
        raise _refused(exc) from None
