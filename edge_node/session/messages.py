"""Building the edge node's messages: pure functions of the metric model, no session state.

Births (rule 4 of :mod:`edge_node.session.core`), DATA (rules 6 and 7), deaths. The session
decides *when* a message goes out and which ``seq`` it takes; this module decides what is in it
and turns it into bytes. Both encoders guard against values the codec refuses, the same way for
DATA and births, because such a value comes from a source we do not control (an OPC UA server
returning a value outside the declared datatype) and must never crash the node:

* DATA: the values that do not encode are dropped (and reported), the rest go out.
* Births: a birth cannot leave a metric out (tck-id-topics-nbirth-metric-reqs), so
  :class:`BirthEncodeError` names every metric whose current value does not encode; the session
  forgets those values (the next birth says null for them) and takes its ERROR path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edge_node.errors import EdgeError
from uns.conventions import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH, PROP_ENG_HIGH, PROP_ENG_LOW, PROP_ENG_UNIT
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import EncodeError
from uns.sparkplug.model import MetaData, Metric, Payload, PropertySet, PropertyValue
from uns.sparkplug.topic import MessageType

from ..model import MetricDefinition, MetricUpdate

__all__ = [
    "BirthEncodeError", "MetricInfo", "MetricKey", "birth_metrics", "chunk_values", "data_metrics",
    "definition_properties", "encode_birth", "encode_data", "encode_ddeath", "encode_ndeath", "node_controls",
    "where",
]

#: (device_id or None for the node, metric name)
MetricKey = tuple[str | None, str]


@dataclass(slots=True)
class MetricInfo:
    """A defined metric as the births declare it (alias fixed for the life of the process, rule 6)."""

    device_id: str | None
    name: str
    datatype: DataType
    alias: int
    definition: MetricDefinition
    birth_properties: PropertySet | None


class BirthEncodeError(EdgeError, EncodeError):
    """A birth whose current values include some the codec refuses; ``bad`` names them."""

    def __init__(self, message_type: MessageType, bad: list[tuple[MetricKey, str]]) -> None:
        self.message_type = message_type
        self.bad = bad
        details = "; ".join(f"{name!r} of {where(device_id)}: {error}" for (device_id, name), error in bad)
        super().__init__(f"{message_type} cannot be encoded: {details or 'no single metric is at fault'}")


def where(device_id: str | None) -> str:
    return "the node" if device_id is None else f"device {device_id!r}"


def definition_properties(definition: MetricDefinition) -> PropertySet | None:
    props: PropertySet = {}
    if definition.unit:
        props[PROP_ENG_UNIT] = PropertyValue(DataType.String, definition.unit)
    if definition.eng_low is not None:
        props[PROP_ENG_LOW] = PropertyValue(DataType.Double, float(definition.eng_low))
    if definition.eng_high is not None:
        props[PROP_ENG_HIGH] = PropertyValue(DataType.Double, float(definition.eng_high))
    return props or None


# ---------------------------------------------------------------------------------------- births


def node_controls(bd_seq: int, now: int) -> list[Metric]:
    """The metrics every NBIRTH carries besides the node's own: bdSeq and the two controls, born false."""
    return [
        Metric(name=BDSEQ, value=bd_seq, datatype=DataType.Int64, timestamp=now),
        Metric(name=NODE_REBIRTH, value=False, datatype=DataType.Boolean, timestamp=now),
        Metric(name=NODE_NEXT_SERVER, value=False, datatype=DataType.Boolean, timestamp=now),
    ]


def birth_metrics(infos: Iterable[MetricInfo], current: Mapping[MetricKey, MetricUpdate],
                  now: int) -> list[tuple[MetricKey, Metric]]:
    """Every metric of one target with its current value (or ``is_null``), with its key."""
    out = []
    for info in infos:
        key = (info.device_id, info.name)
        value = current.get(key)
        props = info.birth_properties
        if value is not None and value.properties:
            props = {**(props or {}), **value.properties}
        description = info.definition.description
        metric = Metric(name=info.name, alias=info.alias, datatype=info.datatype,
                        timestamp=now if value is None else value.timestamp,
                        properties=props, metadata=MetaData(description=description) if description else None)
        if value is None or value.is_null or value.value is None:
            metric.is_null = True
        else:
            metric.value = value.value
        out.append((key, metric))
    return out


def encode_birth(message_type: MessageType, fixed: list[Metric], metrics: list[tuple[MetricKey, Metric]],
                 now: int, seq: int) -> tuple[bytes, int]:
    """NBIRTH/DBIRTH bytes (metrics in timestamp order) and the number of metrics; raises
    :class:`BirthEncodeError` naming every metric that does not encode."""
    ordered = sorted([*fixed, *(m for _, m in metrics)], key=_metric_ts)
    try:
        return encode_payload(Payload(metrics=ordered, timestamp=now, seq=seq), message_type), len(ordered)
    except EncodeError:
        pass
    bad: list[tuple[MetricKey, str]] = []
    for key, metric in metrics:
        try:
            encode_payload(Payload(metrics=[metric], timestamp=now, seq=seq), message_type)
        except EncodeError as exc:
            bad.append((key, str(exc)))
    raise BirthEncodeError(message_type, bad)


def encode_ndeath(bd_seq: int, now: int) -> bytes:
    """The NDEATH (the Will, and the one we publish ourselves): bdSeq only, no seq (rule 1)."""
    metric = Metric(name=BDSEQ, value=bd_seq, datatype=DataType.Int64, timestamp=now)
    return encode_payload(Payload(metrics=[metric], timestamp=now), MessageType.NDEATH)


def encode_ddeath(now: int, seq: int) -> bytes:
    return encode_payload(Payload(metrics=[], timestamp=now, seq=seq), MessageType.DDEATH)


# ------------------------------------------------------------------------------------------ DATA


def chunk_values(updates: list[MetricUpdate], limit: int) -> list[list[MetricUpdate]]:
    """One target's values as DATA messages (rule 7): timestamp order, at most ``limit`` metrics,
    never the same (metric, timestamp) twice in one message."""
    chunks: list[list[MetricUpdate]] = []
    chunk: list[MetricUpdate] = []
    seen: set[tuple[str, int]] = set()
    for update in sorted(updates, key=_by_timestamp):
        key = (update.name, update.timestamp)
        if len(chunk) >= limit or key in seen:
            chunks.append(chunk)
            chunk = []
            seen = set()
        chunk.append(update)
        seen.add(key)
    if chunk:
        chunks.append(chunk)
    return chunks


def data_metrics(infos: Mapping[MetricKey, MetricInfo], device_id: str | None, updates: list[MetricUpdate],
                 from_store: bool) -> list[Metric]:
    """NDATA/DDATA metrics: alias only, no datatype on the wire (rule 6)."""
    out = []
    append = out.append
    for update in updates:  # positional (name, value, datatype, alias, timestamp, historical, transient,
        info = infos[(device_id, update.name)]  # null, metadata, properties): one per change, hot
        value = update.value
        append(Metric(None, value, info.datatype, info.alias, update.timestamp, from_store or update.is_historical,
                      False, update.is_null or value is None, None, update.properties))
    return out


@dataclass(slots=True)
class EncodedData:
    """An encoded DATA message: the values it carries, and those dropped because they do not encode."""

    payload: bytes | None
    updates: list[MetricUpdate]
    dropped: list[tuple[MetricUpdate, str]] = field(default_factory=list)


def encode_data(message_type: MessageType, updates: list[MetricUpdate], metrics: list[Metric], now: int,
                seq: int) -> EncodedData:
    """Encode one NDATA/DDATA; values the codec refuses are left out (``payload`` None if none is left)."""
    payload = Payload(metrics=metrics, timestamp=now, seq=seq)
    try:
        return EncodedData(encode_payload(payload, message_type), updates)
    except EncodeError:
        pass
    good_updates, good_metrics, dropped = [], [], []
    for update, metric in zip(updates, metrics, strict=True):
        try:
            encode_payload(Payload(metrics=[metric], timestamp=0, seq=0), message_type)
        except EncodeError as exc:
            dropped.append((update, str(exc)))
            continue
        good_updates.append(update)
        good_metrics.append(metric)
    if not good_metrics:
        return EncodedData(None, [], dropped)
    payload.metrics = good_metrics
    return EncodedData(encode_payload(payload, message_type), good_updates, dropped)


def _by_timestamp(update: MetricUpdate) -> int:
    return update.timestamp


def _metric_ts(metric: Metric) -> int:
    return metric.timestamp or 0
