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
* **which commands** the message held: the session could not decode it, so the payload is peeked
  at (:func:`uns.sparkplug.peek.peek_metrics`), without the birth table, only to find each
  metric's label and the ``commandId`` of its envelope; one audit record per metric (one per message when nothing in it
  can be read), and a result for each metric that names a valid command id.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from uns.commands.model import ReasonCode
from uns.commands.wire import P_ID
from uns.sparkplug.control import NODE_CONTROL_PREFIX
from uns.sparkplug.peek import PeekedMetric, peek_metrics

from ..session_events import CommandFault, RejectedCommand

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
    out = [RejectedMetric(_label(m), _command_id(m)) for m in peek_metrics(payload) or ()
           if not _is_control(m)]
    return out or [RejectedMetric(WHOLE_MESSAGE, None)]


def details_of(rejected: RejectedCommand) -> dict[str, Any]:
    """Audit ``details``: enough to find the exact message again (its hash and size) and why."""
    return {"fault": rejected.fault.value, "topic": rejected.topic, "payload_size": len(rejected.payload),
            "payload_bytes_sha256": hashlib.sha256(rejected.payload).hexdigest()}


def _label(metric: PeekedMetric) -> str:
    if metric.name:
        return metric.name
    return f"alias {metric.alias}" if metric.alias is not None else "(metric without name or alias)"


def _is_control(metric: PeekedMetric) -> bool:
    return metric.name is not None and metric.name.startswith(NODE_CONTROL_PREFIX)


def _command_id(metric: PeekedMetric) -> uuid.UUID | None:
    text = metric.string_properties.get(P_ID)
    if text is None:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


__all__ = ["WHOLE_MESSAGE", "RejectedMetric", "details_of", "reason_for", "rejected_metrics"]
