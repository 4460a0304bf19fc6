"""Day partitions (UTC) and the checks every query shares: pure code."""

from __future__ import annotations

from .errors import QueryError

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def day_of(ms: int) -> int:
    """The partition key: the UTC day's first millisecond."""
    return ms - ms % DAY_MS


def days_between(start_ms: int, end_ms: int) -> range:
    """Every day partition that can hold a sample of ``[start_ms, end_ms)``."""
    return range(day_of(start_ms), end_ms, DAY_MS) if end_ms > start_ms else range(0)


def check_range(start_ms: int, end_ms: int) -> None:
    if not isinstance(start_ms, int) or not isinstance(end_ms, int):
        raise QueryError("start and end are integer epoch milliseconds")
    if end_ms <= start_ms:
        raise QueryError(f"empty or reversed range: end {end_ms} is not after start {start_ms}")


def check_interval(start_ms: int, end_ms: int, interval_ms: int) -> None:
    check_range(start_ms, end_ms)
    if interval_ms <= 0:
        raise QueryError(f"interval must be a positive number of milliseconds, not {interval_ms}")
    if start_ms % interval_ms or end_ms % interval_ms:
        raise QueryError(
            f"start and end must be multiples of the interval ({interval_ms} ms) so that intervals line up "
            "with the stored minute and hour rollups")
