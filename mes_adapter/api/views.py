"""Shaping the service's live objects into API models (shared by several routers)."""

from __future__ import annotations

from mes_adapter.context import BatchWindow
from mes_adapter.episodes.detector import status_name
from mes_adapter.host import MetricState, NodeView
from mes_adapter.service_api import ServiceApi
from uns.conventions import Quality

from .models import BatchInfo, DeviceInfo, NodeInfo, SignalView, TagView


def tag_view(svc: ServiceApi, state: MetricState) -> TagView:
    equipment = svc.equipment_of(state.group_id, state.edge_node_id, state.device_id)
    return TagView(
        topic=svc.topic_of(state), line=equipment.line.topic if equipment else None,
        cell=equipment.cell if equipment else None, group_id=state.group_id, edge_node_id=state.edge_node_id,
        device_id=state.device_id, name=state.name, value=state.to_dict()["value"], datatype=state.datatype,
        quality=state.quality.value, unit=state.unit, timestamp_ms=state.timestamp_ms,
        source_timestamp_ms=state.source_timestamp_ms, received_ms=state.received_ms,
        status_code=state.status_code, status=status_name(state.status_code),
        quality_reason=state.quality_reason, eng_low=state.eng_low, eng_high=state.eng_high,
        description=state.description)


def signal_view(state: MetricState, cell: str | None) -> SignalView:
    """A line's state or speed tag for the line card: the value with its quality and, when not
    GOOD, the StatusCode name (or the edge's reason, e.g. comm_lost) so "BAD" is never shown bare."""
    good = state.quality is Quality.GOOD
    return SignalView(metric=state.name, cell=cell, value=state.to_dict()["value"], quality=state.quality.value,
                      status=None if good else (status_name(state.status_code) or state.quality_reason),
                      unit=state.unit, timestamp_ms=state.timestamp_ms)


def visible_tags(svc: ServiceApi) -> list[MetricState]:
    """Tags as the UNS shows them: mirrored metrics only (no bdSeq, no Node/Device Control)."""
    return [m for m in svc.tag_states() if svc.topic_of(m) is not None]


def node_info(svc: ServiceApi, node: NodeView) -> NodeInfo:
    tally = svc.node_tally(node.group_id, node.edge_node_id)
    stats = tally.as_dict() if tally is not None else {"nbirths": 0, "dbirths": {}, "seq_gaps": 0,
                                                       "rebirths_requested": {}, "rebirths_total": 0,
                                                       "violations": {}}
    line = svc.equipment_of(node.group_id, node.edge_node_id, None)
    devices = []
    for device in node.devices.values():
        equipment = svc.equipment_of(node.group_id, node.edge_node_id, device.device_id)
        devices.append(DeviceInfo(
            device_id=device.device_id, cell=equipment.cell if equipment else None,
            state="online" if device.online else "stale", online=device.online, born_ms=device.born_ms,
            died_ms=device.died_ms, last_seen_ms=device.last_seen_ms,
            dbirths=stats["dbirths"].get(device.device_id, 0), tags=len(device.metrics),
            stale_tags=sum(1 for m in device.metrics.values() if m.quality is Quality.STALE)))
    return NodeInfo(
        group_id=node.group_id, edge_node_id=node.edge_node_id, line=line.line.topic if line else None,
        state="online" if node.online else "stale", online=node.online, bd_seq=node.bd_seq, born_ms=node.born_ms,
        died_ms=node.died_ms, last_seen_ms=node.last_seen_ms, from_certificate=node.from_certificate,
        nbirths=stats["nbirths"], rebirths_requested=stats["rebirths_requested"],
        rebirths_total=stats["rebirths_total"], seq_gaps=stats["seq_gaps"], violations=stats["violations"],
        tags=len(node.metrics), devices=devices)


def nodes_of_line(svc: ServiceApi, line: str) -> list[NodeView]:
    return svc.nodes_of_line(line)


def batch_info(svc: ServiceApi, window: BatchWindow) -> BatchInfo:
    """A batch with its counts; rejects split as QA classified them when disposition is on (the
    counters' ``scrap`` is every reject, which is what scrap means only without QA disposition).

    The QA split is kept by the instance that owns the line. For another instance's line: every reject
    is scrap when that instance does no QA disposition; when it does, or it cannot be told (no live
    owner), scrap, rework and accepted are null: calling them all scrap would be false."""
    quantities = svc.batch_quantities(window)
    last = window.last
    rejects = quantities.scrap
    requires = svc.owner_requires_disposition(window.line)
    owned = svc.owns_line(window.line)
    split = svc.disposition_totals(window.line, window.batch_id) if requires and owned else None
    unknown = requires is not False and not owned
    return BatchInfo(
        line=window.line, batch_id=window.batch_id, work_order_id=last.work_order_id,
        operation_id=last.operation_id, product_id=last.product_id, phase=last.phase,
        target_quantity=last.target_quantity, uom=last.uom, start_ms=window.start_ms, end_ms=window.end_ms,
        running=window.end_ms is None, good=quantities.good, rejects=rejects,
        scrap=None if unknown else rejects if split is None else split.scrap,
        rework=None if unknown else 0.0 if split is None else split.rework,
        accepted=None if unknown else 0.0 if split is None else split.accepted,
        pending_disposition=None if split is None else max(0.0, rejects - split.total),
        split_unknown=(f"the QA split of these rejects is kept by the adapter instance owning line {window.line}"
                       + (" (no live instance owns it now)" if requires is None else "")) if unknown else None,
        produced=quantities.produced, consumed=dict(quantities.consumed))


def current_batch(svc: ServiceApi, line: str) -> BatchInfo | None:
    current = svc.current_context(line)
    if current is None or current.ended or current.batch_id is None:
        return None
    window = svc.batch_window(line, current.batch_id)
    return None if window is None else batch_info(svc, window)
