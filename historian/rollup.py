"""Interval aggregates as mergeable accumulators: pure code, no I/O, shared by both backends.

The embedded backend keeps one accumulator per tag and minute and per tag and hour, merged with each
new batch (``merge``) instead of recomputed; any interval made of whole minutes or hours is the merge of
their accumulators, and gives exactly what the same computation over the raw samples gives (the test
module checks both against values computed in the test). The span rule is in ``model.Aggregate``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter, mul, sub
from typing import TypeVar

from .model import USABLE, Aggregate, Quality, Value
from .partitions import HOUR_MS, MINUTE_MS
from .values import numeric

T = TypeVar("T")


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
_TIME = itemgetter(0)
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


def minute_parts(points: Sequence[tuple[int, Value, Quality]]) -> list[tuple[int, Acc]]:
    """One tag's points of a batch (in time order) as one accumulator per minute they fall in."""
    out = []
    start = 0
    while start < len(points):
        bucket = points[start][0] - points[start][0] % MINUTE_MS
        end = bisect_left(points, bucket + MINUTE_MS, start, key=_TIME)  # the minute's end, found in C
        acc = from_sorted(points[start:end])
        assert acc is not None
        out.append((bucket, acc))
        start = end
    return out


def hour_parts(minutes: Iterable[tuple[int, Acc]]) -> list[tuple[int, Acc]]:
    """The hours' parts as the merge of their minutes' parts (one pass over the values for both)."""
    hours: dict[int, list[Acc]] = {}
    for minute, part in minutes:
        hours.setdefault(minute - minute % HOUR_MS, []).append(part)
    return [(hour, fold(parts)) for hour, parts in hours.items()]  # type: ignore[misc]


def merge_in_order(stored: Acc | None, part: Acc) -> Acc | None:
    """A stored bucket with the batch's part of it, or None when the part reaches back inside it.

    In order (the usual case: the part starts at or after the bucket's last sample) the merge is exact;
    out of order (late or historical values landing inside a bucket) the caller recomputes the bucket
    from its raw values, already written in the same transaction.
    """
    if stored is None or part.first_any_ms >= stored.last_any_ms:
        return merge(stored, part)
    return None


def fold(parts: Sequence[Acc]) -> Acc | None:
    """Merge consecutive parts (in time order) into one."""
    if len(parts) == 1:  # an interval as wide as the rollup's bucket
        return parts[0]
    out: Acc | None = None
    for part in parts:
        out = merge(out, part)
    return out


def in_intervals(buckets: Iterable[tuple[int, Acc]], start_ms: int, interval_ms: int) -> list[Aggregate]:
    """Stored minute or hour buckets (in time order) merged into intervals of ``interval_ms`` from ``start_ms``."""
    return _per_interval(buckets, start_ms, interval_ms, fold)


def aggregate_points(points: Iterable[tuple[int, Value, Quality]], start_ms: int, end_ms: int,
                     interval_ms: int) -> list[Aggregate]:
    """Aggregates straight from raw points in time order (the reference the rollups must equal)."""
    return _per_interval(((p[0], p) for p in points), start_ms, interval_ms, from_sorted)


def _per_interval(items: Iterable[tuple[int, T]], start_ms: int, interval_ms: int,
                  combine: Callable[[list[T]], Acc | None]) -> list[Aggregate]:
    grouped: dict[int, list[T]] = {}
    for t, item in items:
        grouped.setdefault(t - (t - start_ms) % interval_ms, []).append(item)
    out = []
    for bucket, group in grouped.items():
        acc = combine(group)
        assert acc is not None
        out.append(finish(acc, bucket, bucket + interval_ms))
    return out
