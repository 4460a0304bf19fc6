"""Byte layouts of the array datatypes 22-34 (all carried in ``bytes_value``).

Numeric arrays are packed little-endian; BooleanArray is a uint32 LE count then bits MSB-first;
StringArray is NUL-terminated UTF-8 strings; DateTimeArray is int64 LE ms. The golden vectors of
the 3.x errata (sparkplug PR #436) are checked in tests/sparkplug/test_arrays.py.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from .datatypes import INT_RANGES, DataType
from .errors import EncodeError, MalformedPayloadError

_PACK: dict[DataType, tuple[str, int, DataType | None]] = {
    DataType.Int8Array: ("b", 1, DataType.Int8),
    DataType.Int16Array: ("h", 2, DataType.Int16),
    DataType.Int32Array: ("i", 4, DataType.Int32),
    DataType.Int64Array: ("q", 8, DataType.Int64),
    DataType.UInt8Array: ("B", 1, DataType.UInt8),
    DataType.UInt16Array: ("H", 2, DataType.UInt16),
    DataType.UInt32Array: ("I", 4, DataType.UInt32),
    DataType.UInt64Array: ("Q", 8, DataType.UInt64),
    DataType.FloatArray: ("f", 4, None),
    DataType.DoubleArray: ("d", 8, None),
    DataType.DateTimeArray: ("q", 8, DataType.Int64),
}

_FLOAT32_MAX = 3.4028234663852886e38


def encode_array(datatype: DataType, values: Sequence) -> bytes:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise EncodeError(f"{datatype.name} needs a list, got {type(values).__name__}")
    if datatype is DataType.BooleanArray:
        return _encode_bools(values)
    if datatype is DataType.StringArray:
        return _encode_strings(values)
    fmt, _size, element = _PACK[datatype]
    if element is not None:
        low, high, _bits = INT_RANGES[element]
        for index, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, int):
                raise EncodeError(f"{datatype.name}[{index}] must be an int, got {type(item).__name__}")
            if not low <= item <= high:
                raise EncodeError(f"{datatype.name}[{index}] = {item} is out of range [{low}, {high}]")
    else:
        for index, item in enumerate(values):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                raise EncodeError(f"{datatype.name}[{index}] must be a number, got {type(item).__name__}")
            if fmt == "f" and math.isfinite(item) and abs(item) > _FLOAT32_MAX:
                raise EncodeError(f"{datatype.name}[{index}] = {item} does not fit a 32-bit float")
    return struct.pack(f"<{len(values)}{fmt}", *values)


def decode_array(datatype: DataType, data: bytes) -> list:
    if datatype is DataType.BooleanArray:
        return _decode_bools(data)
    if datatype is DataType.StringArray:
        return _decode_strings(data)
    fmt, size, _element = _PACK[datatype]
    if len(data) % size:
        raise MalformedPayloadError(
            f"{datatype.name} needs a multiple of {size} bytes, got {len(data)}"
        )
    return list(struct.unpack(f"<{len(data) // size}{fmt}", data))


def _encode_bools(values: Sequence) -> bytes:
    out = bytearray(struct.pack("<I", len(values)))
    out.extend(bytes((len(values) + 7) // 8))
    for index, item in enumerate(values):
        if not isinstance(item, bool):
            raise EncodeError(f"BooleanArray[{index}] must be a bool, got {type(item).__name__}")
        if item:
            out[4 + index // 8] |= 0x80 >> (index % 8)
    return bytes(out)


def _decode_bools(data: bytes) -> list[bool]:
    if len(data) < 4:
        raise MalformedPayloadError(f"BooleanArray needs a 4-byte count, got {len(data)} bytes")
    (count,) = struct.unpack_from("<I", data)
    if len(data) - 4 < (count + 7) // 8:
        raise MalformedPayloadError(
            f"BooleanArray declares {count} values but carries only {len(data) - 4} bytes of bits"
        )
    return [bool(data[4 + i // 8] & (0x80 >> (i % 8))) for i in range(count)]


def _encode_strings(values: Sequence) -> bytes:
    out = bytearray()
    for index, item in enumerate(values):
        if not isinstance(item, str):
            raise EncodeError(f"StringArray[{index}] must be a str, got {type(item).__name__}")
        if "\x00" in item:
            raise EncodeError(f"StringArray[{index}] contains NUL, which terminates strings on the wire")
        out += item.encode("utf-8") + b"\x00"
    return bytes(out)


def _decode_strings(data: bytes) -> list[str]:
    if not data:
        return []
    if not data.endswith(b"\x00"):
        raise MalformedPayloadError("StringArray does not end with a NUL terminator")
    try:
        return [part.decode("utf-8") for part in data[:-1].split(b"\x00")]
    except UnicodeDecodeError as exc:
        raise MalformedPayloadError(f"StringArray element is not UTF-8: {exc}") from exc
