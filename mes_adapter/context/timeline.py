"""A line's context timeline as change points, in memory, answering "what was active at t?".

Pure data structure, no I/O: the service feeds it accepted assertions (from SQLite at start, then
live). Lookups are a bisect over ``(since_ms, seq)`` so binding thousands of readings per second
costs microseconds each. The rule (see :mod:`mes_adapter.context.models`): the active assertion at
``t`` has the greatest ``since_ms <= t``, ties broken by the highest ``seq``.
"""

from __future__ import annotations

import bisect

from mes_adapter.context.models import BatchWindow, ContextAssertion, ContextSegment


class Timeline:
    """Change points of one line ordered by ``(since_ms, seq)``."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._items: list[ContextAssertion] = []
        self._by_seq: dict[int, ContextAssertion] = {}

    @property
    def last_seq(self) -> int | None:
        return max(self._by_seq) if self._by_seq else None

    def by_seq(self, seq: int) -> ContextAssertion | None:
        return self._by_seq.get(seq)

    def add(self, assertion: ContextAssertion) -> None:
        key = (assertion.since_ms, assertion.seq)
        index = bisect.bisect_left(self._keys, key)
        self._keys.insert(index, key)
        self._items.insert(index, assertion)
        self._by_seq[assertion.seq] = assertion

    def _index_at(self, ts_ms: int) -> int:
        """Index of the governing change point at ``ts_ms`` or -1 before the first one."""
        # every key (since, seq) with since <= ts sorts before (ts, +inf)
        return bisect.bisect_right(self._keys, (ts_ms, float("inf"))) - 1

    def governing_at(self, ts_ms: int) -> ContextAssertion | None:
        """The change point in force at ``ts_ms`` (an end assertion included), None before any."""
        index = self._index_at(ts_ms)
        return self._items[index] if index >= 0 else None

    def active_at(self, ts_ms: int) -> ContextAssertion | None:
        """The batch context at ``ts_ms``; None before the first assertion or after an end."""
        governing = self.governing_at(ts_ms)
        return governing if governing is not None and governing.is_batch else None

    def segments(self, from_ms: int | None = None, to_ms: int | None = None) -> list[ContextSegment]:
        """Batch segments overlapping ``[from_ms, to_ms)``, unclipped; end segments left out.

        Change points shadowed by a later-seq one at the same ``since_ms`` have zero length and are
        skipped.
        """
        out: list[ContextSegment] = []
        count = len(self._items)
        for i, assertion in enumerate(self._items):
            start = assertion.since_ms
            end = self._items[i + 1].since_ms if i + 1 < count else None
            if end is not None and end <= start:
                continue  # shadowed by a correction at the same since_ms
            if not assertion.is_batch:
                continue
            if to_ms is not None and start >= to_ms:
                break
            if from_ms is not None and end is not None and end <= from_ms:
                continue
            out.append(ContextSegment(start, end, assertion))
        return out

    def batch_windows(self, from_ms: int | None = None, to_ms: int | None = None) -> list[BatchWindow]:
        """Batches overlapping a time range, each with all of its segments, by start time."""
        wanted = {seg.assertion.batch_id for seg in self.segments(from_ms, to_ms)}
        windows = [w for w in (self.batch_window(b) for b in wanted if b is not None) if w is not None]
        return sorted(windows, key=lambda w: (w.start_ms, w.batch_id))

    def batch_window(self, batch_id: str) -> BatchWindow | None:
        """The window of one batch, or None if it never ran on this line."""
        segments = [seg for seg in self.segments() if seg.assertion.batch_id == batch_id]
        if not segments:
            return None
        line = segments[0].assertion.line
        return BatchWindow(line=line, batch_id=batch_id, start_ms=segments[0].start_ms,
                           end_ms=segments[-1].end_ms, segments=tuple(segments))
