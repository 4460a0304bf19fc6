"""Who the token belongs to: the dashboard shows it and signs commands under this user id."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from mes_adapter.auth import Principal, Role

from .batches import CONTEXT_ROLE
from .deps import require
from .downtime import REASON_ROLE
from .errors import AUTH_RESPONSES
from .orders import CANCEL_ROLE, START_ROLE

router = APIRouter(prefix="/api", tags=["session"], responses=AUTH_RESPONSES)


class Me(BaseModel):
    user_id: str
    full_name: str
    role: str
    batch_control: bool = Field(description="may start, phase and end batches (POST /api/lines/{line}/batch/...): "
                                            "the dashboard shows those controls only then")
    order_start: bool = Field(False, description="may receive and start orders (POST /api/orders, .../start)")
    order_cancel: bool = Field(False, description="may cancel an order's start under way (POST .../cancel)")
    stop_reason: bool = Field(False, description="may give a stop its reason (POST /api/stops/reason)")
    disposition: bool = Field(False, description="may classify rejects (POST .../disposition; the qa role)")


@router.get("/me", response_model=Me, summary="The user and role of the presented token")
def me(who: Principal = Depends(require(Role.VIEWER, "reading your own identity"))) -> Me:
    return Me(user_id=who.user_id, full_name=who.full_name, role=who.role.label,
              batch_control=who.has(CONTEXT_ROLE), order_start=who.has(START_ROLE),
              order_cancel=who.has(CANCEL_ROLE), stop_reason=who.has(REASON_ROLE), disposition=who.has(Role.QA))
