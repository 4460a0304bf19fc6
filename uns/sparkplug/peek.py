"""Lenient looks into a Sparkplug payload that did not (or need not) decode in full.

The strict decoder (:mod:`.decode`) needs the birth table and refuses a payload on the first
fault. Some callers only need one field of a peer's bytes and must never fail on them: the edge
matches the ``seq`` of its own NDATA/DDATA echoed back by the broker (every data message: a hot
path, so this is one protobuf parse and nothing else), the host reports the ``seq`` of a message
whose metrics it could not decode, and the edge names the commands of an NCMD/DCMD it rejected.
These functions return ``None`` for bytes that are not a Sparkplug payload and never raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import sparkplug_b_pb2 as pb


@dataclass(frozen=True, slots=True)
class PeekedMetric:
    """What can be read of one metric without a birth: its name, alias and string properties.

    ``name`` is None when absent or empty; text that is not valid UTF-8 is shown with
    replacement characters (it is for a log or an audit label, never for matching a birth).
    ``string_properties`` holds the String-typed property values, the first one of each key.
    """

    name: str | None
    alias: int | None
    string_properties: dict[str, str] = field(default_factory=dict)


def peek_seq(payload: bytes) -> int | None:
    """The ``seq`` field of a payload, or None if it has none or is not a Sparkplug payload."""
    try:
        raw = pb.Payload.FromString(payload)
    except Exception:  # noqa: BLE001 - DecodeError, and upb raises plain errors for some inputs
        return None
    return raw.seq if raw.HasField("seq") else None


def peek_metrics(payload: bytes) -> list[PeekedMetric] | None:
    """Each metric's name, alias and string properties, or None if the bytes are not a payload."""
    try:
        raw = pb.Payload.FromString(payload)
        return [_peek_metric(metric) for metric in raw.metrics]
    except Exception:  # noqa: BLE001 - DecodeError, and upb raises plain errors for some inputs
        return None


def _peek_metric(metric: Any) -> PeekedMetric:
    name = _text(metric.name) if metric.name else None
    alias = metric.alias if metric.HasField("alias") else None
    strings: dict[str, str] = {}
    if metric.HasField("properties"):
        props = metric.properties
        for key, value in zip(props.keys, props.values, strict=False):  # a broken payload may differ
            if value.WhichOneof("value") == "string_value":
                strings.setdefault(_text(key), _text(value.string_value))
    return PeekedMetric(name or None, alias, strings)


def _text(value: Any) -> str:
    """upb hands a proto2 string holding invalid UTF-8 back as bytes: show it, do not trust it."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


__all__ = ["PeekedMetric", "peek_metrics", "peek_seq"]
