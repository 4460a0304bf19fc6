"""What a failed store transaction held, kept to be written first by the next drain: bounded.

One rule for every stream the adapter writes in transactions it can retry (quality episodes, the
alarm journal): nothing is lost while the store refuses writes (disk full, a read-only file), but a
store that stays broken must not take the adapter's memory with it, so beyond :data:`MAX_KEPT` the
oldest are given up; the caller counts and logs them.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")

#: rows kept while a store fails (an outage of every tag of a large plant fits)
MAX_KEPT = 100_000


def keep_newest(rows: list[T], limit: int = MAX_KEPT) -> tuple[list[T], int]:
    """``rows`` cut to the newest ``limit``, and how many were given up."""
    over = len(rows) - limit
    return (rows[over:], over) if over > 0 else (rows, 0)
