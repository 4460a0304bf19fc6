"""Sparkplug 3.0's Template and DataSet payload rules, each checked on both sides of the codec.

*Edge side*: every message our edge node sends is built by :func:`encode_payload`, so what it puts on
the wire is read back here with the generated protobuf classes (not with our decoder), and what it
refuses to build is asserted. *Host side*: every message the host reads goes through
:func:`decode_payload` and :mod:`uns.sparkplug.templates`, so a peer breaking a rule must get a
specific error that names the metric and the rule (the host counts it as a violation and asks for a
rebirth: tests/host/test_templates_host.py).

The rules checked in other tests (on the simulator's real types, through the edge session, the host
and Eclipse Tahu's codec) are cited there: tck-id-payloads-template-definition-nbirth-only,
-definition-members, -definition-nbirth, -instance-members, -instance-members-birth,
-instance-members-data, -template-version (tests/edge_node/test_templates.py,
tests/edge_node/test_session_templates.py, tests/host/test_templates_host.py) and
tck-id-topics-nbirth-templates (tests/edge_node/test_session_templates.py).
"""

from __future__ import annotations

import pytest

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import BASIC_TYPES, DataType
from uns.sparkplug.errors import (
    DataSetError,
    DataTypeMismatchError,
    EncodeError,
    MalformedPayloadError,
    UnknownDataTypeError,
)
from uns.sparkplug.model import DataSet, Metric, Parameter, Payload, Template
from uns.sparkplug.templates import TemplateInstanceError, check_instances
from uns.sparkplug.topic import MessageType

TS = 1_700_000_000_000
#: one value of every basic type (the types a DataSet column and a template parameter may have)
BASIC_VALUES = {DataType.Int8: -1, DataType.Int16: -2, DataType.Int32: -3, DataType.Int64: -4, DataType.UInt8: 5,
                DataType.UInt16: 6, DataType.UInt32: 7, DataType.UInt64: 2**64 - 1, DataType.Float: 1.5,
                DataType.Double: 2.25, DataType.Boolean: True, DataType.String: "s", DataType.DateTime: TS,
                DataType.Text: "t"}
#: the value fields a DataSetValue and a Template.Parameter may use
VALUE_FIELDS = {"int_value", "long_value", "float_value", "double_value", "boolean_value", "string_value"}


def _wire(*metrics: Metric, kind: MessageType = MessageType.NBIRTH) -> pb.Payload:
    """What our encoder sends, read back with the generated protobuf code."""
    return pb.Payload.FromString(encode_payload(Payload(list(metrics), TS, 0), kind))


def _birth(raw: pb.Payload) -> bytes:
    return raw.SerializeToString()


# ------------------------------------------------------------------------------------------- DataSet


def test_a_dataset_on_the_wire() -> None:
    """tck-id-payloads-dataset-column-size, tck-id-payloads-dataset-column-num-headers,
    tck-id-payloads-dataset-types-def, tck-id-payloads-dataset-types-num, tck-id-payloads-dataset-types-type,
    tck-id-payloads-dataset-types-value, tck-id-payloads-dataset-parameter-type-req,
    tck-id-payloads-template-dataset-value: a column of every basic type, a null cell."""
    types = list(BASIC_VALUES)
    values = list(BASIC_VALUES.values())
    table = DataSet([t.name for t in types], types, [values, [None, *values[1:]]])
    (metric,) = _wire(Metric("Table", table, DataType.DataSet, timestamp=TS)).metrics
    raw = metric.dataset_value
    assert raw.HasField("num_of_columns") and raw.num_of_columns == len(types) == len(raw.columns)
    assert len(raw.types) == len(raw.columns)  # the types list is always there, one per column
    assert list(raw.types) == [int(t) for t in types]  # uint32 codes of basic types, in column order
    assert all(isinstance(code, int) and 0 < code < 2**32 and DataType(code) in BASIC_TYPES for code in raw.types)
    cells = [[element.WhichOneof("value") for element in row.elements] for row in raw.rows]
    assert all(len(row) == len(types) for row in cells)
    assert {field for row in cells for field in row if field is not None} <= VALUE_FIELDS
    assert cells[1][0] is None  # a null cell is an element without a value
    assert decode_payload(_birth(_wire(Metric("Table", table, DataType.DataSet, timestamp=TS))),
                          MessageType.NBIRTH).metrics[0].value == table


@pytest.mark.parametrize(("table", "match"), [
    (DataSet(["a", "b"], [DataType.Int32]), "2 columns but 1 types"),
    (DataSet(["a"], [DataType.Int32], [[1, 2]]), "row 0 has 2 values for 1 columns"),
    (DataSet(["a"], [DataType.DataSet]), "tck-id-payloads-dataset-types-value"),
    (DataSet(["a"], [DataType.Int32Array]), "tck-id-payloads-dataset-types-value"),
])
def test_the_edge_never_builds_a_dataset_that_breaks_a_rule(table: DataSet, match: str) -> None:
    """tck-id-payloads-dataset-column-num-headers, tck-id-payloads-dataset-types-num,
    tck-id-payloads-dataset-types-value: our bug, refused before it reaches the wire."""
    with pytest.raises(EncodeError, match=match):
        encode_payload(Payload([Metric("T", table, DataType.DataSet, timestamp=TS)], TS, 0), MessageType.NBIRTH)


def _raw_dataset(columns: list[bytes | str], types: list[int], num: int | None = None) -> bytes:
    raw = pb.Payload(timestamp=TS, seq=0)
    metric = raw.metrics.add(name="Line/Table", datatype=DataType.DataSet, timestamp=TS)
    table = metric.dataset_value
    table.columns.extend(c if isinstance(c, str) else "\x00" for c in columns)
    table.types.extend(types)
    if num is not None:
        table.num_of_columns = num
    data = raw.SerializeToString()
    for column in columns:  # invalid UTF-8 cannot be set through the API: patch the bytes
        if isinstance(column, bytes):
            data = data.replace(b"\x12\x01\x00", b"\x12\x01" + column, 1)
    return data


@pytest.mark.parametrize(("data", "error", "match"), [
    (_raw_dataset(["a", "b"], []), DataSetError, "tck-id-payloads-dataset-parameter-type-req"),
    (_raw_dataset(["a", "b"], [DataType.Int32]), DataSetError, "tck-id-payloads-dataset-types-num"),
    (_raw_dataset(["a"], [DataType.Int32, DataType.Int32]), DataSetError, "tck-id-payloads-dataset-column-num-headers"),
    (_raw_dataset(["a"], [DataType.Int32], num=2), DataSetError, "tck-id-payloads-dataset-column-size"),
    (_raw_dataset(["a"], [77]), UnknownDataTypeError, "datatype 77 is not in the Sparkplug 3.0 DataType enum"),
    (_raw_dataset(["a"], [DataType.Template]), UnknownDataTypeError, "Template .19. is not allowed in a DataSet"),
    (_raw_dataset([b"\xff"], [DataType.Int32]), MalformedPayloadError, "DataSet column name is not valid UTF-8"),
], ids=["no types", "fewer types", "more types", "num_of_columns", "unknown type", "non-basic type", "column name"])
def test_a_dataset_a_peer_gets_wrong_is_refused_by_name(data: bytes, error: type[Exception], match: str) -> None:
    """tck-id-payloads-dataset-parameter-type-req, tck-id-payloads-dataset-types-num,
    tck-id-payloads-dataset-column-num-headers, tck-id-payloads-dataset-column-size,
    tck-id-payloads-dataset-types-def, tck-id-payloads-dataset-types-value: the host's decoder names
    the metric and the rule (tests/host/test_templates_host.py: a counted ``dataset`` violation)."""
    with pytest.raises(error, match=match) as info:
        decode_payload(data, MessageType.NBIRTH)
    assert "'Line/Table'" in str(info.value)


# ------------------------------------------------------------------------------------------ Templates

PARAMETERS = [Parameter(f"p{t.name}", t, v) for t, v in BASIC_VALUES.items()]
DEFINITION = Template([Metric("Speed", None, DataType.Double, is_null=True),
                       Metric("Inner", Template([Metric("On", None, DataType.Boolean, is_null=True)],
                                                version="1", template_ref="Inner"), DataType.Template)],
                      parameters=PARAMETERS, version="v7", is_definition=True)
INNER = Template([Metric("On", None, DataType.Boolean, is_null=True)], version="1", is_definition=True)
INSTANCE = Template([Metric("Speed", 1.5, DataType.Double),
                     Metric("Inner", Template([Metric("On", True, DataType.Boolean)], version="1",
                                              template_ref="Inner"), DataType.Template)],
                    parameters=[Parameter("pString", DataType.String, "line 1")], version="v7", template_ref="Motor")


def test_templates_on_the_wire() -> None:
    """tck-id-payloads-template-is-definition, tck-id-payloads-template-is-definition-definition,
    tck-id-payloads-template-is-definition-instance, tck-id-payloads-template-definition-is-definition,
    tck-id-payloads-template-instance-is-definition, tck-id-payloads-template-definition-ref,
    tck-id-payloads-template-ref-definition, tck-id-payloads-template-instance-ref,
    tck-id-payloads-template-ref-instance, tck-id-payloads-template-version,
    tck-id-payloads-template-parameter-name-required, tck-id-payloads-template-parameter-name-type,
    tck-id-payloads-template-parameter-value-type, tck-id-payloads-template-parameter-type-value,
    tck-id-payloads-template-parameter-type-req, tck-id-payloads-template-parameter-value."""
    raw = _wire(Metric("_types_/Inner", INNER, DataType.Template, timestamp=TS),
                Metric("_types_/Motor", DEFINITION, DataType.Template, timestamp=TS),
                Metric("Motor1", INSTANCE, DataType.Template, alias=1, timestamp=TS))
    inner_def, definition, instance = (m.template_value for m in raw.metrics)
    nested_ref, nested = definition.metrics[1].template_value, instance.metrics[1].template_value
    # is_definition is on the wire for every template, true for definitions and false for instances
    for template, expected in ((inner_def, True), (definition, True), (instance, False), (nested_ref, False),
                               (nested, False)):
        assert template.HasField("is_definition") and template.is_definition is expected
    # definitions have no template_ref; instances name their definition
    assert not inner_def.HasField("template_ref") and not definition.HasField("template_ref")
    assert (instance.template_ref, nested.template_ref, nested_ref.template_ref) == ("Motor", "Inner", "Inner")
    assert (definition.version, instance.version) == ("v7", "v7")
    # every parameter: a name, a basic uint32 type code present in the birth, a value in an allowed field
    params = list(definition.parameters) + list(instance.parameters)
    assert [(p.name, p.type) for p in definition.parameters] == [(f"p{t.name}", int(t)) for t in BASIC_VALUES]
    for param in params:
        assert param.HasField("name") and isinstance(param.name, str) and param.name
        assert param.HasField("type") and DataType(param.type) in BASIC_TYPES
        assert param.WhichOneof("value") in VALUE_FIELDS
    # and back: our decoder reads what it wrote
    back = decode_payload(raw.SerializeToString(), MessageType.NBIRTH)
    assert [m.value for m in back.metrics] == [INNER, DEFINITION, INSTANCE]


@pytest.mark.parametrize(("metric", "kind", "match"), [
    (Metric("_types_/Motor", DEFINITION, DataType.Template, timestamp=TS), MessageType.DBIRTH,
     "tck-id-payloads-template-definition-nbirth-only"),
    (Metric("_types_/Motor", DEFINITION, DataType.Template, alias=1, timestamp=TS), MessageType.DDATA,
     "tck-id-payloads-template-definition-nbirth-only"),
    (Metric("_types_/Motor", Template(is_definition=True, template_ref="X"), DataType.Template, timestamp=TS),
     MessageType.NBIRTH, "tck-id-payloads-template-definition-ref"),
    (Metric("Motor1", Template([Metric("Speed", 1.0, DataType.Double)]), DataType.Template, timestamp=TS),
     MessageType.NBIRTH, "tck-id-payloads-template-instance-ref"),
    (Metric("Motor1", Template(template_ref="Motor", parameters=[Parameter("", DataType.Int32, 1)]),
            DataType.Template, timestamp=TS), MessageType.NBIRTH, "tck-id-payloads-template-parameter-name-required"),
    (Metric("Motor1", Template(template_ref="Motor", parameters=[Parameter("p", DataType.Template, None)]),
            DataType.Template, timestamp=TS), MessageType.NBIRTH, "tck-id-payloads-template-parameter-type-value"),
    (Metric("Motor1", Template(template_ref="Motor", parameters=[Parameter("p", DataType.Int32, "x")]),
            DataType.Template, timestamp=TS), MessageType.NBIRTH, "template parameter 'p': Int32 needs an int"),
])
def test_the_edge_never_builds_a_template_that_breaks_a_rule(metric: Metric, kind: MessageType, match: str) -> None:
    """tck-id-payloads-template-definition-nbirth-only, tck-id-payloads-template-definition-ref,
    tck-id-payloads-template-instance-ref, tck-id-payloads-template-parameter-name-required,
    tck-id-payloads-template-parameter-type-value, tck-id-payloads-template-parameter-value."""
    with pytest.raises(EncodeError, match=match):
        encode_payload(Payload([metric], TS, 0), kind)


def _raw_template(**fields: object) -> pb.Payload:
    raw = pb.Payload(timestamp=TS, seq=0)
    metric = raw.metrics.add(name="Line/Motor", datatype=DataType.Template, timestamp=TS)
    template = metric.template_value
    template.is_definition = False
    template.template_ref = str(fields.get("template_ref", "Motor"))
    template.version = str(fields.get("version", "v7"))
    if "parameter_name" in fields or "parameter_type" in fields:
        param = template.parameters.add(name=str(fields.get("parameter_name", "p")))
        if fields.get("parameter_type") is not None:
            param.type = int(fields["parameter_type"])  # type: ignore[call-overload]
        param.int_value = 1
    return raw


def _broken_utf8(raw: pb.Payload, text: str) -> bytes:
    """``raw`` with the string ``text`` (a single character) replaced by an invalid UTF-8 byte."""
    data = raw.SerializeToString()
    assert data.count(b"\x01" + text.encode()) == 1
    return data.replace(b"\x01" + text.encode(), b"\x01\xff")


@pytest.mark.parametrize(("data", "error", "match"), [
    (_broken_utf8(_raw_template(template_ref="R"), "R"), MalformedPayloadError,
     r"template_ref \(tck-id-payloads-template-ref-instance\) is not valid UTF-8"),
    (_broken_utf8(_raw_template(version="V"), "V"), MalformedPayloadError,
     r"template version \(tck-id-payloads-template-version\) is not valid UTF-8"),
    (_broken_utf8(_raw_template(parameter_name="N", parameter_type=DataType.Int32), "N"), MalformedPayloadError,
     r"parameter name \(tck-id-payloads-template-parameter-name-type\) is not valid UTF-8"),
    (_raw_template(parameter_name="", parameter_type=DataType.Int32).SerializeToString(), MalformedPayloadError,
     "tck-id-payloads-template-parameter-name-required"),
    (_raw_template(parameter_name="p", parameter_type=None).SerializeToString(), MalformedPayloadError,
     "tck-id-payloads-template-parameter-type-req"),
    (_raw_template(parameter_name="p", parameter_type=DataType.Template).SerializeToString(), UnknownDataTypeError,
     "not allowed in a template parameter"),
    (_raw_template(parameter_name="p", parameter_type=DataType.String).SerializeToString(), DataTypeMismatchError,
     "is String but carries int_value"),
], ids=["template_ref", "version", "parameter name", "no parameter name", "no parameter type",
        "parameter type", "parameter value field"])
def test_a_template_a_peer_gets_wrong_is_refused_by_name(data: bytes, error: type[Exception], match: str) -> None:
    """tck-id-payloads-template-ref-instance, tck-id-payloads-template-version,
    tck-id-payloads-template-parameter-name-type, tck-id-payloads-template-parameter-name-required,
    tck-id-payloads-template-parameter-type-req, tck-id-payloads-template-parameter-type-value,
    tck-id-payloads-template-parameter-value-type, tck-id-payloads-template-parameter-value: never a
    crash and never text that is not text further in (a ``bytes`` template_ref used to reach the host's
    definition lookup)."""
    with pytest.raises(error, match=match) as info:
        decode_payload(data, MessageType.NBIRTH)
    assert "'Line/Motor'" in str(info.value)


def test_instance_parameters_against_the_definition() -> None:
    """tck-id-payloads-template-definition-parameters (an instance sets only parameters its definition
    lists), tck-id-payloads-template-instance-parameters (it may set them: MAY),
    tck-id-payloads-template-definition-parameters-default (the definition's values are defaults, so an
    instance without parameters is complete: MAY)."""
    definitions = {"_types_/Inner": INNER, "_types_/Motor": DEFINITION}
    check_instances([Metric("Motor1", INSTANCE, DataType.Template)], definitions, birth=True)  # sets one
    bare = Template(INSTANCE.metrics, version="v7", template_ref="Motor")
    check_instances([Metric("Motor1", bare, DataType.Template)], definitions, birth=True)  # the defaults
    stray = Template(INSTANCE.metrics, parameters=[Parameter("colour", DataType.String, "red")], version="v7",
                     template_ref="Motor")
    with pytest.raises(TemplateInstanceError,
                       match="'Motor1': parameter 'colour' is not in definition 'Motor'.*definition-parameters"):
        check_instances([Metric("Motor1", stray, DataType.Template)], definitions, birth=False)
