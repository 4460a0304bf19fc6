"""What the edge says about an NCMD/DCMD its Sparkplug session could not decode, with no I/O.

The session (:class:`edge_node.session.EdgeSession`, rule 12) hands such a message on as a
:class:`~edge_node.session_events.RejectedCommand`: the topic, the raw bytes and why. The
executor must audit the refusal and, when it can, answer the requester on the ``_cmd`` result
topic (a denied command is never silent). This module decides what it
says, so every verdict is a plain function testable without a broker:

* the **reason code**: a command for a device, or a metric name, that no birth of this node
  declared cannot be on the allowlist (a command may only address a born metric), so it is
  ``not_allowlisted``; bytes that are not Sparkplug, a metric with a datatype other than its
  birth's, or an alias this node never gave (tck-id-payloads-alias-data-cmd-requirement: a CMD
  uses the birth's alias) make the command unreadable, so ``malformed_command``;
* **which commands** the message held: the session could not decode it, so the protobuf is read
  here field by field, without the birth table, only to find each metric's label and the
  ``commandId`` of its envelope; one audit record per metric (one per message when nothing in it
  can be read), and a result for each metric that names a valid command id.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from uns.commands.model import ReasonCode
from uns.commands.wire import NODE_CONTROL_PREFIX, P_ID
from uns.sparkplug import sparkplug_b_pb2 as pb

from .session_events import CommandFault, RejectedCommand

#: the audit label of a message nothing could be read from
WHOLE_MESSAGE = "(unreadable payload)"

_REASONS: dict[CommandFault, ReasonCode] = {
    CommandFault.MALFORMED: ReasonCode.MALFORMED_COMMAND,
    CommandFault.UNKNOWN_ALIAS: ReasonCode.MALFORMED_COMMAND,
    CommandFault.UNKNOWN_METRIC: ReasonCode.NOT_ALLOWLISTED,
    CommandFault.UNKNOWN_DEVICE: ReasonCode.NOT_ALLOWLISTED,
}


@dataclass(frozen=True, slots=True)
class RejectedMetric:
    """One command in a rejected message: its label for the audit trail and its id, if readable."""

    label: str
    command_id: uuid.UUID | None


def reason_for(fault: CommandFault) -> ReasonCode:
    return _REASONS[fault]


def rejected_metrics(payload: bytes) -> list[RejectedMetric]:
    """The commands in a rejected payload (``Node Control/*`` skipped); one unlabelled entry if none.

    Never raises: these are a peer's bytes, and whatever cannot be read is simply not named.
    """
    try:
        raw = pb.Payload.FromString(payload)
        out = [RejectedMetric(_label(m), _command_id(m)) for m in raw.metrics if not _is_control(m)]
    except Exception:  # noqa: BLE001 - DecodeError, and upb raises plain errors for some inputs
        out = []
    return out or [RejectedMetric(WHOLE_MESSAGE, None)]


def details_of(rejected: RejectedCommand) -> dict[str, Any]:
    """Audit ``details``: enough to find the exact message again (its hash and size) and why."""
    return {"fault": rejected.fault.value, "topic": rejected.topic, "payload_size": len(rejected.payload),
            "payload_bytes_sha256": hashlib.sha256(rejected.payload).hexdigest()}


def _label(metric: Any) -> str:
    name = _text(metric.name) if metric.name else None
    if name:
        return name
    return f"alias {metric.alias}" if metric.HasField("alias") else "(metric without name or alias)"


def _is_control(metric: Any) -> bool:
    name = _text(metric.name) if metric.name else None
    return bool(name) and name.startswith(NODE_CONTROL_PREFIX)  # type: ignore[union-attr]


def _command_id(metric: Any) -> uuid.UUID | None:
    if not metric.HasField("properties"):
        return None
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):  # lenient: a broken payload may differ
        if _text(key) == P_ID and value.WhichOneof("value") == "string_value":
            try:
                return uuid.UUID(_text(value.string_value))
            except ValueError:
                return None
    return None


def _text(value: Any) -> str:
    """upb hands a proto2 string holding invalid UTF-8 back as bytes: show it, do not trust it."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


__all__ = ["WHOLE_MESSAGE", "RejectedMetric", "details_of", "reason_for", "rejected_metrics"]
