"""Time helpers: the core computes in integer UTC milliseconds; JSON shows UTC ISO-8601 with ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """Wall-clock UTC milliseconds (the only place the core reads the clock by default)."""
    return time.time_ns() // 1_000_000


def iso_utc(ms: int) -> str:
    """``1705471200000`` → ``"2024-01-17T06:00:00Z"``; milliseconds shown only when not zero."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_ms(text: str) -> int:
    """ISO-8601 (``Z`` or offset) → UTC milliseconds; a naive time is refused as ambiguous."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return int(dt.timestamp() * 1000)
