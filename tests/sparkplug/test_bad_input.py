"""Whatever bytes arrive, decoding raises a SparkplugError subclass that says what and where."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import (
    DataTypeMismatchError,
    MalformedPayloadError,
    RemoteProtocolError,
    SparkplugError,
    UnknownAliasError,
    UnknownDataTypeError,
)
from uns.sparkplug.model import DataSet, Metric, Payload, PropertyValue, Template
from uns.sparkplug.topic import MessageType

TS = 1_700_000_000_000
ALL_TYPES = [None, *MessageType.__members__.values()]
ALL_TYPES.remove(MessageType.STATE)


def _valid() -> bytes:
    return encode_payload(Payload([
        Metric("a", -1, DataType.Int8, alias=1, timestamp=TS),
        Metric("ds", DataSet(["c"], [DataType.String], [["x"], [None]]), DataType.DataSet, timestamp=TS),
        Metric("t", Template(template_ref="T", metrics=[Metric("m", 1.5, DataType.Float)]), DataType.Template,
               timestamp=TS, properties={"Quality": PropertyValue(DataType.Int32, 192)}),
        Metric("arr", [True, False], DataType.BooleanArray, timestamp=TS),
    ], TS, 0), MessageType.NBIRTH)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from(ALL_TYPES))
def test_random_bytes_only_raise_sparkplug_errors(data: bytes, message_type: MessageType | None) -> None:
    try:
        decode_payload(data, message_type)
    except SparkplugError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_payloads_only_raise_sparkplug_errors(data: st.DataObject) -> None:
    blob = bytearray(_valid())
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    message_type = data.draw(st.sampled_from(ALL_TYPES))
    catalog = EdgeNodeCatalog()
    catalog.decode(MessageType.NBIRTH, _valid())
    try:
        decode_payload(bytes(blob[:cut]), message_type, None if message_type is None or
                       message_type.is_birth else catalog.resolver())
    except SparkplugError:
        pass


@pytest.mark.parametrize("cut", [1, 5, 17, 40])
def test_truncated_payload_is_malformed(cut: int) -> None:
    with pytest.raises(MalformedPayloadError):
        decode_payload(_valid()[:-cut], MessageType.NBIRTH)


def test_not_bytes_at_all() -> None:
    with pytest.raises(MalformedPayloadError):
        decode_payload("not bytes", MessageType.NBIRTH)  # type: ignore[arg-type]
    with pytest.raises(MalformedPayloadError):
        decode_payload(b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01")


def _one(**fields: object) -> bytes:
    raw = pb.Payload(timestamp=TS, seq=0)
    raw.metrics.add(**fields)
    return raw.SerializeToString()


@pytest.mark.parametrize("code", [0, 35, 99, 2**32 - 1, 20, 21])
def test_unknown_or_misplaced_metric_datatype(code: int) -> None:
    """tck-id-payloads-metric-datatype-value: 1-19 and 22-34 only; the message names the metric."""
    with pytest.raises(UnknownDataTypeError, match="'Line/X'") as info:
        decode_payload(_one(name="Line/X", datatype=code, timestamp=TS, int_value=1), MessageType.NBIRTH)
    assert str(code) in str(info.value)


def test_unknown_datatype_in_dataset_property_and_parameter() -> None:
    """tck-id-payloads-dataset-types-value, tck-id-payloads-metric-propertyvalue-type-value,
    tck-id-payloads-template-parameter-type-value."""
    raw = pb.Payload(timestamp=TS, seq=0)
    m = raw.metrics.add(name="DS", datatype=DataType.DataSet, timestamp=TS)
    m.dataset_value.columns.append("c")
    m.dataset_value.types.append(DataType.Bytes)
    with pytest.raises(UnknownDataTypeError, match="'DS'.*Bytes"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    raw = pb.Payload(timestamp=TS, seq=0)
    m = raw.metrics.add(name="P", datatype=DataType.Int32, timestamp=TS, int_value=1)
    m.properties.keys.append("k")
    m.properties.values.add(type=77)
    with pytest.raises(UnknownDataTypeError, match="'P' property 'k'.*77"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    raw = pb.Payload(timestamp=TS, seq=0)
    m = raw.metrics.add(name="T", datatype=DataType.Template, timestamp=TS)
    m.template_value.parameters.add(name="p", type=DataType.Template)
    with pytest.raises(UnknownDataTypeError, match="'T' template parameter 'p'"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)


def test_birth_without_datatype_or_name() -> None:
    """tck-id-payloads-metric-datatype-req, tck-id-payloads-alias-birth-requirement."""
    with pytest.raises(MalformedPayloadError, match="'Line/X' has no datatype"):
        decode_payload(_one(name="Line/X", timestamp=TS, int_value=1), MessageType.NBIRTH)
    with pytest.raises(MalformedPayloadError, match="alias 4 has no name"):
        decode_payload(_one(alias=4, datatype=3, timestamp=TS, int_value=1), MessageType.DBIRTH)


def test_value_field_mismatching_datatype() -> None:
    with pytest.raises(DataTypeMismatchError, match="'Line/X' is Boolean but carries string_value"):
        decode_payload(_one(name="Line/X", datatype=DataType.Boolean, timestamp=TS, string_value="t"),
                       MessageType.NBIRTH)
    with pytest.raises(DataTypeMismatchError, match="'Line/Y'.*UInt8"):
        decode_payload(_one(name="Line/Y", datatype=DataType.UInt8, timestamp=TS, int_value=256), MessageType.NBIRTH)
    with pytest.raises(DataTypeMismatchError, match="'Line/Z'.*Int8"):
        decode_payload(_one(name="Line/Z", datatype=DataType.Int8, timestamp=TS, int_value=0x1FF), MessageType.NBIRTH)
    with pytest.raises(DataTypeMismatchError, match="'Line/W' is Int16Array but carries int_value"):
        decode_payload(_one(name="Line/W", datatype=DataType.Int16Array, timestamp=TS, int_value=1),
                       MessageType.NBIRTH)


def test_data_alias_never_born() -> None:
    cat = EdgeNodeCatalog()
    cat.decode(MessageType.NBIRTH, _valid())
    raw = pb.Payload(timestamp=TS, seq=1)
    raw.metrics.add(alias=1234, timestamp=TS, int_value=1)
    with pytest.raises(UnknownAliasError, match="alias 1234"):
        cat.decode(MessageType.NDATA, raw.SerializeToString())
    assert issubclass(UnknownAliasError, RemoteProtocolError)


def test_property_keys_and_values_differ_in_length() -> None:
    """tck-id-payloads-propertyset-keys-array-size, tck-id-payloads-propertyset-values-array-size."""
    raw = pb.Payload(timestamp=TS, seq=0)
    m = raw.metrics.add(name="Line/P", datatype=DataType.Int32, timestamp=TS, int_value=1)
    m.properties.keys.extend(["a", "b"])
    m.properties.values.add(type=DataType.Int32, int_value=1)
    with pytest.raises(MalformedPayloadError, match="'Line/P'.*2 keys but 1 values"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)


def test_dataset_shape_errors() -> None:
    """tck-id-payloads-dataset-column-num-headers, tck-id-payloads-dataset-column-size."""
    raw = pb.Payload(timestamp=TS, seq=0)
    m = raw.metrics.add(name="Line/D", datatype=DataType.DataSet, timestamp=TS)
    m.dataset_value.columns.extend(["a", "b"])
    m.dataset_value.types.append(DataType.Int32)
    with pytest.raises(MalformedPayloadError, match="'Line/D'.*2 columns but 1 types"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    m.dataset_value.types.append(DataType.Int32)
    m.dataset_value.num_of_columns = 3
    with pytest.raises(MalformedPayloadError, match="num_of_columns"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    m.dataset_value.num_of_columns = 2
    m.dataset_value.rows.add().elements.add(int_value=1)
    with pytest.raises(MalformedPayloadError, match="row 0 has 1 values for 2 columns"):
        decode_payload(raw.SerializeToString(), MessageType.NBIRTH)


def test_invalid_utf8_string_is_malformed() -> None:
    # field 1 (Metric.name) of metric field 2 holding 0xFF: proto2 strings are only checked when read
    data = bytes([0x12, 0x03, 0x0A, 0x01, 0xFF])
    try:
        decode_payload(data, MessageType.NBIRTH)
    except SparkplugError:
        pass


def test_invalid_utf8_string_is_malformed_not_bytes() -> None:
    """upb returns bytes for a proto2 string with invalid UTF-8; the codec must refuse it."""
    from uns.sparkplug import sparkplug_b_pb2 as pb
    from uns.sparkplug.codec import decode_payload
    from uns.sparkplug.errors import MalformedPayloadError
    from uns.sparkplug.topic import MessageType

    payload = pb.Payload(timestamp=1, seq=0)
    metric = payload.metrics.add(name="a", datatype=12, timestamp=1, string_value="x")
    assert metric.string_value == "x"
    data = payload.SerializeToString().replace(b"z\x01x", b"z\x01\xff")
    with pytest.raises(MalformedPayloadError, match="UTF-8"):
        decode_payload(data, MessageType.NBIRTH)
    bad_name = payload.SerializeToString().replace(b"\n\x01a", b"\n\x01\xfe")
    with pytest.raises(MalformedPayloadError, match="UTF-8"):
        decode_payload(bad_name, MessageType.NBIRTH)
