"""encode -> decode gives back the input, for every datatype of the 3.0 enum, and the wire holds
exactly the fields the spec asks for in each message type."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import build_payload, decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import EncodeError
from uns.sparkplug.json_view import payload_to_json
from uns.sparkplug.model import (
    DataSet,
    MetaData,
    Metric,
    Parameter,
    Payload,
    PropertyValue,
    Template,
)
from uns.sparkplug.topic import MessageType

from .strategies import METRIC_DATATYPES, TS, f32, metrics, values

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _normalized(metric: Metric) -> Metric:
    """An empty PropertySet is not sent at all, so it comes back as None."""
    return dataclasses.replace(metric, properties=metric.properties or None)


def roundtrip(payload: Payload, message_type: MessageType = MessageType.NBIRTH) -> Payload:
    return decode_payload(encode_payload(payload, message_type), message_type)


def assert_same(decoded: Payload, expected: Payload) -> None:
    # the JSON view maps NaN to "NaN" so NaN == NaN, and shows every field that is set
    expected = dataclasses.replace(expected, metrics=[_normalized(m) for m in expected.metrics])
    assert payload_to_json(decoded) == payload_to_json(expected)


@pytest.mark.parametrize("datatype", METRIC_DATATYPES, ids=lambda d: d.name)
@SETTINGS
@given(data=st.data())
def test_every_metric_datatype_round_trips_in_a_birth(datatype: DataType, data: st.DataObject) -> None:
    """tck-id-payloads-metric-datatype-value: every enum datatype 1-19, 22-34 survives the wire."""
    metric = data.draw(metrics(datatype))
    if metric.alias is not None:
        metric.alias = None if data.draw(st.booleans()) else metric.alias
    payload = Payload(metrics=[metric], timestamp=TS, seq=0)
    assert_same(roundtrip(payload), payload)


@SETTINGS
@given(st.lists(metrics(), min_size=1, max_size=6))
def test_mixed_payloads_round_trip(ms: list[Metric]) -> None:
    payload = Payload(metrics=ms, timestamp=TS, seq=7, uuid="x-uuid", body=b"\x00\x01")
    assert_same(roundtrip(payload, MessageType.NBIRTH), payload)  # NBIRTH: definitions allowed


@pytest.mark.parametrize("datatype", METRIC_DATATYPES, ids=lambda d: d.name)
@SETTINGS
@given(data=st.data())
def test_alias_only_data_round_trips_through_the_catalog(datatype: DataType, data: st.DataObject) -> None:
    """tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req:
    NDATA carries the alias alone and no datatype; the catalog restores both from the NBIRTH."""
    value = data.draw(values(datatype))
    if isinstance(value, Template) and value.is_definition:  # only NBIRTH may carry definitions
        value = dataclasses.replace(value, is_definition=False, template_ref="Def")
    birth = Payload([Metric("Line/Tag", value, datatype, alias=42, timestamp=TS)], TS, 0)
    catalog = EdgeNodeCatalog()
    catalog.decode(MessageType.NBIRTH, encode_payload(birth, MessageType.NBIRTH))
    ndata = Payload([Metric("Line/Tag", value, datatype, alias=42, timestamp=TS + 1)], TS + 1, 1)
    wire = encode_payload(ndata, MessageType.NDATA)
    raw = pb.Payload.FromString(wire).metrics[0]
    assert raw.HasField("alias") and raw.alias == 42
    assert not raw.HasField("name")
    assert not raw.HasField("datatype")
    assert_same(catalog.decode(MessageType.NDATA, wire), ndata)


# ---------------------------------------------------------------------------- integer wire form


@pytest.mark.parametrize(("datatype", "value", "wire"), [
    (DataType.Int8, -1, 0xFFFFFFFF),
    (DataType.Int8, -128, 0xFFFFFF80),
    (DataType.Int8, 127, 127),
    (DataType.Int16, -1, 0xFFFFFFFF),
    (DataType.Int16, -32768, 0xFFFF8000),
    (DataType.Int32, -1, 0xFFFFFFFF),
    (DataType.Int32, -(2**31), 0x80000000),
    (DataType.UInt8, 255, 255),
    (DataType.UInt16, 65535, 65535),
    (DataType.UInt32, 2**32 - 1, 2**32 - 1),
])
def test_small_ints_are_sign_extended_to_32_bits_like_tahu_java(datatype: DataType, value: int, wire: int) -> None:
    """Spec DataType table: Int8/16/32 in int_value as 32-bit two's complement (Tahu Java, Ignition)."""
    raw = build_payload(Payload([Metric("m", value, datatype, timestamp=TS)], TS, 0), MessageType.NBIRTH)
    assert raw.metrics[0].WhichOneof("value") == "int_value"
    assert raw.metrics[0].int_value == wire
    assert roundtrip(Payload([Metric("m", value, datatype, timestamp=TS)], TS, 0)).metrics[0].value == value


@pytest.mark.parametrize(("datatype", "value"), [(DataType.Int64, -1), (DataType.Int64, -(2**63)),
                                                  (DataType.UInt64, 2**64 - 1), (DataType.DateTime, TS)])
def test_64_bit_types_use_long_value(datatype: DataType, value: int) -> None:
    raw = build_payload(Payload([Metric("m", value, datatype, timestamp=TS)], TS, 0), MessageType.NBIRTH)
    assert raw.metrics[0].WhichOneof("value") == "long_value"
    assert raw.metrics[0].long_value == value % 2**64


@pytest.mark.parametrize(("datatype", "wire", "value"), [
    (DataType.Int8, 255, -1), (DataType.Int8, 128, -128), (DataType.Int16, 0xFFFF, -1),
    (DataType.Int8, 0xFFFFFFFF, -1), (DataType.Int16, 0xFFFF8000, -32768),
])
def test_tahu_python_n_bit_encoding_is_accepted(datatype: DataType, wire: int, value: int) -> None:
    """Tahu Python writes Int8 -1 as 255; a robust decoder masks and sign-extends."""
    raw = pb.Payload(timestamp=TS, seq=0)
    raw.metrics.add(name="m", datatype=datatype, timestamp=TS, int_value=wire)
    assert decode_payload(raw.SerializeToString(), MessageType.NBIRTH).metrics[0].value == value


def test_uint32_in_long_value_from_tahu_java_is_accepted() -> None:
    """Tahu Java (and JS) put UInt32 in long_value; the spec says int_value."""
    raw = pb.Payload(timestamp=TS, seq=0)
    raw.metrics.add(name="m", datatype=DataType.UInt32, timestamp=TS, long_value=4_000_000_000)
    assert decode_payload(raw.SerializeToString(), MessageType.NBIRTH).metrics[0].value == 4_000_000_000


# ------------------------------------------------------------------------------------- floats


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-3.4e38, max_value=3.4e38))
def test_float_has_float32_precision(x: float) -> None:
    decoded = roundtrip(Payload([Metric("f", x, DataType.Float, timestamp=TS)], TS, 0)).metrics[0].value
    assert decoded == f32(x)


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308])
def test_double_special_values(x: float) -> None:
    decoded = roundtrip(Payload([Metric("d", x, DataType.Double, timestamp=TS)], TS, 0)).metrics[0].value
    both_nan = math.isnan(decoded) and math.isnan(x)
    assert both_nan or (decoded == x and math.copysign(1, decoded) == math.copysign(1, x))


def test_float_nan_and_overflow() -> None:
    decoded = roundtrip(Payload([Metric("f", math.nan, DataType.Float, timestamp=TS)], TS, 0))
    assert math.isnan(decoded.metrics[0].value)
    with pytest.raises(EncodeError, match="'f'.*32-bit"):
        encode_payload(Payload([Metric("f", 1e39, DataType.Float, timestamp=TS)], TS, 0), MessageType.NBIRTH)


# --------------------------------------------------------------------------- strings and bytes


@pytest.mark.parametrize("s", ["", "Grüße 温度 🌡️", "a\x00b", "\u202e"])
def test_unicode_strings(s: str) -> None:
    for datatype in (DataType.String, DataType.Text):
        assert roundtrip(Payload([Metric("s", s, datatype, timestamp=TS)], TS, 0)).metrics[0].value == s


def test_file_carries_metadata_file_name() -> None:
    """Spec DataType table: File is bytes_value plus metadata.file_name."""
    meta = MetaData(file_name="recipe.csv", file_type="csv", size=3, md5="abc", is_multi_part=False, seq=0)
    payload = Payload([Metric("f", b"a,b", DataType.File, timestamp=TS, metadata=meta)], TS, 0)
    raw = build_payload(payload, MessageType.NBIRTH).metrics[0]
    assert raw.metadata.file_name == "recipe.csv" and raw.bytes_value == b"a,b"
    assert roundtrip(payload).metrics[0] == payload.metrics[0]


# --------------------------------------------------------------------------------- structures


def test_dataset_with_all_basic_columns_and_null_cells() -> None:
    """tck-id-payloads-dataset-types-value, tck-id-payloads-dataset-column-num-headers,
    tck-id-payloads-template-dataset-value: every basic column type, a null cell is an empty value."""
    types = [DataType(c) for c in range(1, 15)]
    row = [-1, -2, -3, -4, 5, 6, 7, 8, 1.5, 2.5, True, "s", TS, "t"]
    ds = DataSet(columns=[t.name for t in types], types=types, rows=[row, [None] * 14])
    payload = Payload([Metric("ds", ds, DataType.DataSet, timestamp=TS)], TS, 0)
    raw = build_payload(payload, MessageType.NBIRTH).metrics[0].dataset_value
    assert raw.num_of_columns == 14 and list(raw.types) == list(range(1, 15))
    assert raw.rows[1].elements[0].WhichOneof("value") is None
    assert roundtrip(payload).metrics[0].value == ds


def test_template_definition_and_nested_instance_with_parameters() -> None:
    """tck-id-payloads-template-definition-is-definition, tck-id-payloads-template-definition-ref,
    tck-id-payloads-template-instance-ref, tck-id-payloads-template-is-definition."""
    inner_def = Template(metrics=[Metric("speed", 0.0, DataType.Double)], is_definition=True)
    definition = Template(
        version="2.1", is_definition=True,
        metrics=[Metric("count", 0, DataType.Int32),
                 Metric("motor", Template(metrics=[Metric("speed", 0.0, DataType.Double)], template_ref="Motor"),
                        DataType.Template)],
        parameters=[Parameter("line", DataType.String, "L1"), Parameter("limit", DataType.Int16, -5),
                    Parameter("unset", DataType.Float, None)],
    )
    instance = Template(template_ref="Cell", metrics=[Metric("count", -7, DataType.Int32)],
                        parameters=[Parameter("line", DataType.String, "L2")])
    payload = Payload([Metric("_types_/Motor", inner_def, DataType.Template, timestamp=TS),
                       Metric("_types_/Cell", definition, DataType.Template, timestamp=TS),
                       Metric("Cell1", instance, DataType.Template, timestamp=TS)], TS, 0)
    raw = build_payload(payload, MessageType.NBIRTH)
    assert raw.metrics[1].template_value.HasField("is_definition")
    assert raw.metrics[2].template_value.HasField("is_definition")  # false, but present
    assert not raw.metrics[1].template_value.HasField("template_ref")
    assert roundtrip(payload).metrics == payload.metrics


def test_template_rules_are_enforced_on_encode() -> None:
    """tck-id-payloads-template-definition-nbirth-only, -definition-ref, -instance-ref,
    tck-id-payloads-template-parameter-name-required."""
    definition = Template(is_definition=True)
    with pytest.raises(EncodeError, match="nbirth-only"):
        encode_payload(Payload([Metric("T", definition, DataType.Template, timestamp=TS)], TS, 1),
                       MessageType.DBIRTH)
    for bad, rule in ((Template(is_definition=True, template_ref="X"), "definition-ref"),
                      (Template(is_definition=False), "instance-ref"),
                      (Template(template_ref="X", parameters=[Parameter("", DataType.Int32, 1)]), "name-required")):
        with pytest.raises(EncodeError, match=rule):
            encode_payload(Payload([Metric("T", bad, DataType.Template, timestamp=TS)], TS, 0), MessageType.NBIRTH)


def test_property_sets_nested_lists_and_quality() -> None:
    """tck-id-payloads-propertyset-quality-value-type, -quality-value-value,
    tck-id-payloads-metric-propertyvalue-type-value, tck-id-payloads-propertyset-keys-array-size."""
    props = {
        "Quality": PropertyValue(DataType.Int32, 500),
        "engUnit": PropertyValue(DataType.String, "°C"),
        "limits": PropertyValue(DataType.PropertySet, {"hi": PropertyValue(DataType.Double, 90.5),
                                                       "lo": PropertyValue(DataType.Double, None, True)}),
        "history": PropertyValue(DataType.PropertySetList, [{"a": PropertyValue(DataType.Int8, -3)}, {}]),
        "empty": PropertyValue(DataType.PropertySetList, []),
    }
    payload = Payload([Metric("t", 21.5, DataType.Double, timestamp=TS, properties=props)], TS, 0)
    raw = build_payload(payload, MessageType.NBIRTH).metrics[0].properties
    assert list(raw.keys) == list(props) and len(raw.values) == len(raw.keys)
    assert raw.values[0].type == DataType.Int32 and raw.values[0].int_value == 500
    decoded = roundtrip(payload).metrics[0]
    assert decoded.properties == props
    assert decoded.quality == 500


@pytest.mark.parametrize(("prop", "rule"), [
    (PropertyValue(DataType.Int64, 192), "quality-value-type"),
    (PropertyValue(DataType.Int32, 100), "quality-value-value"),
])
def test_bad_quality_is_refused(prop: PropertyValue, rule: str) -> None:
    with pytest.raises(EncodeError, match=rule):
        encode_payload(Payload([Metric("t", 1.0, DataType.Double, timestamp=TS, properties={"Quality": prop})],
                               TS, 0), MessageType.NBIRTH)


# ----------------------------------------------------------------------------- flags and seq


def test_metric_flags_and_metadata() -> None:
    m = Metric("h", 3, DataType.UInt16, alias=9, timestamp=TS - 5, is_historical=True, is_transient=True,
               metadata=MetaData(description="buffered", content_type="text/plain"))
    raw = build_payload(Payload([m], TS, 3), MessageType.DBIRTH).metrics[0]
    assert raw.is_historical and raw.is_transient and not raw.HasField("is_null")
    assert roundtrip(Payload([m], TS, 3), MessageType.DBIRTH).metrics[0] == m


def test_null_metric_has_is_null_and_no_value() -> None:
    """tck-id-topics-nbirth-metrics: a birth metric has a value or is_null."""
    raw = build_payload(Payload([Metric("n", None, DataType.Int32, timestamp=TS)], TS, 0), MessageType.NBIRTH)
    assert raw.metrics[0].is_null and raw.metrics[0].WhichOneof("value") is None
    decoded = roundtrip(Payload([Metric("n", None, DataType.Int32, timestamp=TS)], TS, 0)).metrics[0]
    assert decoded.is_null and decoded.value is None and decoded.datatype is DataType.Int32


def test_birth_carries_name_alias_and_datatype() -> None:
    """tck-id-payloads-alias-birth-requirement, tck-id-payloads-metric-datatype-req."""
    raw = build_payload(Payload([Metric("a/b", 1.0, DataType.Double, alias=0, timestamp=TS)], TS, 0),
                        MessageType.NBIRTH).metrics[0]
    assert raw.name == "a/b" and raw.HasField("alias") and raw.alias == 0 and raw.datatype == DataType.Double


def test_data_without_alias_carries_the_name() -> None:
    """tck-id-payloads-name-requirement: no alias, so the name."""
    raw = build_payload(Payload([Metric("a/b", 1.0, DataType.Double, timestamp=TS)], TS, 1),
                        MessageType.DDATA).metrics[0]
    assert raw.name == "a/b" and not raw.HasField("alias") and not raw.HasField("datatype")


def test_cmd_carries_alias_only() -> None:
    """tck-id-payloads-alias-data-cmd-requirement applies to host commands too."""
    raw = build_payload(Payload([Metric("a", True, DataType.Boolean, alias=5)], TS), MessageType.DCMD).metrics[0]
    assert raw.alias == 5 and not raw.HasField("name") and not raw.HasField("datatype")


@pytest.mark.parametrize("message_type", [MessageType.NBIRTH, MessageType.DBIRTH, MessageType.NDATA,
                                          MessageType.DDATA, MessageType.DDEATH])
def test_seq_zero_is_present(message_type: MessageType) -> None:
    """tck-id-payloads-sequence-num-always-included, tck-id-topics-nbirth-seq-num: seq 0 is on the wire."""
    raw = pb.Payload.FromString(encode_payload(Payload([], TS, 0), message_type))
    assert raw.HasField("seq") and raw.seq == 0
    with pytest.raises(EncodeError, match="sequence-num-always-included"):
        encode_payload(Payload([], TS, None), message_type)
    with pytest.raises(EncodeError, match="0..255"):
        encode_payload(Payload([], TS, 256), message_type)


@pytest.mark.parametrize(("message_type", "rule"), [(MessageType.NDEATH, "tck-id-topics-ndeath-seq"),
                                                    (MessageType.NCMD, "tck-id-payloads-ncmd-seq"),
                                                    (MessageType.DCMD, "tck-id-payloads-dcmd-seq")])
def test_seq_absent_on_ndeath_and_commands(message_type: MessageType, rule: str) -> None:
    """tck-id-topics-ndeath-seq, tck-id-payloads-ncmd-seq, tck-id-payloads-dcmd-seq."""
    raw = pb.Payload.FromString(encode_payload(Payload([], TS), message_type))
    assert not raw.HasField("seq")
    with pytest.raises(EncodeError, match="must not carry seq"):
        encode_payload(Payload([], TS, 0), message_type)


def test_timestamps_are_ms_and_required() -> None:
    """tck-id-payloads-timestamp-in-UTC, tck-id-payloads-name-birth-data-requirement."""
    from uns.sparkplug.model import now_ms

    now = now_ms()
    assert 1_600_000_000_000 < now < 4_000_000_000_000  # ms, not s or ns
    payload = Payload([Metric("m", 1, DataType.Int64, timestamp=now)], now, 0)
    assert roundtrip(payload).timestamp == now and roundtrip(payload).metrics[0].timestamp == now
    with pytest.raises(EncodeError, match="'m' needs a timestamp"):
        encode_payload(Payload([Metric("m", 1, DataType.Int64)], now, 0), MessageType.NBIRTH)
    with pytest.raises(EncodeError, match="payload timestamp"):
        encode_payload(Payload([], None, 0), MessageType.NDATA)
    # NDEATH: payload timestamp optional (MAY); commands: metric timestamps optional
    # (tck-id-payloads-name-cmd-requirement)
    encode_payload(Payload([Metric("bdSeq", 0, DataType.Int64)]), MessageType.NDEATH)
    encode_payload(Payload([Metric("x", 1, DataType.Int64, alias=1)], now), MessageType.NCMD)


@pytest.mark.parametrize(("value", "datatype"), [(300, DataType.Int8), (-1, DataType.UInt8), ("1", DataType.Int32),
                                                 (True, DataType.Int32), (1, DataType.Boolean), (b"x", DataType.String),
                                                 ("x", DataType.Bytes), ([1, 2**8], DataType.UInt8Array),
                                                 (-1, DataType.DateTime), (1.0, DataType.Int64)])
def test_values_that_do_not_fit_raise_encode_error_naming_the_metric(value: object, datatype: DataType) -> None:
    with pytest.raises(EncodeError, match="'Line/Bad'"):
        encode_payload(Payload([Metric("Line/Bad", value, datatype, timestamp=TS)], TS, 0), MessageType.NBIRTH)


def test_datatype_may_be_given_as_code_or_name() -> None:
    for dt in (3, "Int32"):
        decoded = roundtrip(Payload([Metric("m", -5, dt, timestamp=TS)], TS, 0))  # type: ignore[arg-type]
        assert decoded.metrics[0].datatype is DataType.Int32 and decoded.metrics[0].value == -5
    with pytest.raises(EncodeError, match="not a metric datatype"):
        encode_payload(Payload([Metric("m", None, DataType.PropertySet, timestamp=TS)], TS, 0), MessageType.NBIRTH)
