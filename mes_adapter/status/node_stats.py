"""Per edge node bookkeeping the dashboard shows: births, rebirth requests by cause, seq gaps.

The host's :class:`~mes_adapter.host.HostStats` counts these plant-wide only, and its change stream
carries births but not the tracker's :class:`RebirthNeeded` / :class:`ProtocolViolation` events.
Rather than edit the host, :func:`observe_tracker` wraps the tracker's two entry points on *this
host instance* and tallies the events they return, unchanged, before the host applies them. The
tally is pure bookkeeping: it cannot alter what the host does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mes_adapter.host.tracker import DeviceBorn, NodeBorn, ProtocolViolation, RebirthNeeded
from uns.sparkplug.errors import SparkplugError
from uns.sparkplug.topic import SparkplugTopic, parse_certificate_topic, parse_topic

NodeKey = tuple[str, str]


@dataclass(slots=True)
class NodeTally:
    nbirths: int = 0
    dbirths: Counter[str] = field(default_factory=Counter)
    seq_gaps: int = 0
    rebirths_requested: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"nbirths": self.nbirths, "dbirths": dict(self.dbirths), "seq_gaps": self.seq_gaps,
                "rebirths_requested": dict(self.rebirths_requested),
                "rebirths_total": sum(self.rebirths_requested.values()), "violations": dict(self.violations)}


class NodeStats:
    """Tallies of tracker events per edge node."""

    def __init__(self) -> None:
        self._nodes: dict[NodeKey, NodeTally] = {}

    def tally(self, node: NodeKey) -> NodeTally:
        entry = self._nodes.get(node)
        if entry is None:
            entry = self._nodes[node] = NodeTally()
        return entry

    def get(self, node: NodeKey) -> NodeTally | None:
        return self._nodes.get(node)

    def record(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, NodeBorn):
                self.tally(event.node).nbirths += 1
            elif isinstance(event, DeviceBorn):
                self.tally(event.node).dbirths[event.device_id] += 1
            elif isinstance(event, RebirthNeeded):
                self.tally(event.node).rebirths_requested[event.cause.value] += 1
            elif isinstance(event, ProtocolViolation):
                node = _node_of(event.topic)
                if node is None:
                    continue
                tally = self.tally(node)
                tally.violations[event.kind] += 1
                if event.kind == "seq_gap":
                    tally.seq_gaps += 1


def _node_of(topic: str) -> NodeKey | None:
    for parse in (parse_topic, parse_certificate_topic):
        try:
            parsed = parse(topic)
        except (SparkplugError, ValueError):
            continue
        if isinstance(parsed, SparkplugTopic):
            return parsed.node
    return None


def observe_tracker(tracker: Any, stats: NodeStats) -> None:
    """Wrap ``tracker.handle`` and ``tracker.handle_certificate`` so their events reach ``stats``."""

    def wrap(inner: Callable[[str, bytes, int], list[Any]]) -> Callable[[str, bytes, int], list[Any]]:
        def handle(topic: str, payload: bytes, now_ms: int) -> list[Any]:
            events = inner(topic, payload, now_ms)
            try:
                stats.record(events)
            except Exception:  # noqa: BLE001 - bookkeeping must never disturb the host
                pass
            return events
        return handle

    tracker.handle = wrap(tracker.handle)
    tracker.handle_certificate = wrap(tracker.handle_certificate)
