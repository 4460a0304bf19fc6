"""Interval aggregates as mergeable accumulators: pure code, no I/O, shared by both backends.

The embedded backend keeps one accumulator per tag and minute and per tag and hour, merged with each
new batch (``merge``) instead of recomputed; any interval made of whole minutes or hours is the merge of
their accumulators, and gives exactly what the same computation over the raw samples gives (the test
module checks both against values computed in the test). The span rule is in ``model.Aggregate``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import mul, sub

from .model import USABLE, Aggregate, Quality, Value
from .values import numeric


@dataclass(frozen=True, slots=True)
class Acc:
    first_any_ms: int  # first and last sample of any quality: spans cross from one part to the next
    last_any_ms: int
    last_num: float | None  # the last sample's number if it was usable and numeric (its span is still open)
    samples: int
    count: int
    min: float | None
    max: float | None
    first: Value
    first_ms: int | None
    last: Value
    last_ms: int | None
    integral: float  # sum of value x duration over closed spans
    weight: int  # ms covered by closed spans


def from_sorted(points: Sequence[tuple[int, Value, Quality]]) -> Acc | None:
    """The accumulator of ``(source_ms, value, quality)`` points already in time order."""
    if len(points) > 1:
        ts, values, qualities = zip(*points, strict=True)
        # the common case, every value a usable float: C-level builtins instead of the loop below
        if _USABLE_SET.issuperset(qualities) and set(map(type, values)) == _FLOAT:
            spans = list(map(sub, ts[1:], ts[:-1]))
            return Acc(ts[0], ts[-1], values[-1], len(ts), len(ts), min(values), max(values),  # type: ignore[arg-type]
                       values[0], ts[0], values[-1], ts[-1], sum(map(mul, values, spans)), ts[-1] - ts[0])
    return _from_sorted_loop(points)


_USABLE_SET = frozenset(USABLE)
_FLOAT = {float}


def _from_sorted_loop(points: Iterable[tuple[int, Value, Quality]]) -> Acc | None:
    it = iter(points)
    try:
        ts, value, quality = next(it)
    except StopIteration:
        return None
    first_any = ts
    samples = count = weight = 0
    integral = 0.0
    lo = hi = None
    first = last = None
    first_ms = last_ms = None
    prev_ms: int | None = None
    prev_num: float | None = None
    while True:
        if prev_num is not None:
            span = ts - prev_ms  # type: ignore[operator]
            integral += prev_num * span
            weight += span
        samples += 1
        num = None
        if quality in USABLE and value is not None:
            count += 1
            if first_ms is None:
                first, first_ms = value, ts
            last, last_ms = value, ts
            num = numeric(value)
            if num is not None:
                lo = num if lo is None or num < lo else lo
                hi = num if hi is None or num > hi else hi
        prev_ms, prev_num = ts, num
        try:
            ts, value, quality = next(it)
        except StopIteration:
            break
    return Acc(first_any, prev_ms, prev_num, samples, count, lo, hi, first, first_ms, last, last_ms,  # type: ignore[arg-type]
               integral, weight)


def merge(a: Acc | None, b: Acc | None) -> Acc | None:
    """``a`` then ``b``: every sample of ``a`` at or before every sample of ``b`` (callers check)."""
    if a is None:
        return b
    if b is None:
        return a
    integral, weight = a.integral + b.integral, a.weight + b.weight
    if a.last_num is not None:
        span = b.first_any_ms - a.last_any_ms
        integral += a.last_num * span
        weight += span
    return Acc(
        a.first_any_ms, b.last_any_ms, b.last_num, a.samples + b.samples, a.count + b.count,
        _pick(min, a.min, b.min), _pick(max, a.max, b.max),
        a.first if a.first_ms is not None else b.first, a.first_ms if a.first_ms is not None else b.first_ms,
        b.last if b.last_ms is not None else a.last, b.last_ms if b.last_ms is not None else a.last_ms,
        integral, weight)


def _pick(f, x: float | None, y: float | None) -> float | None:
    if x is None:
        return y
    if y is None:
        return x
    return f(x, y)


def finish(acc: Acc, start_ms: int, end_ms: int) -> Aggregate:
    """Close the last open span at the interval's end and compute the time-weighted average."""
    integral, weight = acc.integral, acc.weight
    if acc.last_num is not None:
        span = end_ms - acc.last_any_ms
        integral += acc.last_num * span
        weight += span
    twa = integral / weight if weight > 0 else None
    return Aggregate(start_ms, end_ms, acc.count, acc.min, acc.max, acc.first, acc.last, twa, acc.samples)


def fold(parts: Iterable[Acc]) -> Acc | None:
    """Merge consecutive parts (in time order) into one."""
    out: Acc | None = None
    for part in parts:
        out = merge(out, part)
    return out


def aggregate_points(points: Iterable[tuple[int, Value, Quality]], start_ms: int, end_ms: int,
                     interval_ms: int) -> list[Aggregate]:
    """Aggregates straight from raw points in time order (the reference the rollups must equal)."""
    buckets: dict[int, list[tuple[int, Value, Quality]]] = {}
    for point in points:
        buckets.setdefault(point[0] - (point[0] - start_ms) % interval_ms, []).append(point)
    out = []
    for bucket, pts in buckets.items():
        acc = from_sorted(pts)
        assert acc is not None
        out.append(finish(acc, bucket, bucket + interval_ms))
    return out
