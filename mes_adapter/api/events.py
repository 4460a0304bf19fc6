"""Live changes for the dashboard as Server-Sent Events.

``EventSource`` cannot send an Authorization header, so this one route also accepts the token as
``?token=`` (viewer is enough; the stream carries nothing a viewer may not read). The stream starts
with a ``snapshot`` event (every tag, every node), then ``tags`` (conflated, ≤ 4/s), ``node``,
``device``, ``context``, ``confirmation``, ``outbox`` and ``command`` events; a comment line every
15 s keeps proxies from closing it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from mes_adapter.auth import Role, TokenStore
from mes_adapter.live_feed import sse_stream
from mes_adapter.service import AdapterService

from .deps import service
from .errors import AUTH_RESPONSES
from .views import node_info, tag_view, visible_tags

router = APIRouter(prefix="/api", tags=["events"], responses=AUTH_RESPONSES)


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}},
            summary="Server-Sent Events: live tags, nodes, context, confirmations, commands (viewer)")
async def events(request: Request, token: str | None = Query(None, description="token, for EventSource clients"),
                 svc: AdapterService = Depends(service)) -> StreamingResponse:
    principal = svc.tokens.authenticate(request.headers.get("authorization"), token)
    TokenStore.require(principal, Role.VIEWER, "the live event stream")
    client = svc.feed.subscribe()
    snapshot = {"type": "snapshot",
                "tags": [tag_view(svc, s).model_dump(mode="json") for s in visible_tags(svc)],
                "nodes": [node_info(svc, n).model_dump(mode="json") for n in svc.host.model.nodes()]}
    return StreamingResponse(sse_stream(client, svc.feed.closing, [snapshot]), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
