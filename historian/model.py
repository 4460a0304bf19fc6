"""What the historian stores and answers with: frozen dataclasses with slots, not pydantic.

Why not pydantic: a value is built once per change on the ingest hot path (100,000/s and more).
``bench/historian_ingest.py`` prints the cost of one ``Sample`` both ways; validation happens once per
value in the backends' encoders (``historian.values``), which must look at the type anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

#: the value types the historian keeps as the plant sent them (None: no value, e.g. a BAD reading)
Value = int | float | bool | str | None


class Quality(IntEnum):
    """Quality as stored: a small integer (one byte per row), the same four states as the UNS JSON."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2
    STALE = 3  # the host marks a dead node's or device's metrics STALE: that is a gap too

    @classmethod
    def parse(cls, text: str) -> Quality:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown quality {text!r}: expected GOOD, UNCERTAIN, BAD or STALE") from None


#: qualities whose values count in aggregates; the others are gaps
USABLE = frozenset({Quality.GOOD, Quality.UNCERTAIN})


class TagId(NamedTuple):
    """A tag's identity: its Sparkplug address and its ISA-95 path (``""`` when the host knows none).

    A named tuple, not a dataclass: it is a dict key on the ingest path (tag interning), and a tuple's
    hash is computed in C (a frozen dataclass's ``__hash__`` is Python code, ~10 % of ingest time).
    """

    group: str
    edge: str
    device: str  # "" for a node-level metric
    metric: str
    path: str = ""


@dataclass(frozen=True, slots=True)
class Sample:
    """One value as the host received it, before any MES-side transformation."""

    tag: TagId
    source_ms: int  # the metric's Sparkplug timestamp (the plant's time)
    receipt_ms: int  # when the host received it
    value: Value
    datatype: int  # the Sparkplug DataType code (a uns.sparkplug.datatypes.DataType or its int)
    quality: Quality = Quality.GOOD
    status_code: int = 0  # raw OPC UA StatusCode, 0 = Good
    is_historical: bool = False


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One interval ``[start_ms, end_ms)`` of one tag.

    ``count``, ``first`` and ``last`` cover GOOD and UNCERTAIN values; ``min``, ``max`` and ``twa`` only the
    numeric ones (booleans as 0/1). Each value holds from its source time until the next sample of the
    tag (any quality) or the interval's end; a BAD or STALE sample ends the previous value's span and adds
    none, so the time-weighted average covers only the time a usable value was known. Time before the
    interval's first sample is not covered (no value is carried in from the previous interval).
    """

    start_ms: int
    end_ms: int
    count: int
    min: float | None
    max: float | None
    first: Value
    last: Value
    twa: float | None
    samples: int  # every sample in the interval, whatever its quality


@dataclass(frozen=True, slots=True)
class Gap:
    """A time when the tag had no usable value: from the first BAD/STALE sample to the next usable one.

    ``end_ms`` is None when the range ends (as far as the data shows) inside the gap.
    """

    start_ms: int
    end_ms: int | None
    quality: Quality  # the quality of the sample that opened the gap
