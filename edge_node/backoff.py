"""Jittered exponential backoff for reconnecting to OPC UA servers. No I/O: it only computes delays.

Why jitter: after a plant network blip every edge node (and every endpoint inside one) would
otherwise retry at the same instants and hit a just-restarted PLC together. We use "equal jitter":
the delay is uniformly drawn from ``[d/2, d]`` where ``d = min(max, min * 2**attempt)``, so it
keeps growing but never synchronises.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(self, minimum_s: float, maximum_s: float, *,
                 rng: Callable[[], float] | None = None) -> None:
        if not 0 < minimum_s <= maximum_s:
            raise ValueError(f"backoff needs 0 < minimum ({minimum_s}) <= maximum ({maximum_s})")
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self._rng = rng or random.random
        self.attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failed attempt."""
        ceiling = min(self.maximum_s, self.minimum_s * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        """A connection succeeded: the next failure starts again from the minimum."""
        self.attempt = 0
