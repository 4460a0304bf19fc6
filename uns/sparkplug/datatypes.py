"""The Sparkplug 3.0 DataType enum and what each code means on the wire.

Rules (the spec's DataType table): Int8/16/32 and UInt8/16/32 travel in ``int_value``
(uint32), Int64/UInt64 and DateTime in ``long_value`` (uint64), signed values as two's complement.
We encode negative small ints sign-extended to 32 bits like Tahu Java (what Ignition and the TCK
use) and decode by masking to N bits then sign-extending, so both Tahu Java and Tahu Python
encodings are accepted. UInt32 goes in ``int_value`` per the spec; a ``long_value`` from Tahu Java
is accepted too.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum


class DataType(IntEnum):
    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34

    @property
    def is_array(self) -> bool:
        return DataType.Int8Array <= self <= DataType.DateTimeArray

    @property
    def is_integer(self) -> bool:
        return self in INT_RANGES


#: (min, max, bits) of every integer datatype
INT_RANGES: dict[DataType, tuple[int, int, int]] = {
    DataType.Int8: (-(2**7), 2**7 - 1, 8),
    DataType.Int16: (-(2**15), 2**15 - 1, 16),
    DataType.Int32: (-(2**31), 2**31 - 1, 32),
    DataType.Int64: (-(2**63), 2**63 - 1, 64),
    DataType.UInt8: (0, 2**8 - 1, 8),
    DataType.UInt16: (0, 2**16 - 1, 16),
    DataType.UInt32: (0, 2**32 - 1, 32),
    DataType.UInt64: (0, 2**64 - 1, 64),
}

#: Datatypes allowed in DataSet.types and Template.Parameter.type ("basic": 1-14 in practice)
BASIC_TYPES = frozenset(DataType(code) for code in range(1, 15))

#: Datatypes allowed on Metric.datatype (tck-id-payloads-metric-datatype-value)
METRIC_TYPES = frozenset(DataType(code) for code in (*range(1, 20), *range(22, 35)))

#: Datatypes allowed on PropertyValue.type (tck-id-payloads-metric-propertyvalue-type-value)
PROPERTY_TYPES = BASIC_TYPES | {DataType.PropertySet, DataType.PropertySetList}

INT_FIELD = "int_value"
LONG_FIELD = "long_value"

#: The ``oneof value`` field a scalar datatype uses in Metric / PropertyValue / DataSetValue / Parameter
SCALAR_FIELD: dict[DataType, str] = {
    DataType.Int8: INT_FIELD,
    DataType.Int16: INT_FIELD,
    DataType.Int32: INT_FIELD,
    DataType.UInt8: INT_FIELD,
    DataType.UInt16: INT_FIELD,
    DataType.UInt32: INT_FIELD,
    DataType.Int64: LONG_FIELD,
    DataType.UInt64: LONG_FIELD,
    DataType.DateTime: LONG_FIELD,
    DataType.Float: "float_value",
    DataType.Double: "double_value",
    DataType.Boolean: "boolean_value",
    DataType.String: "string_value",
    DataType.Text: "string_value",
    DataType.UUID: "string_value",
}


def parse_datatype(code: int | str, *, allowed: frozenset[DataType] = METRIC_TYPES,
                   where: str = "metric") -> DataType:
    """Map a wire code (or a name such as ``"Int32"``) to a DataType allowed ``where``."""
    from .errors import UnknownDataTypeError

    try:
        datatype = DataType[code] if isinstance(code, str) else DataType(code)
    except (KeyError, ValueError):
        raise UnknownDataTypeError(f"{where} datatype {code!r} is not in the Sparkplug 3.0 DataType enum") from None
    if datatype not in allowed:
        raise UnknownDataTypeError(f"{where} datatype {datatype.name} ({int(datatype)}) is not allowed there")
    return datatype


def int_to_wire(value: int, datatype: DataType) -> int:
    """Two's complement of an integer for its uint32/uint64 field (signed sign-extended to 32 bits)."""
    low, high, bits = INT_RANGES[datatype]
    if not low <= value <= high:
        from .errors import EncodeError

        raise EncodeError(f"{value} is out of range for {datatype.name} [{low}, {high}]")
    if value >= 0:
        return value
    return value + (1 << 64 if bits == 64 else 1 << 32)


def int_from_wire(raw: int, datatype: DataType) -> int:
    """Inverse of :func:`int_to_wire`, accepting N-bit and 32-bit sign-extended encodings.

    Lenient (masks): use :data:`INT_DECODERS` to also reject raw values that are neither.
    """
    low, _high, bits = INT_RANGES[datatype]
    masked = raw & ((1 << bits) - 1)
    if low < 0 and masked >= 1 << (bits - 1):
        return masked - (1 << bits)
    return masked


def _int_decoder(datatype: DataType) -> Callable[[int], int]:
    """A strict wire -> int converter for one integer datatype; raises ValueError if out of range.

    Accepted raw values: N-bit two's complement (Tahu Python) and, for Int8/Int16, the 32-bit
    sign-extended form (Tahu Java, Ignition). Anything else (UInt8 300, Int8 0x1FF) is garbage
    that masking would silently turn into a plausible number.
    """
    low, _high, bits = INT_RANGES[datatype]
    span = 1 << bits
    if low >= 0:
        def decode_unsigned(raw: int) -> int:
            if raw >= span:
                raise ValueError(f"{raw} is out of range for {datatype.name}")
            return raw
        return decode_unsigned
    half = span >> 1
    ext_low = (1 << 32) - half  # smallest 32-bit sign-extended negative

    def decode_signed(raw: int) -> int:
        if raw < half:
            return raw
        if raw < span:
            return raw - span
        if bits < 32 and ext_low <= raw < 1 << 32:
            return raw - (1 << 32)
        raise ValueError(f"{raw} (0x{raw:X}) is not a {datatype.name} in two's complement")
    return decode_signed


#: Strict decoders of every integer datatype (see :func:`_int_decoder`)
INT_DECODERS: dict[DataType, Callable[[int], int]] = {dt: _int_decoder(dt) for dt in INT_RANGES}

#: Wire code -> DataType, faster than ``DataType(code)`` on the decode hot path
BY_CODE: dict[int, DataType] = {int(dt): dt for dt in DataType}
