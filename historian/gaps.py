"""Gaps from samples in time order: pure code shared by both backends."""

from __future__ import annotations

from collections.abc import Iterable

from .model import USABLE, Gap, Quality


def find_gaps(points: Iterable[tuple[int, Quality]]) -> list[Gap]:
    """A gap opens at the first BAD or STALE sample after a usable one and closes at the next usable one.

    Pass the sample before the range first (the value "as of" its start) so a gap that was already open
    when the range starts is reported from when it really opened.
    """
    gaps: list[Gap] = []
    open_at: int | None = None
    open_quality = Quality.BAD
    for ts, quality in points:
        if quality in USABLE:
            if open_at is not None:
                gaps.append(Gap(open_at, ts, open_quality))
                open_at = None
        elif open_at is None:
            open_at, open_quality = ts, quality
    if open_at is not None:
        gaps.append(Gap(open_at, None, open_quality))
    return gaps
