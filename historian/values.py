"""Values as the plant sent them, in and out of the stores' columns, without losing type or precision.

The Sparkplug datatype travels with each row, so a stored ``1`` reads back as ``True`` for a Boolean and
a UInt64 above 2**63-1 (which neither SQLite's nor PostgreSQL's 64-bit integer holds) reads back as the
same Python int from its decimal text. SQLite turns a NaN into NULL, so non-finite floats go in as text.
"""

from __future__ import annotations

import math

from uns.sparkplug.datatypes import DataType

from .errors import ValueEncodingError
from .model import Value

BOOLEAN = DataType.Boolean
#: Sparkplug integer types (Int8..UInt64) and DateTime (epoch ms as an integer)
INTEGER_TYPES = frozenset({DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64, DataType.UInt8,
                           DataType.UInt16, DataType.UInt32, DataType.UInt64, DataType.DateTime})
FLOAT_TYPES = frozenset({DataType.Float, DataType.Double})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _refuse(value: object) -> ValueEncodingError:
    return ValueEncodingError(
        f"the historian stores numbers, booleans, strings and null; got {type(value).__name__} {value!r:.60}")


def to_sqlite(value: Value) -> int | float | str | None:
    """One SQLite column (manifest typing keeps int, float and text apart)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if kind is bool:
        return int(value)
    if kind is str or value is None:
        return value
    raise _refuse(value)


def from_sqlite(stored: int | float | str | None, datatype: int) -> Value:
    if stored is None:
        return None
    if datatype == BOOLEAN:
        return bool(stored)
    if type(stored) is str:
        if datatype in INTEGER_TYPES:
            return int(stored)
        if datatype in FLOAT_TYPES:
            return float(stored)
    return stored


def to_columns(value: Value) -> tuple[float | None, int | None, str | None]:
    """PostgreSQL's three typed columns (double, bigint, text): exactly one is set, or none for null."""
    kind = type(value)
    if kind is float:
        return value, None, None
    if kind is int:
        return (None, value, None) if _INT64_MIN <= value <= _INT64_MAX else (None, None, str(value))
    if kind is bool:
        return None, int(value), None
    if kind is str:
        if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it here, not in the middle of a COPY
            raise ValueEncodingError(f"a string with a NUL character cannot be stored in PostgreSQL: {value!r:.60}")
        return None, None, value
    if value is None:
        return None, None, None
    raise _refuse(value)


def from_columns(num: float | None, integer: int | None, text: str | None, datatype: int) -> Value:
    if integer is not None:
        return bool(integer) if datatype == BOOLEAN else integer
    if num is not None:
        return num
    if text is not None:
        return int(text) if datatype in INTEGER_TYPES else text
    return None


def numeric(value: Value) -> float | None:
    """The value as a number for min/max/average (booleans as 0/1), or None for text and null."""
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        return float(value)
    return None
