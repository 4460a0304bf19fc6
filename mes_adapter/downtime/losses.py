"""Which loss bucket each stop's lost time goes to, summed over a window. Pure, no I/O.

A micro-stop is speed loss whatever its reason (``micro_stop_bucket``); any other stop goes to the
bucket of its reason code, or to ``unexplained_bucket`` while nobody gave one. The availability
buckets therefore add up to OEE's unplanned stop time and the micro-stop bucket to its micro-stop
time, for the same window (both come from :func:`mes_adapter.oee.stops.detect_stops`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mes_adapter.downtime.config import DowntimeConfig
from mes_adapter.oee.compute import Interval
from mes_adapter.oee.stops import StopEvent, lost_in


@dataclass(frozen=True, slots=True)
class BucketLoss:
    lost_ms: int
    stops: int


def losses_dict(losses: Mapping[str, BucketLoss]) -> dict[str, dict[str, float | int]]:
    """JSON view (``/api/oee`` ``losses`` and the ``_mes/oee`` payloads): seconds and stop counts per bucket."""
    return {bucket: {"lost_s": loss.lost_ms / 1000, "stops": loss.stops} for bucket, loss in losses.items()}


def bucket_of(stop: StopEvent, code: str | None, config: DowntimeConfig) -> str:
    """A stored code the hierarchy no longer has (the config changed since) counts as unexplained:
    the stop needs a current reason, and one stale code must not stop the line's figures."""
    if stop.micro:
        return config.micro_stop_bucket
    known = config.codes()
    if code is None or code not in known:
        return config.unexplained_bucket
    return known[code].bucket


def loss_buckets(stops: Sequence[StopEvent], reasons: Mapping[int, str], window: Interval,
                 planned: Sequence[Interval], config: DowntimeConfig) -> dict[str, BucketLoss]:
    """Lost time and stop count per bucket inside ``window``; ``reasons`` maps a stop's start to its code.

    Every configured bucket appears (zero when nothing fell into it), so a report has stable columns.
    """
    out = {bucket: BucketLoss(0, 0) for bucket in
           [*config.reasons, config.micro_stop_bucket, config.unexplained_bucket]}
    for stop in stops:
        lost = lost_in(stop, window, planned)
        if lost <= 0:
            continue
        bucket = bucket_of(stop, reasons.get(stop.start_ms), config)
        prev = out[bucket]
        out[bucket] = BucketLoss(prev.lost_ms + lost, prev.stops + 1)
    return out
