"""A JSON-safe view of a decoded payload, for people (``uns decode``, logs, the web UI).

Strict JSON has no bytes, NaN or infinity, so bytes become base64 strings and non-finite floats
become the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``. Datatypes are shown by name.
Only fields that are set appear, so the output reads like the wire message.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from .datatypes import DataType
from .model import DataSet, MetaData, Metric, Payload, PropertySet, PropertyValue, Template

_META_FIELDS = ("is_multi_part", "content_type", "size", "seq", "file_name", "file_type", "md5", "description")


def payload_to_json(payload: Payload) -> dict[str, Any]:
    """The payload as a dict that ``json.dumps(..., allow_nan=False)`` accepts."""
    out: dict[str, Any] = {}
    if payload.timestamp is not None:
        out["timestamp"] = payload.timestamp
    if payload.seq is not None:
        out["seq"] = payload.seq
    if payload.uuid is not None:
        out["uuid"] = payload.uuid
    if payload.body is not None:
        out["body"] = _b64(payload.body)
    out["metrics"] = [metric_to_json(m) for m in payload.metrics]
    return out


def metric_to_json(metric: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if metric.name is not None:
        out["name"] = metric.name
    if metric.alias is not None:
        out["alias"] = metric.alias
    if metric.datatype is not None:
        out["datatype"] = _type_name(metric.datatype)
    if metric.timestamp is not None:
        out["timestamp"] = metric.timestamp
    if metric.is_historical:
        out["is_historical"] = True
    if metric.is_transient:
        out["is_transient"] = True
    if metric.is_null:
        out["is_null"] = True
    if metric.metadata is not None:
        out["metadata"] = _metadata(metric.metadata)
    if metric.properties:
        out["properties"] = _property_set(metric.properties)
    out["value"] = value_to_json(metric.value)
    return out


def value_to_json(value: Any) -> Any:
    """Any model value (scalar, list, DataSet, Template, PropertySet) as JSON-safe data."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _b64(bytes(value))
    if isinstance(value, list):
        return [value_to_json(item) for item in value]
    if isinstance(value, DataSet):
        return {
            "columns": list(value.columns),
            "types": [_type_name(t) for t in value.types],
            "rows": [[value_to_json(cell) for cell in row] for row in value.rows],
        }
    if isinstance(value, Template):
        out: dict[str, Any] = {"is_definition": value.is_definition}
        if value.template_ref is not None:
            out["template_ref"] = value.template_ref
        if value.version is not None:
            out["version"] = value.version
        out["parameters"] = [
            {"name": p.name, "type": _type_name(p.type), "value": value_to_json(p.value)} for p in value.parameters
        ]
        out["metrics"] = [metric_to_json(m) for m in value.metrics]
        return out
    if isinstance(value, dict):
        return _property_set(value)
    return repr(value)


def _property_set(props: PropertySet) -> dict[str, Any]:
    return {key: _property_value(prop) for key, prop in props.items()}


def _property_value(prop: PropertyValue) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _type_name(prop.type)}
    if prop.is_null:
        out["is_null"] = True
    if prop.type == DataType.PropertySetList and isinstance(prop.value, list):
        out["value"] = [_property_set(item) for item in prop.value]
    else:
        out["value"] = value_to_json(prop.value)
    return out


def _metadata(meta: MetaData) -> dict[str, Any]:
    return {name: getattr(meta, name) for name in _META_FIELDS if getattr(meta, name) is not None}


def _type_name(datatype: Any) -> str | int:
    try:
        return DataType(datatype).name
    except ValueError:
        return int(datatype)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
