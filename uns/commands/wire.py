"""How a command travels: a standard Sparkplug DCMD/NCMD metric plus an envelope in its properties.

**Request (host → edge).** One command per NCMD (node-level metric) or DCMD (device metric) on
``spBv1.0/<group>/DCMD/<edge>/<device>``. The payload holds one metric:

* name *or* alias: the alias alone when the birth gave one (tck-id-payloads-alias-data-cmd-
  requirement), else the name; no datatype (the birth declared it);
* the value in the birth's datatype. A method-call rule's metric is a String whose value is the
  RFC 8785 canonical JSON object of the arguments, marked by ``valueEncoding = "json"``; a write to
  a member of a template instance is a Template carrying that one member
  (:mod:`uns.commands.template_members`), which the edge reads back as ``{"<member path>": value}``;
* a PropertySet, the **envelope**, with everything the edge needs to recompute the command hash
  and check the signatures on its own:

  =================  ================  =====================================================
  key                type              meaning
  =================  ================  =====================================================
  ``commandSchema``  String            ``uns-hub.command.v1``
  ``commandId``      String            UUID of the command
  ``commandHash``    String            hex SHA-256 the host computed (:mod:`.model`)
  ``requestedBy``    String            user id of the requester
  ``reason``         String            why (mandatory)
  ``createdAt``      DateTime          ms UTC
  ``validUntil``     DateTime          ms UTC; the edge expires the command after this
  ``valueEncoding``  String            only ``json`` (method arguments); absent otherwise
  ``signatures``     PropertySetList   one PropertySet per signature: ``userId``, ``fullName``,
                                       ``meaning``, ``signedAt`` (DateTime), ``commandHash``,
                                       ``algorithm``, ``keyId``, ``value`` (base64), all String
                                       but ``signedAt``
  =================  ================  =====================================================

A plain Sparkplug edge still sees an ordinary DCMD (properties are optional to it). Ours rebuilds
the :class:`~uns.commands.model.CommandRequest` from the *topic* it received on, the metric
name its own birth bound to the alias, the decoded value and the envelope — so a command
re-addressed to another device or metric no longer matches its hash or its signatures. A metric
without an envelope is refused (``malformed_command``): nothing writes to a PLC any other way.

**Result (edge → UNS).** JSON :class:`~uns.commands.model.CommandResult` on
``<enterprise>/<site>/<area>/<line>/_cmd/result/<command_id>`` (:func:`result_topic`), QoS 1, not
retained (one retained message per command would pile up on the broker forever; the audit
chain is the durable record, and the requester subscribes to ``.../_cmd/result/+`` with a
persistent session before it sends).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from uns import json_guard
from uns.audit.canonical import canonical_json
from uns.errors import UnsError
from uns.isa95 import CMD, NamespaceMapping
from uns.sparkplug.codec import Resolver, decode_payload, encode_payload
from uns.sparkplug.control import NODE_CONTROL_PREFIX
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import SparkplugError
from uns.sparkplug.model import Metric, Payload, PropertySet, PropertyValue, Template
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_node_topic

from .model import COMMAND_SCHEMA, CommandRequest, Signature
from .template_members import (
    TemplateMemberError,
    born_members,
    command_template,
    member_path,
    member_value,
    request_value,
)

P_SCHEMA = "commandSchema"
P_ID = "commandId"
P_HASH = "commandHash"
P_REQUESTED_BY = "requestedBy"
P_REASON = "reason"
P_CREATED = "createdAt"
P_VALID_UNTIL = "validUntil"
P_VALUE_ENCODING = "valueEncoding"
P_SIGNATURES = "signatures"
JSON_ENCODING = "json"

_SIG_FIELDS: tuple[tuple[str, str, DataType], ...] = (
    ("userId", "user_id", DataType.String),
    ("fullName", "full_name", DataType.String),
    ("meaning", "meaning", DataType.String),
    ("signedAt", "signed_at_ms", DataType.DateTime),
    ("commandHash", "command_hash", DataType.String),
    ("algorithm", "algorithm", DataType.String),
    ("keyId", "key_id", DataType.String),
    ("value", "value", DataType.String),
)


class CommandWireError(UnsError, ValueError):
    """A CMD metric is not a well-formed uns-hub command; the message names the metric and field."""


@dataclass(frozen=True, slots=True)
class WireCommand:
    """One command decoded from a CMD message, with the metric it came in."""

    request: CommandRequest
    metric: Metric


@dataclass(frozen=True, slots=True)
class WireRejection:
    """A CMD metric that could not be read as a command; the edge refuses and audits it."""

    metric: str
    command_id: uuid.UUID | None
    message: str


# ------------------------------------------------------------------------------------- encode


def command_topic(request: CommandRequest) -> SparkplugTopic:
    """DCMD for a device metric, NCMD for a node-level one."""
    kind = MessageType.NCMD if request.device_id is None else MessageType.DCMD
    return SparkplugTopic(request.group_id, kind, request.edge_node_id, request.device_id)


def envelope(request: CommandRequest, *, json_value: bool = False) -> PropertySet:
    """The envelope PropertySet of ``request`` (see the module docstring)."""
    s, dt = DataType.String, DataType.DateTime
    props: PropertySet = {
        P_SCHEMA: PropertyValue(s, COMMAND_SCHEMA),
        P_ID: PropertyValue(s, str(request.command_id)),
        P_HASH: PropertyValue(s, request.command_hash()),
        P_REQUESTED_BY: PropertyValue(s, request.requested_by),
        P_REASON: PropertyValue(s, request.reason),
        P_CREATED: PropertyValue(dt, request.created_at_ms),
        P_VALID_UNTIL: PropertyValue(dt, request.valid_until_ms),
    }
    if json_value:
        props[P_VALUE_ENCODING] = PropertyValue(s, JSON_ENCODING)
    props[P_SIGNATURES] = PropertyValue(DataType.PropertySetList, [
        {key: PropertyValue(ptype, _sig_value(sig, attr)) for key, attr, ptype in _SIG_FIELDS}
        for sig in request.signatures
    ])
    return props


def _sig_value(sig: Signature, attr: str) -> Any:
    value = getattr(sig, attr)
    return value.value if attr == "meaning" else value


def command_metric(request: CommandRequest, *, datatype: DataType, alias: int | None = None,
                   timestamp_ms: int | None = None, template: Template | None = None) -> Metric:
    """The CMD metric: alias-only when the birth gave an alias, the value, the envelope.

    ``template``: the instance as born, for a write to one of its members (its ``template_ref``,
    version and the member's datatype come from it)."""
    if datatype is DataType.Template:
        path = member_path(request.value)
        if template is None or path is None:
            raise CommandWireError(f"{request.target_label}: a write to a template instance names one member "
                                   "({\"<member path>\": value}) and needs the instance as born")
        member_type = born_members(template).get(path)
        if member_type is None:
            raise CommandWireError(f"{request.target_label}: the born instance has no member {path!r}")
        try:
            value: Any = command_template(template, path, member_value(request.value), member_type)
        except TemplateMemberError as exc:
            raise CommandWireError(f"{request.target_label}: {exc}") from None
        return Metric(name=None if alias is not None else request.metric, value=value, datatype=datatype,
                      alias=alias, timestamp=timestamp_ms, properties=envelope(request))
    json_value = isinstance(request.value, dict)
    if json_value and datatype is not DataType.String:
        raise CommandWireError(f"{request.target_label}: method arguments travel as a String metric, "
                               f"the birth declared {datatype.name}")
    value = canonical_json(request.value).decode("utf-8") if json_value else request.value
    return Metric(name=None if alias is not None else request.metric, value=value, datatype=datatype, alias=alias,
                  timestamp=timestamp_ms, properties=envelope(request, json_value=json_value))


def encode_command(request: CommandRequest, *, datatype: DataType, alias: int | None = None,
                   now_ms: int, template: Template | None = None) -> tuple[str, bytes]:
    """``(topic, payload bytes)`` of a signed request; ``datatype``/``alias`` come from the birth.

    Raises :class:`CommandWireError` if the value does not fit the datatype (a request the
    checker allowed always fits; this guards callers that skip it).
    """
    metric = command_metric(request, datatype=datatype, alias=alias, timestamp_ms=now_ms, template=template)
    topic = command_topic(request)
    try:
        data = encode_payload(Payload(metrics=[metric], timestamp=now_ms), topic.message_type)
    except SparkplugError as exc:
        raise CommandWireError(f"{request.target_label}: {exc}") from None
    return str(topic), data


# ------------------------------------------------------------------------------------- decode


def decode_command(topic: str, data: bytes, resolve: Resolver) -> list[WireCommand | WireRejection]:
    """Every metric of an NCMD/DCMD as a command or a rejection (one bad metric spoils no other).

    ``resolve`` is the edge's own birth table for the device (alias → name, datatype). A payload
    that is not Sparkplug at all, or a topic that is not NCMD/DCMD, raises :class:`CommandWireError`.
    ``Node Control/*`` metrics are Sparkplug's own, not commands: they are skipped here.
    """
    try:
        parsed = parse_node_topic(topic)
    except SparkplugError as exc:
        raise CommandWireError(str(exc)) from None
    if not parsed.message_type.is_command:
        raise CommandWireError(f"topic {topic!r} is {parsed.message_type}, not NCMD or DCMD")
    try:
        payload = decode_payload(data, parsed.message_type, resolve)
    except SparkplugError as exc:
        raise CommandWireError(f"{topic}: {exc}") from None
    out: list[WireCommand | WireRejection] = []
    for metric in payload.metrics:
        if metric.name is not None and metric.name.startswith(NODE_CONTROL_PREFIX):
            continue  # Sparkplug's own control (rebirth, next server): the edge session handles it
        try:
            out.append(WireCommand(command_from_metric(parsed, metric), metric))
        except CommandWireError as exc:
            out.append(WireRejection(_label(metric), _command_id_of(metric), str(exc)))
    return out


def command_from_metric(topic: SparkplugTopic, metric: Metric) -> CommandRequest:
    """Rebuild the request from the topic, the decoded metric and its envelope; check the hash."""
    label = _label(metric)
    props = metric.properties or {}
    if P_SCHEMA not in props:
        raise CommandWireError(f"metric {label!r} carries no uns-hub command envelope; writes must come "
                               "through the allowlist path")
    schema = _prop(props, P_SCHEMA, DataType.String, label)
    if schema != COMMAND_SCHEMA:
        raise CommandWireError(f"metric {label!r}: command schema {schema!r} is not {COMMAND_SCHEMA!r}")
    if metric.name is None:
        raise CommandWireError(f"metric alias {metric.alias} has no name in the birth")
    if metric.is_null:
        raise CommandWireError(f"metric {label!r}: a command needs a value, got null")
    value: Any = metric.value
    if isinstance(value, Template):
        try:
            value = request_value(value)
        except TemplateMemberError as exc:
            raise CommandWireError(f"metric {label!r}: {exc}") from None
    if P_VALUE_ENCODING in props:
        encoding = _prop(props, P_VALUE_ENCODING, DataType.String, label)
        if encoding != JSON_ENCODING or not isinstance(value, str):
            raise CommandWireError(f"metric {label!r}: valueEncoding {encoding!r} needs a String value of JSON")
        try:
            value = json_guard.loads(value)
        except json_guard.JsonTooDeepError as exc:
            raise CommandWireError(f"metric {label!r}: method arguments: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CommandWireError(f"metric {label!r}: method arguments are not JSON: {exc}") from None
    try:
        request = CommandRequest(
            command_id=_prop(props, P_ID, DataType.String, label),
            group_id=topic.group_id, edge_node_id=topic.edge_node_id, device_id=topic.device_id,
            metric=metric.name, value=value,
            requested_by=_prop(props, P_REQUESTED_BY, DataType.String, label),
            reason=_prop(props, P_REASON, DataType.String, label),
            created_at_ms=_prop(props, P_CREATED, DataType.DateTime, label),
            valid_until_ms=_prop(props, P_VALID_UNTIL, DataType.DateTime, label),
            signatures=tuple(_signatures(props, label)),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CommandWireError(f"metric {label!r}: envelope field {'.'.join(map(str, first['loc']))}: "
                               f"{first['msg']}") from None
    sent_hash = _prop(props, P_HASH, DataType.String, label)
    if sent_hash != request.command_hash():
        raise CommandWireError(f"metric {label!r}: command hash {sent_hash[:16]}… does not match the command "
                               f"received ({request.command_hash()[:16]}…): altered in transit or re-addressed")
    return request


def _signatures(props: PropertySet, label: str) -> list[Signature]:
    prop = props.get(P_SIGNATURES)
    if prop is None or prop.type is not DataType.PropertySetList or prop.is_null:
        raise CommandWireError(f"metric {label!r}: property {P_SIGNATURES!r} must be a PropertySetList")
    out = []
    for index, item in enumerate(prop.value):
        where = f"{label} signature {index}"
        fields = {attr: _prop(item, key, ptype, where) for key, attr, ptype in _SIG_FIELDS}
        try:
            out.append(Signature(**fields))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CommandWireError(f"metric {where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return out


def _prop(props: PropertySet, key: str, datatype: DataType, label: str) -> Any:
    prop = props.get(key)
    if prop is None or prop.is_null:
        raise CommandWireError(f"metric {label!r}: envelope property {key!r} is missing")
    if prop.type is not datatype:
        raise CommandWireError(f"metric {label!r}: envelope property {key!r} is {prop.type.name}, "
                               f"expected {datatype.name}")
    return prop.value


def _label(metric: Metric) -> str:
    return metric.name or f"alias {metric.alias}"


def _command_id_of(metric: Metric) -> uuid.UUID | None:
    prop = (metric.properties or {}).get(P_ID)
    try:
        return uuid.UUID(prop.value) if prop is not None and isinstance(prop.value, str) else None
    except ValueError:
        return None


# ------------------------------------------------------------------------------------ results


def result_topic(mapping: NamespaceMapping, request: CommandRequest | SparkplugTopic,
                 command_id: uuid.UUID | None = None) -> str:
    """``<line>/_cmd/result/<command_id>`` of the line the command's node/device belongs to."""
    equipment = mapping.from_sparkplug(request.group_id, request.edge_node_id, request.device_id)
    cid = command_id if command_id is not None else getattr(request, "command_id", None)
    if cid is None:
        raise ValueError("result_topic needs a command id")
    return mapping.line_topic(equipment.line, CMD, "result", str(cid))


def result_filter(mapping: NamespaceMapping, group_id: str, edge_node_id: str, device_id: str | None = None) -> str:
    """The subscription a requester holds for results of one line: ``<line>/_cmd/result/+``."""
    equipment = mapping.from_sparkplug(group_id, edge_node_id, device_id)
    return mapping.line_topic(equipment.line, CMD, "result", "+")


__all__ = [
    "CommandWireError", "WireCommand", "WireRejection", "command_from_metric", "command_metric", "command_topic",
    "decode_command", "encode_command", "envelope", "result_filter", "result_topic",
]
