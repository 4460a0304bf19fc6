"""Interop with Eclipse Tahu's JavaScript codec (npm ``sparkplug-payload``, pinned in
tests/interop/package.json), driven through tests/interop/tahu_codec.js.

Both directions for every datatype Tahu JS 1.0.3 supports: our encode -> Tahu decode, and Tahu
encode -> our decode. Tahu JS deviations found here, and how we handle them:

1. **UInt32** (7): Tahu JS writes it in ``long_value`` (like Tahu Java) and *reads only*
   ``long_value``. We decode both fields; we encode ``int_value`` as the spec says, which Tahu JS
   reads as ``null``. Kept spec-conformant; asserted below so a Tahu fix is noticed.
2. **Arrays** (22-34): not in Tahu JS 1.0.3 at all (its type table stops at 21): it encodes an
   array metric with datatype 0 and no value, and decodes ours as ``value: null``. We reject a
   birth metric with datatype 0 (UnknownDataTypeError), as the spec requires.
3. **DataSet**: Tahu JS decodes only columns of type UInt32 (from long_value), Int64, Float,
   Double, Boolean and String; Int8/16/32, UInt8/16/64, DateTime, Text, UUID columns and null
   cells make it throw "Invalid DataSetValue". Int64 cells come back unsigned. We decode all of
   Tahu's encodings, including null cells (an empty DataSetValue).
4. **Template parameters**: Tahu JS decodes only UInt32/Int64/Float/Double/Boolean/String
   parameters and throws on the other basic types; it encodes all of them.
5. **Datatype in DATA**: Tahu JS always writes ``datatype`` (it cannot omit it); we accept it in
   NDATA when it agrees with the birth (tck-id-payloads-metric-datatype-not-req is a SHOULD).
6. Int8/Int16/Int32: Tahu JS reads ``int_value`` as a signed 32-bit number, so our sign-extended
   negatives (tck: Tahu Java style) decode correctly; its encoding is also sign-extended.
7. **Presence**: Tahu JS decodes optional non-oneof fields (MetaData, Template.template_ref)
   through protobufjs prototype defaults, so a field that is absent on the wire shows up as
   ``""``/``0``/``false``; proto2 presence is lost. We keep presence (None when absent).
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.errors import UnknownDataTypeError
from uns.sparkplug.model import DataSet, MetaData, Metric, Parameter, Payload, PropertyValue, Template
from uns.sparkplug.topic import MessageType

from .strategies import f32

pytestmark = pytest.mark.node

INTEROP = Path(__file__).resolve().parents[1] / "interop"
TS = 1_700_000_000_000
NODE = shutil.which("node")


def tahu(op: str, payloads: list[Any]) -> list[Any]:
    if NODE is None:
        pytest.skip("node is not installed")
    if not (INTEROP / "node_modules" / "sparkplug-payload").is_dir():
        pytest.fail("run `npm install` in tests/interop (scripts/test does it)")
    result = subprocess.run([NODE, str(INTEROP / "tahu_codec.js")], input=json.dumps({"op": op, "payloads": payloads}),
                            capture_output=True, text=True, timeout=60, cwd=INTEROP)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["results"]


def L(value: int) -> dict[str, str]:  # noqa: N802 - a Long on the JS side
    return {"$long": str(value)}


def B(data: bytes) -> dict[str, str]:  # noqa: N802
    return {"$bytes": base64.b64encode(data).decode()}


def F(x: float) -> Any:  # noqa: N802
    return {"$float": "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")} if not math.isfinite(x) else x


# (datatype, our value, the value as Tahu JS holds it)
SCALARS: list[tuple[D, Any, Any]] = [
    (D.Int8, -128, -128), (D.Int8, -1, -1), (D.Int8, 127, 127),
    (D.Int16, -32768, -32768), (D.Int16, 32767, 32767),
    (D.Int32, -(2**31), -(2**31)), (D.Int32, 2**31 - 1, 2**31 - 1),
    (D.Int64, -(2**63), L(-(2**63))), (D.Int64, -5, L(-5)), (D.Int64, 2**63 - 1, L(2**63 - 1)),
    (D.UInt8, 255, 255), (D.UInt16, 65535, 65535),
    (D.UInt64, 2**64 - 1, L(2**64 - 1)), (D.UInt64, 0, L(0)),
    (D.Float, f32(0.1), f32(0.1)), (D.Float, -1.5, -1.5), (D.Float, math.inf, F(math.inf)),
    (D.Double, 0.1, 0.1), (D.Double, -math.inf, F(-math.inf)), (D.Double, math.nan, F(math.nan)),
    (D.Boolean, True, True), (D.Boolean, False, False),
    (D.String, "Grüße 温度 🌡️", "Grüße 温度 🌡️"), (D.String, "", ""),
    (D.Text, "long text", "long text"), (D.UUID, "0b6f1e3c-86b8-4d8e-9b53-2b5f0ac0ee11",
                                            "0b6f1e3c-86b8-4d8e-9b53-2b5f0ac0ee11"),
    (D.DateTime, TS, L(TS)),
    (D.Bytes, b"\x00\xff\x10", B(b"\x00\xff\x10")), (D.Bytes, b"", B(b"")),
]
IDS = [f"{dt.name}={ours!r}"[:40] for dt, ours, _ in SCALARS]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _nbirth(*metrics: Metric) -> str:
    return base64.b64encode(encode_payload(Payload(list(metrics), TS, 0), MessageType.NBIRTH)).decode()


def _tahu_payload(*metrics: dict[str, Any], seq: int = 0) -> dict[str, Any]:
    return {"timestamp": L(TS), "seq": seq, "metrics": list(metrics)}


def _ours(encoded: Any, message_type: MessageType = MessageType.NBIRTH) -> Payload:
    assert isinstance(encoded, str), encoded
    return decode_payload(base64.b64decode(encoded), message_type)


@pytest.fixture(scope="module")
def scalars_by_tahu() -> list[Any]:
    """One node run for all scalar cases: Tahu decodes our bytes."""
    return tahu("decode", [_nbirth(Metric("m", ours, dt, alias=7, timestamp=TS)) for dt, ours, _ in SCALARS])


@pytest.fixture(scope="module")
def scalars_from_tahu() -> list[Any]:
    """One node run for all scalar cases: Tahu encodes."""
    return tahu("encode", [_tahu_payload({"name": "m", "type": dt.name, "value": theirs, "alias": 7,
                                          "timestamp": L(TS)}) for dt, _, theirs in SCALARS])


@pytest.mark.parametrize("index", range(len(SCALARS)), ids=IDS)
def test_our_scalars_decoded_by_tahu(index: int, scalars_by_tahu: list[Any]) -> None:
    datatype, _ours_value, theirs = SCALARS[index]
    decoded = scalars_by_tahu[index]
    assert decoded["seq"] == L(0) and decoded["timestamp"] == L(TS)
    metric = decoded["metrics"][0]
    assert (metric["name"], metric["type"], metric["alias"], metric["timestamp"]) == ("m", datatype.name, L(7), L(TS))
    if datatype is D.Float and isinstance(theirs, float):
        assert metric["value"] == pytest.approx(theirs, rel=1e-7)  # protobufjs widens float32
    else:
        assert metric["value"] == theirs


@pytest.mark.parametrize("index", range(len(SCALARS)), ids=IDS)
def test_tahu_scalars_decoded_by_us(index: int, scalars_from_tahu: list[Any]) -> None:
    datatype, ours, _theirs = SCALARS[index]
    payload = _ours(scalars_from_tahu[index])
    assert payload.seq == 0 and payload.timestamp == TS
    metric = payload.metrics[0]
    assert (metric.name, metric.datatype, metric.alias, metric.timestamp) == ("m", datatype, 7, TS)
    assert _same(metric.value, ours)


def test_uint32_deviation() -> None:
    """Deviation 1: Tahu JS puts UInt32 in long_value and reads only long_value."""
    (encoded,) = tahu("encode", [_tahu_payload({"name": "u", "type": "UInt32", "value": 4_000_000_000})])
    assert _ours(encoded).metrics[0].value == 4_000_000_000  # we accept long_value
    (decoded,) = tahu("decode", [_nbirth(Metric("u", 4_000_000_000, D.UInt32, timestamp=TS))])
    assert decoded["metrics"][0]["value"] is None  # Tahu JS ignores the spec's int_value


def test_arrays_are_unsupported_by_tahu_js() -> None:
    """Deviation 2: no array datatypes in Tahu JS 1.0.3."""
    (decoded,) = tahu("decode", [_nbirth(Metric("a", [1, -2], D.Int16Array, timestamp=TS))])
    assert decoded["metrics"][0]["value"] is None and "type" not in decoded["metrics"][0]
    (encoded,) = tahu("encode", [_tahu_payload({"name": "a", "type": "Int16Array", "value": [1, -2]})])
    with pytest.raises(UnknownDataTypeError, match="'a'"):
        _ours(encoded)


def test_dataset_both_ways() -> None:
    """Deviation 3: Tahu JS decodes only some column types and no null cells."""
    ours = DataSet(["i64", "f", "d", "b", "s"], [D.Int64, D.Float, D.Double, D.Boolean, D.String],
                   [[5, 1.5, 2.25, True, "x"], [7, -0.5, 1e300, False, ""]])
    (decoded,) = tahu("decode", [_nbirth(Metric("ds", ours, D.DataSet, timestamp=TS))])
    value = decoded["metrics"][0]["value"]
    assert value["columns"] == ours.columns and value["types"] == ["Int64", "Float", "Double", "Boolean", "String"]
    assert value["rows"] == [[L(5), 1.5, 2.25, True, "x"], [L(7), -0.5, 1e300, False, ""]]
    assert value["numOfColumns"] == L(5)

    types = ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float", "Double",
             "Boolean", "String", "DateTime", "Text"]
    row = [-1, -2, -3, L(-4), 5, 6, 7, L(2**64 - 1), 1.5, 2.5, True, "s", L(TS), "t"]
    tahu_ds = {"numOfColumns": len(types), "columns": types, "types": types, "rows": [row, [None] * len(types)]}
    (encoded,) = tahu("encode", [_tahu_payload({"name": "ds", "type": "DataSet", "value": tahu_ds})])
    got = _ours(encoded).metrics[0].value
    assert got.types == [D[t] for t in types]
    assert got.rows == [[-1, -2, -3, -4, 5, 6, 7, 2**64 - 1, 1.5, 2.5, True, "s", TS, "t"], [None] * len(types)]


def test_templates_both_ways() -> None:
    """Deviation 4 (parameter types); definition and nested instance with members and parameters."""
    definition = Template(version="1", is_definition=True,
                          metrics=[Metric("speed", 1.5, D.Double), Metric("count", -3, D.Int32),
                                   Metric("sub", Template(template_ref="Sub", metrics=[Metric("x", True, D.Boolean)]),
                                          D.Template)],
                          parameters=[Parameter("line", D.String, "L1"), Parameter("k", D.Double, 0.5),
                                      Parameter("n", D.Int64, -9), Parameter("on", D.Boolean, True)])
    (decoded,) = tahu("decode", [_nbirth(Metric("_types_/Cell", definition, D.Template, timestamp=TS))])
    value = decoded["metrics"][0]["value"]
    assert value["isDefinition"] is True and value["version"] == "1"
    assert value["templateRef"] == ""  # deviation 7: absent on the wire, Tahu shows the default
    assert [(m["name"], m["value"]) for m in value["metrics"][:2]] == [("speed", 1.5), ("count", -3)]
    assert value["metrics"][2]["value"]["templateRef"] == "Sub"
    assert value["metrics"][2]["value"]["metrics"][0]["value"] is True
    assert [(p["name"], p["type"], p["value"]) for p in value["parameters"]] == [
        ("line", "String", "L1"), ("k", "Double", 0.5), ("n", "Int64", L(-9)), ("on", "Boolean", True)]

    tahu_instance = {"templateRef": "_types_/Cell", "isDefinition": False, "version": "1",
                     "metrics": [{"name": "count", "type": "Int32", "value": -4},
                                 {"name": "sub", "type": "Template",
                                  "value": {"templateRef": "Sub", "isDefinition": False,
                                            "metrics": [{"name": "x", "type": "Boolean", "value": False}]}}],
                     "parameters": [{"name": "line", "type": "String", "value": "L2"},
                                    {"name": "i8", "type": "Int8", "value": -1}]}
    (encoded,) = tahu("encode", [_tahu_payload({"name": "Cell1", "type": "Template", "value": tahu_instance})])
    got = _ours(encoded).metrics[0].value
    assert got == Template(
        metrics=[Metric("count", -4, D.Int32),
                 Metric("sub", Template(template_ref="Sub", metrics=[Metric("x", False, D.Boolean)]), D.Template)],
        parameters=[Parameter("line", D.String, "L2"), Parameter("i8", D.Int8, -1)],
        version="1", template_ref="_types_/Cell", is_definition=False)


def test_properties_quality_flags_metadata_and_null_both_ways() -> None:
    props = {"Quality": PropertyValue(D.Int32, 500), "unit": PropertyValue(D.String, "°C"),
             "limits": PropertyValue(D.PropertySet, {"hi": PropertyValue(D.Int16, -2)}),
             "hist": PropertyValue(D.PropertySetList, [{"a": PropertyValue(D.Boolean, True)}])}
    ours = Metric("t", None, D.Double, alias=3, timestamp=TS, is_historical=True, is_transient=True, is_null=True,
                  metadata=MetaData(file_name="f.csv", description="d", size=3), properties=props)
    (decoded,) = tahu("decode", [_nbirth(ours)])
    metric = decoded["metrics"][0]
    assert metric["value"] is None and metric["isHistorical"] is True and metric["isTransient"] is True
    # deviation 7: the fields we did not send show up as protobuf defaults
    assert metric["metadata"] == {"fileName": "f.csv", "description": "d", "size": L(3), "contentType": "",
                                  "fileType": "", "md5": "", "isMultiPart": False, "seq": L(0)}
    assert metric["properties"] == {
        "Quality": {"type": "Int32", "value": 500}, "unit": {"type": "String", "value": "°C"},
        "limits": {"type": "PropertySet", "value": {"hi": {"type": "Int16", "value": -2}}},
        "hist": {"type": "PropertySetList", "value": [{"a": {"type": "Boolean", "value": True}}]}}

    tahu_metric = {"name": "t", "type": "Double", "value": None, "alias": 3, "timestamp": L(TS),
                   "isHistorical": True, "isTransient": True,
                   "metadata": {"fileName": "f.csv", "description": "d", "size": 3},
                   "properties": {k: {"type": v.type.name, "value": _tahu_prop(v.value)} for k, v in props.items()}}
    (encoded,) = tahu("encode", [_tahu_payload(tahu_metric)])
    got = _ours(encoded).metrics[0]
    assert got == ours
    assert got.quality == 500


def _tahu_prop(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: {"type": v.type.name, "value": _tahu_prop(v.value)} for k, v in value.items()}
    if isinstance(value, list):
        return [_tahu_prop(v) for v in value]
    return value


def test_tahu_ndata_with_alias_through_our_catalog() -> None:
    """Deviation 5: Tahu JS DATA carries the datatype; it agrees with the birth, so we accept it.
    tck-id-payloads-alias-data-cmd-requirement: alias only, no name."""
    birth, data = tahu("encode", [
        _tahu_payload({"name": "Temp", "type": "Int16", "value": -7, "alias": 11, "timestamp": L(TS)},
                      {"name": "bdSeq", "type": "Int64", "value": L(0), "timestamp": L(TS)}),
        _tahu_payload({"type": "Int16", "value": -8, "alias": 11, "timestamp": L(TS + 1)}, seq=1),
    ])
    catalog = EdgeNodeCatalog()
    catalog.decode(MessageType.NBIRTH, base64.b64decode(birth))
    metric = catalog.decode(MessageType.NDATA, base64.b64decode(data)).metrics[0]
    assert (metric.name, metric.alias, metric.datatype, metric.value) == ("Temp", 11, D.Int16, -8)


def test_our_ndata_is_alias_only_and_tahu_cannot_type_it() -> None:
    """Our NDATA omits the datatype (SHOULD, tck-id-payloads-metric-datatype-not-req); a codec without
    the birth, like Tahu JS, then has no type and no value: decoding DATA needs the birth."""
    wire = encode_payload(Payload([Metric("Temp", -8, D.Int16, alias=11, timestamp=TS)], TS, 1), MessageType.NDATA)
    (decoded,) = tahu("decode", [base64.b64encode(wire).decode()])
    assert decoded["metrics"][0]["alias"] == L(11) and "name" not in decoded["metrics"][0]
    assert decoded["metrics"][0]["value"] is None
