"""Events: live changes for the dashboard as Server-Sent Events, and a line's stored quality episodes.

``EventSource`` cannot send an Authorization header, so this one route also accepts the token as
``?token=`` (viewer is enough; the stream carries nothing a viewer may not read). The stream starts
with a ``snapshot`` event (every tag, every node), then ``tags`` (conflated, ≤ 4/s), ``node``,
``device``, ``context``, ``confirmation``, ``outbox`` and ``command`` events; a comment line every
15 s keeps proxies from closing it. ``episode`` and ``line_status`` events tell the dashboard
when a tag's quality episode opens or closes and when a line's data turns (in)complete.

``GET /api/lines/{line}/events`` lists the line's stored quality episodes (BAD / UNCERTAIN / STALE
runs with start, end, reason and the batch and phase at their start).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from mes_adapter.auth import SESSION_COOKIE, Principal, Role, TokenStore
from mes_adapter.episodes import QualityEpisode
from mes_adapter.service_api import ServiceApi

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .plant import known_line
from .views import node_info, tag_view, visible_tags

router = APIRouter(prefix="/api", tags=["events"], responses=AUTH_RESPONSES)


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}},
            summary="Server-Sent Events: live tags, nodes, context, confirmations, commands (viewer)")
async def events(request: Request, token: str | None = Query(None, description="token, for EventSource clients"),
                 svc: ServiceApi = Depends(service)) -> StreamingResponse:
    principal = svc.authenticate(request.headers.get("authorization"), token,
                                 session_id=request.cookies.get(SESSION_COOKIE))
    TokenStore.require(principal, Role.VIEWER, "the live event stream")

    def snapshot() -> dict[str, Any]:
        return {"type": "snapshot",
                "tags": [tag_view(svc, s).model_dump(mode="json") for s in visible_tags(svc)],
                "nodes": [node_info(svc, n).model_dump(mode="json") for n in svc.nodes()]}

    return StreamingResponse(svc.live_events(snapshot), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/lines/{line:path}/events", response_model=list[QualityEpisode],
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Quality episodes of a line (BAD / UNCERTAIN / STALE runs with start, end, batch)")
def line_events(line: str,
                from_ms: int | None = Query(None, ge=0, le=2**62, description="episodes still active at or after"),
                to_ms: int | None = Query(None, ge=0, le=2**62, description="episodes started before"),
                batch_id: str | None = Query(None, min_length=1, description="only those bound to this batch"),
                limit: int = Query(1000, ge=1, le=10_000),
                svc: ServiceApi = Depends(service),
                _: Principal = Depends(require(Role.VIEWER, "reading events"))) -> list[QualityEpisode]:
    key = known_line(svc, line)
    if from_ms is not None and to_ms is not None and from_ms > to_ms:
        raise ApiError(422, "bad_range", f"from_ms {from_ms} is after to_ms {to_ms}")
    return svc.episodes(key, from_ms, to_ms, batch_id=batch_id, limit=limit)
