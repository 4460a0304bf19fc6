"""Is what a line shows complete? One honest answer, for the API, the ``_mes`` topics and the dashboard.

A line whose nodes are "online" can still be blind: a device dead (every tag STALE), a tag BAD since
a sensor broke. Counting nodes alone once made an OPC UA outage look like "1/1 online, availability
100 %". :func:`line_data_status` looks at every input of the line (edge nodes, devices, tag qualities)
and names each reason the data is incomplete. Pure: it reads the host's views, never does I/O.
OEE windows get their own completeness from the stored quality episodes (:mod:`mes_adapter.episodes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from mes_adapter.host import LiveModel, MetricState, NodeView
from uns.conventions import Quality
from uns.isa95 import EquipmentPath

#: (group_id, edge_node_id, device_id) -> the cell name, or None for the line itself / unmapped
CellOf = Callable[[str, str, str | None], str | None]

_NAMED = 3  # tags named in a reason; the rest are counted


class DataStatus(BaseModel):
    """Whether a line's live inputs (or an OEE window's) are complete, and if not, why."""

    data_complete: bool = Field(description="false while any input is STALE, BAD, UNCERTAIN or its source is dead")
    incomplete_reasons: list[str] = Field(default_factory=list,
                                          description="one line per reason, e.g. 'device Filler STALE since ...'")
    nodes: int = 0
    nodes_online: int = 0
    devices: int = 0
    devices_online: int = 0


def iso(ms: int | None) -> str:
    """UTC ISO-8601 with milliseconds, for reasons a person reads."""
    if ms is None:
        return "?"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def line_data_status(nodes: Iterable[NodeView], tags: Iterable[MetricState], cell_of: CellOf,
                     *, expected: bool = False,
                     device_on_line: Callable[[str, str, str], bool] | None = None) -> DataStatus:
    """The status of one line from its nodes (as the host tracks them) and its visible tags.

    ``expected``: the line is configured, so no node at all is itself a reason. ``device_on_line``:
    which devices of those nodes belong to the line (a gateway node serves several lines).
    """
    nodes = list(nodes)
    reasons: list[str] = []
    dead_devices: set[tuple[str, str, str | None]] = set()
    dead_nodes = {(n.group_id, n.edge_node_id) for n in nodes if not n.online}
    devices = devices_online = 0
    for node in nodes:
        if not node.online:
            reasons.append(f"edge node {node.group_id}/{node.edge_node_id} offline since {iso(node.died_ms)}")
        for device in node.devices.values():
            if device_on_line is not None and not device_on_line(node.group_id, node.edge_node_id, device.device_id):
                continue
            devices += 1
            if device.online:
                devices_online += 1
                continue
            dead_devices.add((node.group_id, node.edge_node_id, device.device_id))
            reasons.append(f"device {cell_of(node.group_id, node.edge_node_id, device.device_id) or device.device_id}"
                           f" STALE since {iso(device.died_ms)}")
    if not nodes and expected:
        reasons.append("no edge node of this line has been seen by the host")
    by_quality: dict[Quality, list[str]] = {}
    for tag in tags:
        if tag.quality is Quality.GOOD:
            continue
        if tag.quality is Quality.STALE and ((tag.group_id, tag.edge_node_id) in dead_nodes or (
                tag.group_id, tag.edge_node_id, tag.device_id) in dead_devices):
            continue  # already named by its dead node or device
        cell = cell_of(tag.group_id, tag.edge_node_id, tag.device_id) if tag.device_id is not None else None
        by_quality.setdefault(tag.quality, []).append(tag.name if cell is None else f"{cell}/{tag.name}")
    for quality in (Quality.BAD, Quality.STALE, Quality.UNCERTAIN):
        names = sorted(by_quality.get(quality, []))
        if names:
            shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
            reasons.append(f"{len(names)} tag{'s' if len(names) != 1 else ''} {quality.value}: {shown}")
    return DataStatus(data_complete=not reasons, incomplete_reasons=reasons, nodes=len(nodes),
                      nodes_online=sum(1 for n in nodes if n.online), devices=devices, devices_online=devices_online)


#: (group_id, edge_node_id, device_id) -> ISA-95 equipment, None when unmapped
EquipmentOf = Callable[[str, str, str | None], EquipmentPath | None]


def nodes_of_line(model: LiveModel, equipment_of: EquipmentOf, line: str) -> list[NodeView]:
    """Edge nodes with the node itself or one of its devices mapped onto ``line``."""
    out = []
    for node in model.nodes():
        ids = [None, *node.devices]
        if any((eq := equipment_of(node.group_id, node.edge_node_id, d)) is not None and eq.line.topic == line
               for d in ids):
            out.append(node)
    return out


def status_of_line(model: LiveModel, equipment_of: EquipmentOf, topic_of: Callable[[MetricState], str | None],
                   line: str, *, expected: bool) -> DataStatus:
    """:func:`line_data_status` of ``line`` from the host's live model (mirrored tags only)."""
    return statuses_of_lines(model, equipment_of, topic_of, [line], lambda _line: expected)[line]


def statuses_of_lines(model: LiveModel, equipment_of: EquipmentOf, topic_of: Callable[[MetricState], str | None],
                      lines: Iterable[str], expected: Callable[[str], bool]) -> dict[str, DataStatus]:
    """:func:`status_of_line` of each of ``lines`` in one walk of the live model.

    Runs every second for ``_mes/status``: the model is walked once for all lines, not once per
    line, and the mapping is resolved once per node/device, not per tag.
    """
    wanted = list(dict.fromkeys(lines))
    memo: dict[tuple[str, str, str | None], EquipmentPath | None] = {}
    resolve = equipment_of

    def line_of(group_id: str, edge_node_id: str, device_id: str | None) -> str | None:
        key = (group_id, edge_node_id, device_id)
        if key not in memo:
            memo[key] = resolve(group_id, edge_node_id, device_id)
        equipment = memo[key]
        return None if equipment is None else equipment.line.topic

    def cell_of(group_id: str, edge_node_id: str, device_id: str | None) -> str | None:
        line_of(group_id, edge_node_id, device_id)  # fills the memo
        equipment = memo[(group_id, edge_node_id, device_id)]
        return None if equipment is None else equipment.cell

    tags: dict[str, list[MetricState]] = {line: [] for line in wanted}
    for state in model.metrics():
        on = tags.get(line_of(state.group_id, state.edge_node_id, state.device_id) or "")
        if on is not None and topic_of(state) is not None:
            on.append(state)
    nodes: dict[str, list[NodeView]] = {line: [] for line in wanted}
    for node in model.nodes():  # a node with the node itself or one of its devices on the line
        for line in dict.fromkeys(line_of(node.group_id, node.edge_node_id, d) for d in [None, *node.devices]):
            if line in nodes:
                nodes[line].append(node)
    out = {}
    for line in wanted:
        def on_line(group_id: str, edge_node_id: str, device_id: str, line: str = line) -> bool:
            return line_of(group_id, edge_node_id, device_id) == line

        out[line] = line_data_status(nodes[line], tags[line], cell_of, expected=expected(line),
                                     device_on_line=on_line)
    return out
