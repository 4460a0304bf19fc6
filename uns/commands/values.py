"""Which Sparkplug datatypes a command may write, and how a requested value is judged and compared.

Kept apart from the allowlist because three places need exactly the same rules: the request side
(normalize before hashing), the allowlist checker (type and range) and the edge executor (does
the read-back match the request within tolerance?).

Types are strict: an Int32 rule takes a Python/JSON integer (not ``true``, not ``"5"``, not
``5.5``); Float/Double take integers or floats; Boolean only ``true``/``false``; String/Text only
strings; DateTime an integer of ms since the epoch.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from uns.sparkplug.datatypes import INT_RANGES, DataType

#: Scalar Sparkplug datatypes a command may target
WRITABLE_TYPES: frozenset[DataType] = frozenset(
    {*INT_RANGES, DataType.Float, DataType.Double, DataType.Boolean, DataType.String, DataType.Text,
     DataType.DateTime}
)
NUMERIC_TYPES: frozenset[DataType] = frozenset({*INT_RANGES, DataType.Float, DataType.Double, DataType.DateTime})
_FLOAT32_MAX = 3.4028234663852886e38


def parse_writable_datatype(name: str) -> DataType:
    """``"Double"`` → DataType.Double; ValueError listing the allowed names otherwise."""
    datatype = DataType.__members__.get(name)
    if datatype is None or datatype not in WRITABLE_TYPES:
        allowed = ", ".join(sorted(dt.name for dt in WRITABLE_TYPES))
        raise ValueError(f"datatype {name!r} is not writable by a command; use one of {allowed}")
    return datatype


def type_problem(datatype: DataType, value: Any) -> str | None:
    """Why ``value`` cannot be a ``datatype``, or None if it can (range of the type included)."""
    if datatype in INT_RANGES or datatype is DataType.DateTime:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{datatype.name} needs an integer, got {_describe(value)}"
        low, high = INT_RANGES[datatype][:2] if datatype in INT_RANGES else (0, 2**63 - 1)
        if not low <= value <= high:
            return f"{value} does not fit {datatype.name} [{low}, {high}]"
        return None
    if datatype is DataType.Float or datatype is DataType.Double:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{datatype.name} needs a number, got {_describe(value)}"
        if not math.isfinite(value):
            return f"{datatype.name} needs a finite number, got {value!r}"
        if datatype is DataType.Float and abs(value) > _FLOAT32_MAX:
            return f"{value} does not fit a 32-bit Float"
        return None
    if datatype is DataType.Boolean:
        return None if isinstance(value, bool) else f"Boolean needs true or false, got {_describe(value)}"
    if datatype is DataType.String or datatype is DataType.Text:
        return None if isinstance(value, str) else f"{datatype.name} needs a string, got {_describe(value)}"
    return f"{datatype.name} is not writable by a command"


def normalize_value(datatype: DataType, value: Any) -> Any:
    """The value exactly as it will reach the PLC: Float rounds to float32, Double to float.

    The request side hashes the normalized value; the edge decodes the same number from the
    wire, so both compute the same command hash.
    """
    if datatype is DataType.Float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return struct.unpack("<f", struct.pack("<f", float(value)))[0]
    if datatype is DataType.Double and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def values_match(datatype: DataType, requested: Any, readback: Any, tolerance: float = 0.0) -> bool:
    """Does a read-back confirm the request? Numbers within ``tolerance`` (absolute), else equal."""
    if readback is None:
        return False
    if datatype in NUMERIC_TYPES:
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (requested, readback)):
            return False
        if datatype is DataType.Float:
            requested, readback = normalize_value(datatype, requested), normalize_value(datatype, readback)
        return bool(abs(readback - requested) <= tolerance)
    return bool(readback == requested and type(readback) is type(requested))


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


__all__ = ["NUMERIC_TYPES", "WRITABLE_TYPES", "normalize_value", "parse_writable_datatype", "type_problem",
           "values_match"]
