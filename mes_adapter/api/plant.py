"""The plant as the host sees it: lines, edge nodes and devices, tags with live values, tag trends."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from mes_adapter.auth import Principal, Role
from mes_adapter.errors import MesInputError
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms
from uns.conventions import Quality

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody
from .models import LineState, LineSummary, NodeInfo, SignalView, TagHistory, TagView, TrendPoint
from .views import current_batch, node_info, nodes_of_line, signal_view, tag_view, visible_tags

router = APIRouter(prefix="/api", tags=["plant"], responses=AUTH_RESPONSES)
viewer = require(Role.VIEWER, "reading the plant")

_MAX_POINTS = 20_000


def known_line(svc: ServiceApi, line: str) -> str:
    """The canonical key of a line the adapter knows; 422 if malformed, 404 if unknown."""
    key = line_key(line)
    if key not in svc.lines():
        raise ApiError(404, "unknown_line", f"line {key!r} is neither configured nor seen on the UNS")
    return key


@router.get("/lines", response_model=list[LineSummary], summary="Lines: configured, with context, or seen")
def lines(svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[LineSummary]:
    configured = svc.configured_lines()
    out = []
    for line, status in svc.data_statuses(svc.lines()).items():
        batch = current_batch(svc, line)
        out.append(LineSummary(line=line, configured=line in configured, nodes=status.nodes,
                               nodes_online=status.nodes_online, devices=status.devices,
                               devices_online=status.devices_online, current_batch=batch.batch_id if batch else None,
                               data_complete=status.data_complete, incomplete_reasons=status.incomplete_reasons))
    return out


@router.get("/lines/{line:path}/state", response_model=LineState,
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Live state of one line: nodes, tag quality, current batch with counts, OEE")
def line_state(line: str, svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> LineState:
    key = known_line(svc, line)
    nodes = nodes_of_line(svc, key)
    by_quality = {q.value: 0 for q in Quality}
    wanted = {where: kind for kind, where in svc.line_signals(key).items()}
    signals: dict[str, SignalView] = {}
    for state in visible_tags(svc):
        equipment = svc.equipment_of(state.group_id, state.edge_node_id, state.device_id)
        if equipment is not None and equipment.line.topic == key:
            # a GOOD null is no reading (a command-only method such as StartBatch, or a tag before
            # its first read): counting it as good would flatter an outage
            if not (state.quality is Quality.GOOD and state.value is None):
                by_quality[state.quality.value] += 1
            kind = wanted.get((equipment.cell, state.name))
            if kind is not None:
                signals[kind] = signal_view(state, equipment.cell)
    for (cell, metric), kind in wanted.items():  # configured but never born: say so, never hide it
        signals.setdefault(kind, SignalView(metric=metric, cell=cell, value=None, quality="MISSING"))
    batch = current_batch(svc, key)
    oee: dict[str, Any] | None = None
    if batch is not None and svc.is_configured(key):
        try:
            oee = svc.batch_oee(key, batch.batch_id).as_dict()
        except MesInputError:
            oee = None
    status = svc.data_status(key)
    return LineState(line=key, configured=svc.is_configured(key),
                     nodes=[node_info(svc, n) for n in nodes], tags_by_quality=by_quality, current_batch=batch,
                     context_seq=svc.last_context_seq(key), oee=oee, devices=status.devices,
                     devices_online=status.devices_online, data_complete=status.data_complete,
                     incomplete_reasons=status.incomplete_reasons, machine_state=signals.get("state"),
                     speed=signals.get("speed"))


@router.get("/nodes", response_model=list[NodeInfo],
            summary="Edge nodes and devices: online/stale, births, rebirth requests, seq gaps")
def nodes(svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[NodeInfo]:
    return [node_info(svc, n) for n in sorted(svc.nodes(), key=lambda n: (n.group_id, n.edge_node_id))]


@router.get("/tags", response_model=list[TagView], summary="Tags with live value, quality, unit")
def tags(line: str | None = Query(None, description="only tags of this line (<enterprise>/<site>/<area>/<line>)"),
         quality: Quality | None = Query(None, description="only tags of this quality"),
         svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> list[TagView]:
    key = line_key(line) if line is not None else None
    out = []
    for state in visible_tags(svc):
        if quality is not None and state.quality is not quality:
            continue
        view = tag_view(svc, state)
        if key is not None and view.line != key:
            continue
        out.append(view)
    return sorted(out, key=lambda t: t.topic or "")


@router.get("/tags/history", response_model=TagHistory,
            responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
            summary="Trend of one tag from the contextualized records")
def tag_history(topic: str = Query(..., min_length=1, description="the tag's UNS topic (see /api/tags)"),
                from_ms: int | None = Query(None, ge=0, le=2**62, description="default: to_ms - 1 h"),
                to_ms: int | None = Query(None, ge=0, le=2**62, description="default: now"),
                limit: int = Query(2000, ge=1, le=_MAX_POINTS),
                svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> TagHistory:
    state = next((m for m in visible_tags(svc) if svc.topic_of(m) == topic), None)
    if state is None:
        raise ApiError(404, "unknown_tag", f"no tag on topic {topic!r} in the live model")
    equipment = svc.equipment_of(state.group_id, state.edge_node_id, state.device_id)
    if equipment is None:
        raise ApiError(404, "no_history",
                       f"{topic!r} does not follow the ISA-95 mapping, so its values are not recorded")
    end = now_ms() + 1 if to_ms is None else to_ms
    start = end - 3_600_000 if from_ms is None else from_ms
    if start > end:
        raise ApiError(422, "bad_range", f"from_ms {start} is after to_ms {end}")
    rows = svc.tag_records(equipment.line.topic, max(0, start), end, metric=state.name,
                           cell=equipment.cell or "", limit=limit + 1)
    points = [TrendPoint(ts_ms=r.source_ts_ms, value=r.value, quality=r.quality.value) for r in rows[:limit]]
    return TagHistory(topic=topic, line=equipment.line.topic, cell=equipment.cell, metric=state.name,
                      from_ms=start, to_ms=end, points=points, truncated=len(rows) > limit)
