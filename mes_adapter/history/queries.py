"""REST questions about history as store queries: which tag, which range, which batch window.

A tag is named the way the plant names it on the wire (group, edge node, device, metric); the
ISA-95 part of the historian's identity is derived with the same placement the feed uses, so the
caller never has to know it. Errors are the adapter's (:class:`~mes_adapter.errors.MesError`
family) so the API turns each into a 4xx with its reason; the store's own ``QueryError`` (bad
range, too many points, misaligned interval) is passed on unchanged for the same purpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from historian import Aggregate, Gap, HistorianStore, QueryError, Sample, TagId, UnknownTagError
from mes_adapter.context import BatchWindow
from mes_adapter.errors import MesError
from uns.isa95 import EquipmentPath

Placement = Callable[[str, str, str | None], EquipmentPath | None]


class TagNotFoundError(MesError):
    """The historian holds no value for this tag (never seen, or misspelled)."""


class BatchNotFoundError(MesError):
    """The line has no batch of that id in its context."""


@dataclass(frozen=True, slots=True)
class TagRef:
    group: str
    edge: str
    device: str | None
    metric: str

    def __str__(self) -> str:
        return "/".join(p for p in (self.group, self.edge, self.device, self.metric) if p)


@dataclass(frozen=True, slots=True)
class Window:
    """One piece of a batch window (a phase segment), clipped to where it ended (or to now)."""

    start_ms: int
    end_ms: int
    batch_id: str
    phase: str | None


class HistoryQueries:
    def __init__(self, store: HistorianStore, placement: Placement, max_points: int) -> None:
        self.store = store
        self._placement = placement
        self.max_points = max_points

    def tag(self, ref: TagRef) -> TagId:
        equipment = self._placement(ref.group, ref.edge, ref.device)
        return TagId(ref.group, ref.edge, ref.device or "", ref.metric, "" if equipment is None else equipment.topic)

    def _known(self, ref: TagRef) -> TagId:
        tag = self.tag(ref)
        try:
            self.store.as_of(tag, 0)
        except UnknownTagError:
            raise TagNotFoundError(f"no history for tag {ref}: the historian has never received a value of it "
                                   "(check group, edge node, device and metric names)") from None
        return tag

    def raw(self, ref: TagRef, start_ms: int, end_ms: int, max_points: int | None = None) -> list[Sample]:
        return self.store.raw(self._known(ref), start_ms, end_ms, max_points=min(max_points or self.max_points,
                                                                                  self.max_points))

    def aggregates(self, ref: TagRef, start_ms: int, end_ms: int, interval_ms: int) -> list[Aggregate]:
        tag = self._known(ref)
        if (end_ms - start_ms) // max(interval_ms, 1) > self.max_points:
            raise QueryError(f"{(end_ms - start_ms) // interval_ms} intervals is more than the limit of "
                             f"{self.max_points}: choose a longer interval or a shorter range")
        return self.store.aggregates(tag, start_ms, end_ms, interval_ms)

    def as_of(self, ref: TagRef, at_ms: int) -> Sample | None:
        return self.store.as_of(self._known(ref), at_ms)

    def gaps(self, ref: TagRef, start_ms: int, end_ms: int) -> list[Gap]:
        return self.store.gaps(self._known(ref), start_ms, end_ms)

    @staticmethod
    def windows(window: BatchWindow | None, line: str, batch_id: str, now_ms: int) -> list[Window]:
        """The batch's segments (one per phase change) as closed ranges; BatchNotFoundError if none."""
        if window is None:
            raise BatchNotFoundError(f"line {line} has no batch {batch_id!r} in its context")
        out = []
        for seg in window.segments:
            end = seg.end_ms if seg.end_ms is not None else max(now_ms + 1, seg.start_ms + 1)
            out.append(Window(seg.start_ms, end, batch_id, seg.assertion.phase))
        return out

    def in_windows(self, ref: TagRef, windows: list[Window]) -> list[tuple[Window, list[Sample]]]:
        """Raw values of the tag inside each window; the limit on points holds for the whole answer."""
        tag = self._known(ref)
        out: list[tuple[Window, list[Sample]]] = []
        left = self.max_points
        for w in windows:
            samples = self.store.raw(tag, w.start_ms, w.end_ms, max_points=left)
            left -= len(samples)
            out.append((w, samples))
        return out
