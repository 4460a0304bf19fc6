"""Trace queries over the genealogy graph: pure functions of the recorded edges, no I/O.

The graph has lots and batches as nodes: lot -> batch (consumed), batch -> lot (produced),
lot -> lot (split or merge). Backward from a lot walks the edges against their direction to the
lots nothing was made from (the raw lots); forward walks them to the batches that used the lot
and the lots nothing has been made from yet (the finished lots). Cycles (a hand error) end the
walk instead of looping.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .models import BatchRef, Trace

Node = tuple[str, str, str]  # ("lot", lot_id, "") or ("batch", line, batch_id)


def lot(lot_id: str) -> Node:
    return ("lot", lot_id, "")


def batch(line: str, batch_id: str) -> Node:
    return ("batch", line, batch_id)


@dataclass
class Graph:
    children: dict[Node, set[Node]] = field(default_factory=lambda: defaultdict(set))
    parents: dict[Node, set[Node]] = field(default_factory=lambda: defaultdict(set))

    def add(self, parent: Node, child: Node) -> None:
        self.children[parent].add(child)
        self.parents[child].add(parent)


def _walk(graph: Graph, start: Node, edges: dict[Node, set[Node]]) -> set[Node]:
    seen: set[Node] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        for nxt in edges.get(node, ()):
            if nxt not in seen and nxt != start:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _trace(graph: Graph, lot_id: str, direction: str) -> Trace:
    edges = graph.parents if direction == "backward" else graph.children
    reached = _walk(graph, lot(lot_id), edges)
    lots = sorted(n[1] for n in reached if n[0] == "lot")
    batches = [BatchRef(line=line, batch_id=b) for line, b in sorted((n[1], n[2]) for n in reached
                                                                      if n[0] == "batch")]
    ends = [lid for lid in lots if not edges.get(lot(lid))]
    return Trace(lot_id=lot_id, direction=direction, batches=batches, lots=lots, end_lots=ends)


def trace_backward(graph: Graph, lot_id: str) -> Trace:
    """Finished lot -> the batches and lots it came from; ``end_lots`` are the raw lots."""
    return _trace(graph, lot_id, "backward")


def trace_forward(graph: Graph, lot_id: str) -> Trace:
    """Raw lot -> the batches that used it and what they made; ``end_lots`` are the finished lots."""
    return _trace(graph, lot_id, "forward")
