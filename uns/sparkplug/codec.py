"""Encode and decode Sparkplug B payloads between bytes and :mod:`uns.sparkplug.model`.

Pure functions, no I/O. Which fields go on the wire depends on the message type, so both
directions take it:

* births carry name, alias (if any) and datatype of every metric, a value or ``is_null``
  (tck-id-payloads-alias-birth-requirement, tck-id-payloads-metric-datatype-req,
  tck-id-topics-nbirth-metrics);
* DATA and commands carry the alias alone when there is one, and no datatype
  (tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req);
* ``seq`` is present (even 0) on every edge message but NDEATH, and absent on NDEATH, NCMD and
  DCMD (tck-id-payloads-sequence-num-always-included, tck-id-topics-ndeath-seq);
* every metric of a birth or DATA message has its own timestamp
  (tck-id-payloads-name-birth-data-requirement).

Breaking one of these rules is our bug, so encoding raises :class:`EncodeError` instead of
sending something a host would reject. Decoding lives in :mod:`uns.sparkplug.decode` and is
re-exported here; it needs the datatype each birth declared for DATA and CMD metrics: pass a
``resolve`` callable, usually :meth:`uns.sparkplug.catalog.EdgeNodeCatalog.resolver`.
"""

from __future__ import annotations

import math
from typing import Any

from . import sparkplug_b_pb2 as pb
from .arrays import encode_array
from .datatypes import (
    BASIC_TYPES,
    BY_CODE,
    INT_RANGES,
    METRIC_TYPES,
    PROPERTY_TYPES,
    SCALAR_FIELD,
    DataType,
    int_to_wire,
)
from .decode import Resolver, decode_payload, raise_unknown
from .errors import EncodeError
from .model import (
    QUALITY_BAD,
    QUALITY_GOOD,
    QUALITY_KEY,
    QUALITY_STALE,
    DataSet,
    MetaData,
    Metric,
    Payload,
    PropertySet,
    PropertyValue,
    Template,
)
from .topic import MessageType

__all__ = ["Resolver", "build_payload", "decode_payload", "encode_payload", "raise_unknown"]

_FLOAT32_MAX = 3.4028234663852886e38
_META_FIELDS = ("is_multi_part", "content_type", "size", "seq", "file_name", "file_type", "md5", "description")
_QUALITIES = frozenset({QUALITY_BAD, QUALITY_GOOD, QUALITY_STALE})
_BYTES_TYPES = frozenset({DataType.Bytes, DataType.File})


# --------------------------------------------------------------------------------------- encode


def encode_payload(payload: Payload, message_type: MessageType) -> bytes:
    """Serialize ``payload`` for ``message_type``, enforcing the spec's per-type field rules."""
    return build_payload(payload, message_type).SerializeToString()


def build_payload(payload: Payload, message_type: MessageType) -> pb.Payload:
    if message_type is MessageType.STATE:
        raise EncodeError("STATE is JSON, not protobuf: use uns.sparkplug.state.StatePayload")
    out = pb.Payload()
    if message_type.carries_seq:
        if payload.seq is None:
            raise EncodeError(f"{message_type} must carry seq (tck-id-payloads-sequence-num-always-included)")
        if not 0 <= payload.seq <= 255:
            raise EncodeError(f"seq {payload.seq} is outside 0..255")
        out.seq = payload.seq
    elif payload.seq is not None:
        raise EncodeError(f"{message_type} must not carry seq (tck-id-topics-ndeath-seq)")
    if payload.timestamp is not None:
        out.timestamp = payload.timestamp
    elif message_type is not MessageType.NDEATH:
        raise EncodeError(f"{message_type} needs a payload timestamp (ms UTC)")
    if payload.uuid is not None:
        out.uuid = payload.uuid
    if payload.body is not None:
        out.body = payload.body
    # births and the NDEATH (the bdSeq metric, Int64) state name and datatype in full
    # (tck-id-message-flow-edge-node-birth-publish-will-message-payload-bdSeq)
    birth = message_type.is_birth or message_type is MessageType.NDEATH
    # tck-id-payloads-name-birth-data-requirement: births and DATA stamp every metric
    stamped = message_type.is_birth or message_type.is_data
    definitions_allowed = message_type is MessageType.NBIRTH
    add = out.metrics.add
    for metric in payload.metrics:
        if stamped and metric.timestamp is None:
            raise EncodeError(
                f"{message_type} metric {metric.name or metric.alias!r} needs a timestamp "
                "(tck-id-payloads-name-birth-data-requirement)"
            )
        if not definitions_allowed and type(metric.value) is Template and metric.value.is_definition:
            raise EncodeError(
                f"template definition {metric.name!r} may only appear in an NBIRTH "
                "(tck-id-payloads-template-definition-nbirth-only)"
            )
        _fill_metric(add(), metric, birth)
    return out


def _fill_metric(out: pb.Payload.Metric, metric: Metric, birth: bool) -> None:
    datatype = metric.datatype
    if type(datatype) is not DataType:
        datatype = _as_datatype(datatype, f"metric {metric.name or metric.alias!r}")
    if datatype not in METRIC_TYPES:
        raise EncodeError(f"metric {metric.name or metric.alias!r}: {datatype.name} is not a metric datatype "
                          "(tck-id-payloads-metric-datatype-value)")
    if birth:
        if not metric.name:
            raise EncodeError("birth metrics need a name (tck-id-payloads-alias-birth-requirement)")
        out.name = metric.name
        out.datatype = datatype
        if metric.alias is not None:
            out.alias = metric.alias
    elif metric.alias is not None:
        out.alias = metric.alias
    elif metric.name:
        out.name = metric.name
    else:
        raise EncodeError("a metric needs a name or an alias (tck-id-payloads-name-requirement)")
    if metric.timestamp is not None:
        out.timestamp = metric.timestamp
    if metric.is_historical:
        out.is_historical = True
    if metric.is_transient:
        out.is_transient = True
    if metric.metadata is not None:
        _fill_metadata(out.metadata, metric.metadata)
    if metric.properties:
        _fill_property_set(out.properties, metric.properties)
    value = metric.value
    if metric.is_null or value is None:
        out.is_null = True
        return
    # fast paths for the common scalar cases, checked exactly as _scalar_to_wire does
    vtype = type(value)
    if datatype is DataType.Double and vtype is float:
        out.double_value = value
    elif datatype is DataType.Boolean and vtype is bool:
        out.boolean_value = value
    elif datatype is DataType.String and vtype is str:
        out.string_value = value
    elif datatype is DataType.Int32 and vtype is int and 0 <= value <= 0x7FFFFFFF:
        out.int_value = value
    else:
        try:
            _set_metric_value(out, datatype, value)
        except EncodeError as exc:
            raise EncodeError(f"metric {metric.name or metric.alias!r}: {exc}") from None


def _set_metric_value(out: pb.Payload.Metric, datatype: DataType, value: Any) -> None:
    field = SCALAR_FIELD.get(datatype)
    if field is not None:
        setattr(out, field, _scalar_to_wire(datatype, value))
    elif datatype.is_array:
        out.bytes_value = encode_array(datatype, value)
    elif datatype in _BYTES_TYPES:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise EncodeError(f"{datatype.name} needs bytes, got {type(value).__name__}")
        out.bytes_value = bytes(value)
    elif datatype is DataType.DataSet:
        _fill_dataset(out.dataset_value, value)
    elif datatype is DataType.Template:
        _fill_template(out.template_value, value)
    else:
        raise EncodeError(f"{datatype.name} is not a metric datatype")


def _scalar_to_wire(datatype: DataType, value: Any) -> Any:
    if datatype in INT_RANGES or datatype is DataType.DateTime:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EncodeError(f"{datatype.name} needs an int, got {type(value).__name__} {value!r}")
        if datatype is DataType.DateTime:
            if not 0 <= value < 2**63:
                raise EncodeError(f"DateTime {value} is not ms since the epoch")
            return value
        return int_to_wire(value, datatype)
    if datatype is DataType.Float or datatype is DataType.Double:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EncodeError(f"{datatype.name} needs a number, got {type(value).__name__} {value!r}")
        if datatype is DataType.Float and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise EncodeError(f"{value} does not fit a 32-bit Float")
        return float(value)
    if datatype is DataType.Boolean:
        if not isinstance(value, bool):
            raise EncodeError(f"Boolean needs a bool, got {type(value).__name__} {value!r}")
        return value
    if not isinstance(value, str):
        raise EncodeError(f"{datatype.name} needs a str, got {type(value).__name__} {value!r}")
    return value


def _fill_metadata(out: pb.Payload.MetaData, meta: MetaData) -> None:
    for name in _META_FIELDS:
        value = getattr(meta, name)
        if value is not None:
            setattr(out, name, value)


def _fill_property_set(out: pb.Payload.PropertySet, props: PropertySet) -> None:
    for key, prop in props.items():
        if not isinstance(prop, PropertyValue):
            raise EncodeError(f"property {key!r} must be a PropertyValue, got {type(prop).__name__}")
        out.keys.append(key)
        _fill_property_value(out.values.add(), key, prop)


def _fill_property_value(out: pb.Payload.PropertyValue, key: str, prop: PropertyValue) -> None:
    datatype = _as_datatype(prop.type, f"property {key!r}")
    if datatype not in PROPERTY_TYPES:
        raise EncodeError(f"property {key!r}: {datatype.name} is not a property type "
                          "(tck-id-payloads-metric-propertyvalue-type-value)")
    if key == QUALITY_KEY:
        if datatype is not DataType.Int32:
            raise EncodeError("property 'Quality' must be Int32 (tck-id-payloads-propertyset-quality-value-type)")
        if not prop.is_null and prop.value not in _QUALITIES:
            raise EncodeError(f"property 'Quality' is {prop.value!r}; it must be 0 (BAD), 192 (GOOD) or 500 (STALE) "
                              "(tck-id-payloads-propertyset-quality-value-value)")
    out.type = datatype
    if prop.is_null or prop.value is None:
        out.is_null = True
    elif datatype is DataType.PropertySet:
        if not isinstance(prop.value, dict):
            raise EncodeError(f"property {key!r}: PropertySet needs a dict, got {type(prop.value).__name__}")
        out.propertyset_value.SetInParent()
        _fill_property_set(out.propertyset_value, prop.value)
    elif datatype is DataType.PropertySetList:
        if isinstance(prop.value, dict):
            raise EncodeError(f"property {key!r}: PropertySetList needs a list of PropertySets")
        sets = out.propertysets_value
        sets.SetInParent()  # an empty list is still a (present) value
        for item in prop.value:
            _fill_property_set(sets.propertyset.add(), item)
    else:
        setattr(out, SCALAR_FIELD[datatype], _scalar_to_wire(datatype, prop.value))


def _fill_dataset(out: pb.Payload.DataSet, dataset: Any) -> None:
    if not isinstance(dataset, DataSet):
        raise EncodeError(f"DataSet needs a DataSet, got {type(dataset).__name__}")
    if len(dataset.columns) != len(dataset.types):
        raise EncodeError(
            f"DataSet has {len(dataset.columns)} columns but {len(dataset.types)} types"
        )
    types = [_as_datatype(t, "DataSet column") for t in dataset.types]
    for datatype in types:
        if datatype not in BASIC_TYPES:
            raise EncodeError(f"DataSet column type {datatype.name} is not a basic type "
                              "(tck-id-payloads-dataset-types-value)")
    out.num_of_columns = len(dataset.columns)
    out.columns.extend(dataset.columns)
    out.types.extend(int(t) for t in types)
    for row_index, row in enumerate(dataset.rows):
        if len(row) != len(types):
            raise EncodeError(f"DataSet row {row_index} has {len(row)} values for {len(types)} columns")
        pb_row = out.rows.add()
        for datatype, value in zip(types, row, strict=True):
            element = pb_row.elements.add()
            if value is not None:  # a null cell is an element with no value set
                setattr(element, SCALAR_FIELD[datatype], _scalar_to_wire(datatype, value))


def _fill_template(out: pb.Payload.Template, template: Any) -> None:
    if not isinstance(template, Template):
        raise EncodeError(f"Template needs a Template, got {type(template).__name__}")
    if template.is_definition and template.template_ref is not None:
        raise EncodeError("a template definition has no template_ref (tck-id-payloads-template-definition-ref)")
    if not template.is_definition and not template.template_ref:
        raise EncodeError("a template instance names its definition in template_ref "
                          "(tck-id-payloads-template-instance-ref)")
    if template.version is not None:
        out.version = template.version
    if template.template_ref is not None:
        out.template_ref = template.template_ref
    out.is_definition = template.is_definition  # always present, per the spec
    # one bound ``add`` per template, not ``out.metrics.add()`` per member: upb builds a container
    # object at every ``out.metrics`` (20,000 members in a bare protobuf loop: 11-12 ms against
    # 19-23 ms on a quiet machine; bench/README.md, template_codec_bench.py)
    add = out.metrics.add
    for member in template.metrics:
        _fill_metric(add(), member, True)
    for param in template.parameters:
        if not param.name:
            raise EncodeError("every template parameter needs a name "
                              "(tck-id-payloads-template-parameter-name-required)")
        ptype = _as_datatype(param.type, f"template parameter {param.name!r}")
        if ptype not in BASIC_TYPES:
            raise EncodeError(f"template parameter {param.name!r}: {ptype.name} is not a basic type "
                              "(tck-id-payloads-template-parameter-type-value)")
        pb_param = out.parameters.add()
        pb_param.name = param.name
        pb_param.type = ptype
        if param.value is not None:
            try:
                setattr(pb_param, SCALAR_FIELD[ptype], _scalar_to_wire(ptype, param.value))
            except EncodeError as exc:
                raise EncodeError(f"template parameter {param.name!r}: {exc}") from None


def _as_datatype(value: Any, label: str) -> DataType:
    """Accept a DataType, its wire code or its name; the model is typed but callers pass ints."""
    if type(value) is DataType:
        return value
    if value is None:
        raise EncodeError(f"{label} has no datatype")
    if isinstance(value, str) and value in DataType.__members__:
        return DataType[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in BY_CODE:
        return BY_CODE[value]
    raise EncodeError(f"{label}: {value!r} is not a Sparkplug 3.0 datatype")
