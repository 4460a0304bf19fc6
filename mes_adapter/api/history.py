"""History of a tag from the historian: raw values, aggregates per interval, value as of a time,
values per batch / phase window, and gaps (BAD quality or a dead node).

A tag is named as on the wire: ``group``, ``edge``, optional ``device``, ``metric``. Times are epoch
milliseconds; ranges are half-open ``[start, end)`` on the value's source time. Every refusal is the
API's one error shape: a bad range or too many points is a 400 ``invalid_history_query``, a tag with
no history a 404 ``unknown_tag``, an unknown batch a 404 ``unknown_batch``, a disabled historian a
503 ``historian_disabled``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from historian import Aggregate, Gap, QueryError, Sample
from mes_adapter.auth import Principal, Role
from mes_adapter.history import BatchNotFoundError, HistoryQueries, TagNotFoundError, TagRef
from mes_adapter.lines import line_key
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import require, service
from .errors import AUTH_RESPONSES, ApiError, ErrorBody

router = APIRouter(prefix="/api/history", tags=["history"], responses={
    **AUTH_RESPONSES, 400: {"model": ErrorBody, "description": "bad range, interval or too many points"},
    404: {"model": ErrorBody, "description": "no history for the tag, or no such batch"},
    503: {"model": ErrorBody, "description": "the historian is disabled"}})
viewer = require(Role.VIEWER, "reading history")


def _tag(group: str = Query(..., min_length=1), edge: str = Query(..., min_length=1),
         device: str | None = Query(None, min_length=1), metric: str = Query(..., min_length=1)) -> TagRef:
    return TagRef(group, edge, device, metric)


def _queries(svc: ServiceApi) -> HistoryQueries:
    queries = svc.history()
    if queries is None:
        raise ApiError(503, "historian_disabled", "the historian is disabled (historian.enabled: false)")
    return queries


def _range(start: int, end: int) -> None:
    if end <= start:
        raise ApiError(400, "invalid_history_query", f"the range is empty or reversed: start {start} >= end {end}")


def _answer(call: Any) -> Any:
    try:
        return call()
    except TagNotFoundError as exc:
        raise ApiError(404, "unknown_tag", str(exc)) from None
    except BatchNotFoundError as exc:
        raise ApiError(404, "unknown_batch", str(exc)) from None
    except QueryError as exc:
        raise ApiError(400, "invalid_history_query", str(exc)) from None


def sample_json(s: Sample) -> dict[str, Any]:
    return {"source_ms": s.source_ms, "receipt_ms": s.receipt_ms, "value": s.value, "quality": s.quality.name,
            "status_code": s.status_code, "is_historical": s.is_historical}


def _aggregate_json(a: Aggregate) -> dict[str, Any]:
    return {"start_ms": a.start_ms, "end_ms": a.end_ms, "count": a.count, "min": a.min, "max": a.max,
            "first": a.first, "last": a.last, "twa": a.twa, "samples": a.samples}


def _gap_json(g: Gap) -> dict[str, Any]:
    return {"start_ms": g.start_ms, "end_ms": g.end_ms, "quality": g.quality.name}


def _head(tag: TagRef, queries: HistoryQueries) -> dict[str, Any]:
    t = queries.tag(tag)
    return {"group": t.group, "edge": t.edge, "device": t.device or None, "metric": t.metric, "path": t.path}


@router.get("/raw", response_model=dict[str, Any], summary="Every value of a tag in [start, end)")
def raw(start: int = Query(..., ge=0), end: int = Query(..., ge=0), max_points: int | None = Query(None, ge=1),
        tag: TagRef = Depends(_tag), svc: ServiceApi = Depends(service),
        _: Principal = Depends(viewer)) -> dict[str, Any]:
    _range(start, end)
    q = _queries(svc)
    samples = _answer(lambda: q.raw(tag, start, end, max_points))
    return {"tag": _head(tag, q), "start": start, "end": end, "values": [sample_json(s) for s in samples]}


@router.get("/aggregates", response_model=dict[str, Any],
            summary="Per interval: count, min, max, first, last, time-weighted average")
def aggregates(start: int = Query(..., ge=0), end: int = Query(..., ge=0), interval: int = Query(..., ge=1),
               tag: TagRef = Depends(_tag), svc: ServiceApi = Depends(service),
               _: Principal = Depends(viewer)) -> dict[str, Any]:
    _range(start, end)
    q = _queries(svc)
    rows = _answer(lambda: q.aggregates(tag, start, end, interval))
    return {"tag": _head(tag, q), "start": start, "end": end, "interval": interval,
            "intervals": [_aggregate_json(a) for a in rows]}


@router.get("/at", response_model=dict[str, Any], summary="The tag's value as of a time (last at or before it)")
def as_of(t: int = Query(..., ge=0), tag: TagRef = Depends(_tag), svc: ServiceApi = Depends(service),
          _: Principal = Depends(viewer)) -> dict[str, Any]:
    q = _queries(svc)
    sample = _answer(lambda: q.as_of(tag, t))
    return {"tag": _head(tag, q), "at": t, "value": None if sample is None else sample_json(sample)}


@router.get("/gaps", response_model=dict[str, Any],
            summary="Where the tag had no usable value: BAD quality, or STALE (its node dead)")
def gaps(start: int = Query(..., ge=0), end: int = Query(..., ge=0), tag: TagRef = Depends(_tag),
         svc: ServiceApi = Depends(service), _: Principal = Depends(viewer)) -> dict[str, Any]:
    _range(start, end)
    q = _queries(svc)
    found = _answer(lambda: q.gaps(tag, start, end))
    return {"tag": _head(tag, q), "start": start, "end": end, "gaps": [_gap_json(g) for g in found]}


@router.get("/batch", response_model=dict[str, Any],
            summary="The tag's values while a batch ran on a line, one window per phase segment")
def batch(line: str = Query(..., min_length=1), batch_id: str = Query(..., min_length=1),
          tag: TagRef = Depends(_tag), svc: ServiceApi = Depends(service),
          _: Principal = Depends(viewer)) -> dict[str, Any]:
    q = _queries(svc)
    key = line_key(line)

    def run() -> list[dict[str, Any]]:
        windows = q.windows(svc.batch_window(key, batch_id), key, batch_id, now_ms())
        return [{"start_ms": w.start_ms, "end_ms": w.end_ms, "phase": w.phase,
                 "values": [sample_json(s) for s in samples]} for w, samples in q.in_windows(tag, windows)]

    return {"tag": _head(tag, q), "line": key, "batch_id": batch_id, "windows": _answer(run)}
