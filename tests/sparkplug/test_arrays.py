"""Array datatypes 22-34 against golden bytes (the spec's examples as corrected by the 3.x errata,
sparkplug PR #436), plus empty arrays and malformed array bytes."""

from __future__ import annotations

import pytest

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.arrays import decode_array, encode_array
from uns.sparkplug.codec import build_payload, decode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import EncodeError, MalformedPayloadError
from uns.sparkplug.model import Metric, Payload
from uns.sparkplug.topic import MessageType

F, T = False, True

# The Int8 (-23), Int32, Float, Boolean, String and DateTime vectors are the corrected errata
# bytes. The others are the 3.0.0 spec examples for the types the errata left alone; those (and
# DoubleArray, whose 3.0.0 example the errata fixes for byte order) were
# cross-checked with struct.pack('<...') while writing this table.
GOLDEN = [
    (DataType.Int8Array, [-23, 123], "E9 7B"),  # errata: -23 is E9, not EF
    (DataType.Int16Array, [-30000, 30000], "D0 8A 30 75"),
    (DataType.Int32Array, [123456789, 987654321], "15 CD 5B 07 B1 68 DE 3A"),
    (DataType.Int64Array, [-4270929666821191986, -3601064768563266876],
     "CE 06 72 AC 18 9C BA C4 C4 BA 9C 18 AC 72 06 CE"),
    (DataType.UInt8Array, [23, 250], "17 FA"),
    (DataType.UInt16Array, [30, 52360], "1E 00 88 CC"),
    (DataType.UInt32Array, [52, 3293969225], "34 00 00 00 49 FB 55 C4"),
    (DataType.UInt64Array, [52, 16444743074749521625], "34 00 00 00 00 00 00 00 D9 9E 02 D1 B2 76 37 E4"),
    (DataType.FloatArray, [1.23, 89.341], "A4 70 9D 3F 98 AE B2 42"),  # errata
    (DataType.DoubleArray, [12.354213, 1022.9123213],
     "D7 A2 05 68 5B B5 28 40 8E 17 1C 6F 4C F7 8F 40"),  # errata: 3.0.0 text is byte-reversed
    (DataType.BooleanArray, [F, F, T, T, F, T, F, F, T, T, F, T], "0C 00 00 00 34 D0"),  # MSB-first
    (DataType.StringArray, ["ABC", "hello"], "41 42 43 00 68 65 6C 6C 6F 00"),
    (DataType.DateTimeArray, [1256102875335, 1656107875000],
     "C7 D0 90 75 24 01 00 00 B8 BA B8 97 81 01 00 00"),  # errata
]


@pytest.mark.parametrize(("datatype", "values", "hexbytes"), GOLDEN, ids=[g[0].name for g in GOLDEN])
def test_golden_vectors(datatype: DataType, values: list, hexbytes: str) -> None:
    expected = bytes.fromhex(hexbytes)
    assert encode_array(datatype, values) == expected
    decoded = decode_array(datatype, expected)
    if datatype is DataType.FloatArray:
        assert decoded == pytest.approx(values, rel=1e-7)
    else:
        assert decoded == values
    # and inside a metric's bytes_value
    raw = build_payload(Payload([Metric("a", values, datatype, timestamp=1)], 1, 0), MessageType.NBIRTH)
    assert raw.metrics[0].bytes_value == expected


@pytest.mark.parametrize("datatype", [dt for dt in DataType if dt.is_array], ids=lambda d: d.name)
def test_empty_arrays(datatype: DataType) -> None:
    data = encode_array(datatype, [])
    assert data == (b"\x00\x00\x00\x00" if datatype is DataType.BooleanArray else b"")
    assert decode_array(datatype, data) == []


def test_string_array_with_empty_strings() -> None:
    assert encode_array(DataType.StringArray, ["", "a", ""]) == b"\x00a\x00\x00"
    assert decode_array(DataType.StringArray, b"\x00a\x00\x00") == ["", "a", ""]


@pytest.mark.parametrize(("datatype", "data", "match"), [
    (DataType.Int32Array, b"\x01\x02\x03", "multiple of 4"),
    (DataType.DoubleArray, b"\x00" * 9, "multiple of 8"),
    (DataType.BooleanArray, b"\x01\x00", "4-byte count"),
    (DataType.BooleanArray, b"\x09\x00\x00\x00\xff", "declares 9"),
    (DataType.StringArray, b"abc", "NUL"),
    (DataType.StringArray, b"\xff\x00", "UTF-8"),
])
def test_malformed_array_bytes_name_the_metric(datatype: DataType, data: bytes, match: str) -> None:
    raw = pb.Payload(timestamp=1, seq=0)
    raw.metrics.add(name="Line/Arr", datatype=datatype, timestamp=1, bytes_value=data)
    with pytest.raises(MalformedPayloadError, match=match) as info:
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    assert "'Line/Arr'" in str(info.value)


@pytest.mark.parametrize(("datatype", "values"), [
    (DataType.Int8Array, [128]), (DataType.UInt16Array, [-1]), (DataType.BooleanArray, [1]),
    (DataType.StringArray, ["a\x00b"]), (DataType.FloatArray, [1e39]), (DataType.Int32Array, "abc"),
    (DataType.DoubleArray, [True]),
])
def test_bad_array_values_raise_encode_error(datatype: DataType, values: object) -> None:
    with pytest.raises(EncodeError):
        encode_array(datatype, values)  # type: ignore[arg-type]
