"""Counters of the host, gathered into one snapshot for ``/metrics``, logs and tests."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any


class LagWindow:
    """The last ``size`` mirror lags (ms, receive → PUBACK of the mirror message)."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[int] = deque(maxlen=size)
        self.last = 0
        self.max = 0

    def add_many(self, lags_ms: list[int]) -> None:
        """The lags of one confirmed batch (one call per batch, not per message)."""
        if lags_ms:
            self._values.extend(lags_ms)
            self.last = lags_ms[-1]
            top = max(lags_ms)
            if top > self.max:
                self.max = top

    def percentile(self, q: float) -> int:
        if not self._values:
            return 0
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class HostStats:
    messages_in: int
    bytes_in: int
    births: int
    nbirths: int
    dbirths: int
    deaths: int
    ndeaths: int
    ddeaths: int
    metrics_decoded: int
    seq_gaps: int
    rebirths_requested: dict[str, int]
    rebirths_suppressed: int
    #: payloads not applied because they broke Sparkplug (malformed, unknown alias, wrong type)
    invalid_payloads: int
    invalid_topics: int
    oversize: int
    violations: dict[str, int]
    certificates_used: int
    historical_values: int
    out_of_order_values: int
    mirror_published: int
    mirror_conflated: int
    mirror_pending: int
    mirror_lag_ms: dict[str, int]
    change_stream_dropped: int
    reconnects: int
    state_reasserted: int
    handler_errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rebirths_total(self) -> int:
        return sum(self.rebirths_requested.values())
