"""Which change-point times an operator may assert: recent past to a minute ahead, nothing else.

Why a window at all: a ``since_ms`` sent in seconds (``1_764_000_000`` is 21 January 1970) or in
microseconds would open a batch decades long; every confirmation window, OEE interval and record
query of that batch would then span those decades. Counts older than the counter reorder horizon
cannot be attributed anyway (the trackers keep no samples that old), so that horizon is the lower
bound; a small allowance ahead covers clock differences between the caller and the adapter.
Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from mes_adapter.errors import MesInputError
from mes_adapter.timefmt import iso_utc

#: how far ahead of the adapter's clock an asserted time may lie (clock differences)
DEFAULT_MAX_AHEAD_MS = 60_000


class ImplausibleTimeError(MesInputError):
    """An asserted time outside the accepted window; the message names the field and the window."""

    def __init__(self, message: str, field: str, earliest_ms: int, latest_ms: int) -> None:
        super().__init__(message)
        self.field = field
        self.earliest_ms = earliest_ms
        self.latest_ms = latest_ms


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Accepted asserted times relative to now: ``[now - max_back_ms, now + max_ahead_ms]``."""

    max_back_ms: int
    max_ahead_ms: int = DEFAULT_MAX_AHEAD_MS

    def check(self, field: str, value_ms: int, now_ms: int) -> int:
        """Return ``value_ms`` if it lies in the window, else raise :class:`ImplausibleTimeError`."""
        earliest, latest = now_ms - self.max_back_ms, now_ms + self.max_ahead_ms
        if earliest <= value_ms <= latest:
            return value_ms
        hint = ""
        if earliest <= value_ms * 1000 <= latest:
            hint = "; it looks like seconds: send milliseconds since 1970-01-01 UTC"
        elif earliest <= value_ms // 1000 <= latest:
            hint = "; it looks like microseconds: send milliseconds since 1970-01-01 UTC"
        when = _iso(value_ms)
        raise ImplausibleTimeError(
            f"{field} {value_ms} ({when}) is outside the accepted range {earliest} .. {latest} "
            f"({iso_utc(earliest)} .. {iso_utc(latest)}: at most {self.max_back_ms // 1000} s back, "
            f"{self.max_ahead_ms // 1000} s ahead of the adapter's clock){hint}",
            field, earliest, latest)


def _iso(ms: int) -> str:
    try:
        return iso_utc(ms)
    except (ValueError, OverflowError, OSError):
        return "not a date this calendar can show"
