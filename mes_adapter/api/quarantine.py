"""Edge nodes the host quarantined for birth churn, and the operator's way to let one back in.

A node re-birthing faster than ``host.birth_limit`` per ``host.birth_window_s`` is not mirrored
(its tags are STALE) until it has been quiet for ``host.quarantine_quiet_s``. A supervisor who has
found the cause need not wait: releasing it makes its next message earn a rebirth request, so the
UNS is rebuilt from a fresh birth. Handlers are ``async`` so they touch the tracker on the event
loop that feeds it (never from the thread pool).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mes_adapter.auth import Principal, Role
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody

log = logging.getLogger("uns.adapter.api")
router = APIRouter(prefix="/api", tags=["plant"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading the quarantine")
supervisor = require(Role.SUPERVISOR, "releasing an edge node from quarantine")


class QuarantinedNode(BaseModel):
    group_id: str
    edge_node_id: str


class Released(BaseModel):
    group_id: str
    edge_node_id: str
    released: bool = True


@router.get("/quarantine", response_model=list[QuarantinedNode],
            summary="Edge nodes quarantined for birth churn (not mirrored, tags STALE)")
async def quarantined(svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[QuarantinedNode]:
    return [QuarantinedNode(group_id=g, edge_node_id=e) for g, e in sorted(svc.quarantined_nodes())]


@router.post("/quarantine/{group_id}/{edge_node_id}/release", response_model=Released,
             responses={404: {"model": ErrorBody, "description": "the node is not quarantined"}},
             summary="Let a quarantined edge node back in; its next message earns a rebirth request")
async def release(group_id: str, edge_node_id: str, svc: ServiceApi = Depends(service),
                  principal: Principal = Depends(supervisor)) -> Released:
    if not svc.release_node(group_id, edge_node_id, now_ms()):
        raise ApiError(404, "not_quarantined", f"edge node {group_id}/{edge_node_id} is not quarantined")
    log.warning("edge node %s/%s released from quarantine by %s", group_id, edge_node_id, principal.user_id)
    return Released(group_id=group_id, edge_node_id=edge_node_id)
