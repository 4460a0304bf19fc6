"""The one storage port both backends implement: the rest of uns-hub sees only this."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .model import Aggregate, Gap, Sample, TagId

#: a query answering more raw points than this is refused (narrow the range or ask for aggregates)
DEFAULT_MAX_POINTS = 1_000_000


@runtime_checkable
class HistorianStore(Protocol):
    """Append values; read them back raw, aggregated, as of a time, and where they were missing.

    Ranges are half-open ``[start_ms, end_ms)`` on the source time, in epoch milliseconds.
    """

    def append(self, batch: Sequence[Sample]) -> None:
        """Store every sample of the batch durably before returning (never drops one)."""

    def raw(self, tag: TagId, start_ms: int, end_ms: int, *, max_points: int = DEFAULT_MAX_POINTS) -> list[Sample]:
        """Every sample of the tag in the range, in source-time order (receipt order for equal times)."""

    def aggregates(self, tag: TagId, start_ms: int, end_ms: int, interval_ms: int) -> list[Aggregate]:
        """One row per interval that holds at least one sample; the range must be aligned to the interval."""

    def aggregates_many(self, tags: Sequence[TagId], start_ms: int, end_ms: int,
                        interval_ms: int) -> dict[TagId, list[Aggregate]]:
        """``aggregates`` of several tags in one read (a trend of many tags, a plant-wide report)."""

    def as_of(self, tag: TagId, at_ms: int) -> Sample | None:
        """The tag's last sample at or before ``at_ms`` (None if there is none)."""

    def gaps(self, tag: TagId, start_ms: int, end_ms: int) -> list[Gap]:
        """Where the tag was BAD or STALE (its node dead) in the range."""

    def enforce_retention(self, now_ms: int) -> list[str]:
        """Drop whole partitions outside the retention policy; returns the dropped partitions' names."""

    def count(self) -> int:
        """Every stored sample (for tests, benches and operators)."""

    def close(self) -> None: ...
