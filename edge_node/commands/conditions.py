"""Acknowledge and Confirm of an OPC UA condition as a command: what to call, what the answers mean.

No I/O (the executor, :mod:`edge_node.commands.executor`, makes the calls). A ``condition`` rule
(:class:`uns.commands.allowlist.ConditionCall`) names a condition; the edge turns the command into
the Part 9 call, on the condition's own node as ObjectId (the ConditionId of its events):

=============  ==============  ======================================  ==========================
method         MethodId        arguments                               read back (true = done)
=============  ==============  ======================================  ==========================
acknowledge    ``i=9111``      EventId (ByteString), comment (LText)   ``AckedState/Id``
confirm        ``i=9113``      EventId (ByteString), comment (LText)   ``ConfirmedState/Id``
=============  ==============  ======================================  ==========================

The EventId is the **newest** one the edge received for the condition (the same one its
``Alarms/<Name>/EventId`` metric states): an acknowledgement answers what the operator saw.
A Good call is not enough: the command is confirmed only when the state variable reads back
true (a server such as node-opcua answers Good to a second Acknowledge and changes nothing).

The server's refusals keep their meaning in the result's reason code (and the raw StatusCode in
``write_status_code``): BadConditionBranchAlreadyAcked → ``already_acked`` (also an inactive,
acknowledged condition), BadConditionBranchAlreadyConfirmed → ``already_confirmed``,
BadEventIdUnknown → ``unknown_event_id``, BadNodeIdUnknown / BadNodeIdInvalid / BadMethodInvalid →
``unknown_condition``; any other Bad status is ``write_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua

from uns.commands.allowlist import ConditionCall
from uns.commands.model import Outcome, ReasonCode

from .logic import Observed, is_good, poll_verdict

#: Part 9 method ids of AcknowledgeableConditionType, by rule method
METHOD_IDS: dict[str, str] = {"acknowledge": f"i={ua.ObjectIds.AcknowledgeableConditionType_Acknowledge}",
                              "confirm": f"i={ua.ObjectIds.AcknowledgeableConditionType_Confirm}"}
#: the state variable that says the method took effect, as a browse path below the condition
STATE_PATHS: dict[str, tuple[str, str]] = {"acknowledge": ("AckedState", "Id"),
                                           "confirm": ("ConfirmedState", "Id")}
_S = ua.StatusCodes
#: a refusal by the server, by StatusCode, and the reason code it becomes
REFUSALS: dict[int, ReasonCode] = {
    _S.BadConditionBranchAlreadyAcked: ReasonCode.ALREADY_ACKED,
    _S.BadConditionBranchAlreadyConfirmed: ReasonCode.ALREADY_CONFIRMED,
    _S.BadEventIdUnknown: ReasonCode.UNKNOWN_EVENT_ID,
    _S.BadNodeIdUnknown: ReasonCode.UNKNOWN_CONDITION,
    _S.BadNodeIdInvalid: ReasonCode.UNKNOWN_CONDITION,
    _S.BadMethodInvalid: ReasonCode.UNKNOWN_CONDITION,
}


@dataclass(frozen=True, slots=True)
class ConditionTarget:
    """The call a condition command makes: on which node, with which EventId and comment."""

    condition_id: str
    method_id: str
    event_id: bytes
    comment: str
    state_path: tuple[str, str]


def target(call: ConditionCall, condition_id: str, event_id_hex: str, comment: str) -> ConditionTarget | str:
    """The call for the condition's newest event, or why there is none (the edge saw no event of it)."""
    if not condition_id or not event_id_hex:
        return (f"no event of condition {call.name} was received since the edge connected (never raised, or the "
                f"server does not report it): nothing to {call.method}")
    try:
        event_id = bytes.fromhex(event_id_hex)
    except ValueError:
        return f"condition {call.name}: the EventId received ({event_id_hex!r}) is not hex"
    return ConditionTarget(condition_id, METHOD_IDS[call.method], event_id, comment, STATE_PATHS[call.method])


def arguments(tgt: ConditionTarget) -> list[ua.Variant]:
    """EventId and Comment, as Part 9 declares them."""
    return [ua.Variant(tgt.event_id, ua.VariantType.ByteString),
            ua.Variant(ua.LocalizedText(tgt.comment), ua.VariantType.LocalizedText)]


def call_verdict(call: ConditionCall, condition_id: str, status: int) -> tuple[ReasonCode, str] | None:
    """None when the call was answered Good (then the read-back decides), else the refusal."""
    if is_good(status):
        return None
    reason = REFUSALS.get(status, ReasonCode.WRITE_FAILED)
    name = ua.StatusCode(status).name
    return reason, f"{call.method.capitalize()} of {call.name} ({condition_id}) answered {name} (0x{status:08X})"


def readback_done(observed: Observed) -> bool:
    return is_good(observed.status_code) and observed.value is True


def readback_verdict(call: ConditionCall, readbacks: list[Observed],
                     timeout_s: float) -> tuple[Outcome, ReasonCode | None, str]:
    """Confirmed when the state variable read back true; else a mismatch (read false) or a timeout."""
    path = "/".join(STATE_PATHS[call.method])
    return poll_verdict(
        readbacks, readback_done, f"{call.method} of {call.name}: {path} read back true",
        lambda last: f"{call.method} of {call.name} answered Good but {path} read back {last.value!r} "
                     f"for {timeout_s:g} s",
        f"no Good read-back of {path} of {call.name} within {timeout_s:g} s")


__all__ = ["METHOD_IDS", "REFUSALS", "STATE_PATHS", "ConditionTarget", "arguments", "call_verdict", "readback_done",
           "readback_verdict", "target"]
