"""Decode Sparkplug B bytes into :mod:`uns.sparkplug.model` objects (re-exported by ``codec``).

Every failure is a :class:`~uns.sparkplug.errors.RemoteProtocolError` subclass whose message names
the metric (name or alias), because a host that logs "bad payload" alone cannot tell an operator
which tag of which PLC to look at.

Speed matters here (every service decodes every message), so the per-metric path avoids the
enum constructor, f-strings and HasField calls unless something is actually wrong; see
bench/codec_bench.py for the numbers this keeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import sparkplug_b_pb2 as pb
from .arrays import decode_array
from .datatypes import (
    BASIC_TYPES,
    BY_CODE,
    INT_DECODERS,
    METRIC_TYPES,
    PROPERTY_TYPES,
    SCALAR_FIELD,
    DataType,
)
from .errors import (
    DataSetError,
    DataTypeMismatchError,
    MalformedPayloadError,
    SparkplugError,
    UnknownAliasError,
    UnknownDataTypeError,
)
from .model import DataSet, MetaData, Metric, Parameter, Payload, PropertySet, PropertyValue, Template
from .topic import MessageType

#: ``resolve(name, alias) -> (name, datatype)`` for metrics that arrive without a datatype
Resolver = Callable[[str | None, int | None], tuple[str, DataType]]

_META_FIELDS = ("is_multi_part", "content_type", "size", "seq", "file_name", "file_type", "md5", "description")

def _utf8(value: Any) -> str:
    """upb hands a proto2 string holding invalid UTF-8 back as ``bytes``: refuse it."""
    if value.__class__ is bytes:
        raise ValueError(f"string value is not valid UTF-8: {value[:32]!r}")
    return value


_STRING_TYPES = (DataType.String, DataType.Text, DataType.UUID)

#: datatype -> (value field, converter or None) for every scalar datatype
_SCALAR: dict[DataType, tuple[str, Callable[[Any], Any] | None]] = {
    dt: (field, _utf8 if dt in _STRING_TYPES else INT_DECODERS.get(dt)) for dt, field in SCALAR_FIELD.items()
}
_BYTES_TYPES = frozenset(dt for dt in DataType if dt.is_array) | {DataType.Bytes, DataType.File}
_METRIC_BY_CODE = {int(dt): dt for dt in METRIC_TYPES}
_BASIC_BY_CODE = {int(dt): dt for dt in BASIC_TYPES}
_PROPERTY_BY_CODE = {int(dt): dt for dt in PROPERTY_TYPES}

#: value field -> the datatype we show when nothing declares one (inspection only)
_FIELD_GUESS: dict[str, DataType] = {
    "int_value": DataType.UInt32,
    "long_value": DataType.UInt64,
    "float_value": DataType.Float,
    "double_value": DataType.Double,
    "boolean_value": DataType.Boolean,
    "string_value": DataType.String,
    "bytes_value": DataType.Bytes,
    "dataset_value": DataType.DataSet,
    "template_value": DataType.Template,
}


def decode_payload(data: bytes, message_type: MessageType | None = None,
                   resolve: Resolver | None = None) -> Payload:
    """Parse Sparkplug bytes.

    Births must give every metric a name and datatype. In DATA/CMD messages metrics without a
    datatype are looked up with ``resolve(name, alias)`` (usually
    :meth:`~uns.sparkplug.catalog.EdgeNodeCatalog.resolver`); a datatype that is on the wire
    anyway must agree with the birth. Without a resolver the datatype is inferred from the value
    field (unsigned, no sign extension), which is only good for inspection (``uns decode``).

    Raises :class:`MalformedPayloadError`, :class:`UnknownAliasError`,
    :class:`UnknownDataTypeError` or :class:`DataTypeMismatchError`, never anything else for
    any input bytes.
    """
    try:
        raw = pb.Payload.FromString(data)
    except Exception as exc:  # DecodeError, and upb raises plain errors for some inputs
        raise MalformedPayloadError(f"not a Sparkplug B protobuf payload: {exc}") from None
    try:
        return _payload_from_pb(raw, message_type, resolve)
    except SparkplugError:
        raise
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        # e.g. a proto2 string field holding invalid UTF-8 only fails when read
        raise MalformedPayloadError(f"not a valid Sparkplug B payload: {exc}") from None


def _payload_from_pb(raw: pb.Payload, message_type: MessageType | None, resolve: Resolver | None) -> Payload:
    birth = message_type is not None and message_type.is_birth
    command = message_type is not None and message_type.is_command
    if birth:
        metrics = [_birth_metric(m) for m in raw.metrics]
    elif resolve is not None:
        metrics = [_resolved_metric(m, resolve, command) for m in raw.metrics]
    else:
        metrics = [_generic_metric(m) for m in raw.metrics]
    has = raw.HasField
    return Payload(
        metrics,
        raw.timestamp if has("timestamp") else None,
        raw.seq if has("seq") else None,
        raw.uuid if has("uuid") else None,
        raw.body if has("body") else None,
    )


# ------------------------------------------------------------------------- the three metric paths


def _birth_metric(raw: pb.Payload.Metric) -> Metric:
    """tck-id-payloads-alias-birth-requirement, tck-id-payloads-metric-datatype-req."""
    name = raw.name or None
    alias = raw.alias if raw.HasField("alias") else None
    code = raw.datatype
    datatype = _METRIC_BY_CODE.get(code)
    if datatype is None:
        if not raw.HasField("datatype"):
            raise MalformedPayloadError(
                f"birth metric {name or alias!r} has no datatype (tck-id-payloads-metric-datatype-req)"
            )
        raise _bad_code(code, f"metric {name or alias!r}", "metric")
    if name is None:
        raise MalformedPayloadError(
            f"birth metric with alias {alias} has no name (tck-id-payloads-alias-birth-requirement)"
        )
    return _finish_metric(raw, name, alias, datatype)


def _resolved_metric(raw: pb.Payload.Metric, resolve: Resolver, command: bool) -> Metric:
    """DATA/CMD: the datatype comes from the birth (tck-id-payloads-metric-datatype-not-req)."""
    name = raw.name or None
    alias = raw.alias if raw.HasField("alias") else None
    if name is None and alias is None:
        raise MalformedPayloadError("metric has neither name nor alias (tck-id-payloads-name-requirement)")
    code = raw.datatype
    try:
        born_name, datatype = resolve(name, alias)
    except UnknownAliasError:
        # Node Control/* commands travel by name with a datatype and need no birth (a host may
        # ask for a rebirth before it has seen one)
        if not (command and name is not None and code):
            raise
        datatype = _METRIC_BY_CODE.get(code) or _raise(_bad_code(code, f"metric {name!r}", "metric"))
        return _finish_metric(raw, name, alias, datatype)
    if code and code != datatype:
        raise DataTypeMismatchError(
            f"metric {name or born_name!r} (alias {alias}) carries datatype "
            f"{BY_CODE[code].name if code in BY_CODE else code} but its birth declared {datatype.name}"
        )
    return _finish_metric(raw, name or born_name, alias, datatype)


def _generic_metric(raw: pb.Payload.Metric) -> Metric:
    """No birth at hand: trust the wire datatype, else guess from the value field."""
    name = raw.name or None
    alias = raw.alias if raw.HasField("alias") else None
    code = raw.datatype
    if code:
        datatype = _METRIC_BY_CODE.get(code) or _raise(_bad_code(code, f"metric {name or alias!r}", "metric"))
    elif raw.HasField("datatype"):
        raise _bad_code(code, f"metric {name or alias!r}", "metric")
    else:
        which = raw.WhichOneof("value")
        datatype = _FIELD_GUESS.get(which, DataType.Unknown) if which else DataType.Unknown
    return _finish_metric(raw, name, alias, datatype)


def _finish_metric(raw: pb.Payload.Metric, name: str | None, alias: int | None, datatype: DataType) -> Metric:
    if name.__class__ is bytes:
        raise MalformedPayloadError(f"metric name is not valid UTF-8: {name[:32]!r}")  # type: ignore[index]
    has = raw.HasField
    metric = Metric(name, None, datatype, alias, raw.timestamp if has("timestamp") else None,
                    raw.is_historical, raw.is_transient)
    if has("metadata"):
        md = raw.metadata
        metric.metadata = MetaData(**{f: getattr(md, f) for f in _META_FIELDS if md.HasField(f)})
    if has("properties"):
        metric.properties = _property_set_from_pb(raw.properties, name or alias)
    which = raw.WhichOneof("value")
    if which is None or raw.is_null:
        metric.is_null = True
        return metric
    spec = _SCALAR.get(datatype)
    if spec is not None and spec[0] == which:  # the fast path: a scalar in its own field
        convert = spec[1]
        value = getattr(raw, which)
        if convert is not None:
            try:
                value = convert(value)
            except ValueError as exc:
                if convert is _utf8:
                    raise MalformedPayloadError(f"metric {name or alias!r}: {exc}") from None
                raise DataTypeMismatchError(f"metric {name or alias!r}: {exc}") from None
        metric.value = value
        return metric
    metric.value = _metric_value(raw, which, datatype, name or alias)
    return metric


def _metric_value(raw: pb.Payload.Metric, which: str, datatype: DataType, label: Any) -> Any:
    if datatype in _SCALAR:
        return _scalar(raw, which, datatype, f"metric {label!r}")
    if datatype in _BYTES_TYPES:
        if which != "bytes_value":
            raise DataTypeMismatchError(f"metric {label!r} is {datatype.name} but carries {which}")
        if datatype is DataType.Bytes or datatype is DataType.File:
            return raw.bytes_value
        try:
            return decode_array(datatype, raw.bytes_value)
        except MalformedPayloadError as exc:
            raise MalformedPayloadError(f"metric {label!r}: {exc}") from None
    if datatype is DataType.DataSet:
        if which != "dataset_value":
            raise DataTypeMismatchError(f"metric {label!r} is DataSet but carries {which}")
        return _dataset_from_pb(raw.dataset_value, label)
    if datatype is DataType.Template:
        if which != "template_value":
            raise DataTypeMismatchError(f"metric {label!r} is Template but carries {which}")
        return _template_from_pb(raw.template_value, label)
    if datatype is DataType.Unknown:
        return None
    raise DataTypeMismatchError(f"metric {label!r}: datatype {datatype.name} carries no metric value")


def _scalar(message: Any, which: str | None, datatype: DataType, label: str) -> Any:
    """A scalar of any container (Metric, PropertyValue, DataSetValue, Parameter); None if unset."""
    if which is None:
        return None
    field, convert = _SCALAR[datatype]
    value = getattr(message, which)
    if which != field:
        # Tahu Java and Tahu JS write UInt32 in long_value; accept it when the value fits
        if not (datatype is DataType.UInt32 and which == "long_value" and value < 1 << 32):
            raise DataTypeMismatchError(f"{label} is {datatype.name} but carries {which} (expected {field})")
        return value
    if convert is not None:
        try:
            return convert(value)
        except ValueError as exc:
            raise DataTypeMismatchError(f"{label}: {exc}") from None
    return value


# ------------------------------------------------------------------------------ nested structures


def _property_set_from_pb(raw: pb.Payload.PropertySet, owner: Any) -> PropertySet:
    keys, values = raw.keys, raw.values
    if len(keys) != len(values):
        raise MalformedPayloadError(
            f"metric {owner!r}: PropertySet has {len(keys)} keys but {len(values)} values "
            "(tck-id-payloads-propertyset-keys-array-size, tck-id-payloads-propertyset-values-array-size)"
        )
    return {key: _property_value_from_pb(key, value, owner) for key, value in zip(keys, values, strict=True)}


def _property_value_from_pb(key: str, raw: pb.Payload.PropertyValue, owner: Any) -> PropertyValue:
    label = f"metric {owner!r} property {key!r}"
    if not raw.HasField("type"):
        raise MalformedPayloadError(f"{label} has no type (tck-id-payloads-metric-propertyvalue-type-req)")
    datatype = _PROPERTY_BY_CODE.get(raw.type) or _raise(_bad_code(raw.type, label, "property"))
    which = raw.WhichOneof("value")
    if raw.is_null or which is None:
        return PropertyValue(datatype, None, True)
    if datatype is DataType.PropertySet:
        if which != "propertyset_value":
            raise DataTypeMismatchError(f"{label} is PropertySet but carries {which}")
        return PropertyValue(datatype, _property_set_from_pb(raw.propertyset_value, owner))
    if datatype is DataType.PropertySetList:
        if which != "propertysets_value":
            raise DataTypeMismatchError(f"{label} is PropertySetList but carries {which}")
        return PropertyValue(datatype, [_property_set_from_pb(s, owner) for s in raw.propertysets_value.propertyset])
    return PropertyValue(datatype, _scalar(raw, which, datatype, label))


def _text(value: Any, what: str) -> str:
    """A proto2 string of a DataSet or Template: upb hands invalid UTF-8 back as bytes (see _utf8)."""
    if value.__class__ is bytes:
        raise MalformedPayloadError(f"{what} is not valid UTF-8: {value[:32]!r}")
    return value


def _dataset_from_pb(raw: pb.Payload.DataSet, label: Any) -> DataSet:
    columns = [_text(column, f"metric {label!r}: DataSet column name") for column in raw.columns]
    if len(columns) != len(raw.types):
        missing = " (tck-id-payloads-dataset-parameter-type-req)" if not raw.types else ""
        raise DataSetError(
            f"metric {label!r}: DataSet has {len(columns)} columns but {len(raw.types)} types{missing} "
            "(tck-id-payloads-dataset-column-num-headers, tck-id-payloads-dataset-types-num)"
        )
    if raw.HasField("num_of_columns") and raw.num_of_columns != len(columns):
        raise DataSetError(
            f"metric {label!r}: DataSet num_of_columns {raw.num_of_columns} != {len(columns)} columns "
            "(tck-id-payloads-dataset-column-size)"
        )
    types = [_BASIC_BY_CODE.get(t) or _raise(_bad_code(t, f"DataSet column of metric {label!r}", "DataSet column"))
             for t in raw.types]
    rows = []
    for index, row in enumerate(raw.rows):
        if len(row.elements) != len(types):
            raise DataSetError(
                f"metric {label!r}: DataSet row {index} has {len(row.elements)} values for {len(types)} columns"
            )
        where = f"metric {label!r} DataSet row {index}"
        rows.append([_scalar(element, element.WhichOneof("value"), datatype, where)
                     for element, datatype in zip(row.elements, types, strict=True)])
    return DataSet(columns=columns, types=types, rows=rows)


def _template_from_pb(raw: pb.Payload.Template, label: Any) -> Template:
    parameters = []
    for param in raw.parameters:
        where = f"metric {label!r} template parameter {param.name!r}"
        if not param.name:
            raise MalformedPayloadError(f"{where} has no name (tck-id-payloads-template-parameter-name-required)")
        name = _text(param.name, f"metric {label!r}: template parameter name "
                                 "(tck-id-payloads-template-parameter-name-type)")
        if not param.HasField("type"):
            raise MalformedPayloadError(f"{where} has no type (tck-id-payloads-template-parameter-type-req)")
        ptype = _BASIC_BY_CODE.get(param.type) or _raise(_bad_code(param.type, where, "template parameter"))
        parameters.append(Parameter(name, ptype, _scalar(param, param.WhichOneof("value"), ptype, where)))
    has = raw.HasField
    return Template(
        metrics=[_birth_metric(m) for m in raw.metrics],
        parameters=parameters,
        version=_text(raw.version, f"metric {label!r}: template version (tck-id-payloads-template-version)")
        if has("version") else None,
        template_ref=_text(raw.template_ref, f"metric {label!r}: template_ref (tck-id-payloads-template-ref-instance)")
        if has("template_ref") else None,
        is_definition=raw.is_definition,
    )


# ------------------------------------------------------------------------------------- helpers


def _bad_code(code: int, label: str, where: str) -> UnknownDataTypeError:
    if code in BY_CODE:
        dt = BY_CODE[code]
        return UnknownDataTypeError(f"{label}: datatype {dt.name} ({code}) is not allowed in a {where}")
    return UnknownDataTypeError(f"{label}: datatype {code} is not in the Sparkplug 3.0 DataType enum")


def _raise(exc: Exception) -> Any:
    raise exc


def raise_unknown(name: str | None, alias: int | None) -> tuple[str, DataType]:
    """A resolver that knows nothing: every DATA metric is an unknown alias."""
    raise UnknownAliasError(f"metric {name or alias!r} was never declared in a birth")
