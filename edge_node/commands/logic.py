"""The command executor's decisions, with no I/O: what to write, when a command is dead, what a
read-back means, and what the result says.

Kept apart from the async shell (:mod:`edge_node.commands.executor`) so every verdict the edge can give
is a plain function of its inputs, testable without an OPC UA server or a broker:

* a command's **deadline** is the same one the checker applies (``valid_until_ms``, capped at
  ``created_at_ms + rule.validity_s``), so a command waiting in the offline queue expires exactly
  when the checker would refuse it as expired;
* a **write status** that is not Good (Good: top two bits 00) fails the
  command with ``write_failed`` and the raw StatusCode;
* a **read-back** confirms when it is Good and matches the request within the rule's tolerance
  (:func:`uns.commands.values.values_match`); when the timeout passes, the last Good read-back
  that did not match makes it a ``mismatch``, no Good read-back at all a ``timeout``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uns.commands.allowlist import LineRules, WritableMetric
from uns.commands.checker import DEFAULT_VALIDITY_S, Decision
from uns.commands.model import CommandRequest, CommandResult, Outcome, ReasonCode
from uns.commands.values import values_match
from uns.sparkplug.datatypes import DataType


def is_good(status_code: int | None) -> bool:
    """OPC UA severity Good: bits 31–30 are 00."""
    return status_code is not None and status_code >> 30 == 0


def deadline_ms(request: CommandRequest, rule: WritableMetric | None) -> int:
    """When the command is void: its own deadline, capped by the rule's validity."""
    limit_s = rule.validity_s if rule is not None else DEFAULT_VALIDITY_S
    return min(request.valid_until_ms, request.created_at_ms + int(limit_s * 1000))


def seen_keep_until_ms(request: CommandRequest, rule: WritableMetric | None, now: int) -> int:
    """How long the edge must remember a command id so a replay can't run it again.

    Until its :func:`deadline_ms` (after that the checks refuse it ``expired``), but never longer
    than one validity window from now: ``created_at_ms`` and ``valid_until_ms`` are the peer's
    numbers, and the ledger of seen ids must stay bounded whatever a peer sends.
    """
    limit_s = rule.validity_s if rule is not None else DEFAULT_VALIDITY_S
    return min(deadline_ms(request, rule), now + int(limit_s * 1000))


def replay_decision(request: CommandRequest, first_hash: str, first_seen_ms: int, allowlist_version: str,
                    rule_id: str | None) -> Decision:
    """The refusal of a command id the edge took in before (reason ``replayed``)."""
    same = first_hash == request.command_hash()
    what = "the same command" if same else "a different command under the same id"
    return Decision(allowed=False, reason=ReasonCode.REPLAYED, command_id=request.command_id,
                    command_hash=request.command_hash(), rule_id=rule_id, allowlist_version=allowlist_version,
                    message=f"command {request.command_id} was already received at {first_seen_ms} "
                            f"({what}); a command runs at most once, this copy is not executed")


@dataclass(frozen=True, slots=True)
class Observed:
    """A value read from OPC UA (old value or read-back).

    Mirrors :class:`edge_node.commands.opcua_writer.ReadResult`.
    """

    value: Any
    status_code: int
    source_ts_ms: int | None


@dataclass(slots=True)
class Pending:
    """A command that passed the first check and waits for (or is in) execution."""

    request: CommandRequest
    rule: WritableMetric
    line: LineRules
    endpoint: str
    received_at_ms: int
    deadline_ms: int
    decision: Decision
    queued: bool = False
    old: Observed | None = None
    write_status_code: int | None = None
    written_at_ms: int | None = None
    readbacks: list[Observed] = field(default_factory=list)
    #: its row in the command journal while it waits (:mod:`edge_node.commands.journal`), else None
    journal_id: int | None = None


def readback_node(rule: WritableMetric) -> str | None:
    """The node whose value confirms a write (the written node unless the rule names another)."""
    if rule.write is None:
        return None
    return rule.write.readback_node_id or rule.write.node_id


def method_arguments(rule: WritableMetric, value: dict[str, Any]) -> list[tuple[Any, DataType]]:
    """Method arguments in declared order with their datatypes (the checker already typed them)."""
    assert rule.call is not None
    return [(value[arg.name], arg.sparkplug_type) for arg in rule.call.args]


def readback_matches(rule: WritableMetric, requested: Any, observed: Observed) -> bool:
    return is_good(observed.status_code) and values_match(rule.sparkplug_type, requested, observed.value,
                                                          rule.tolerance)


def readback_verdict(rule: WritableMetric, requested: Any,
                     readbacks: list[Observed]) -> tuple[Outcome, ReasonCode | None, str]:
    """The outcome of a finished read-back phase (see the module docstring)."""
    return poll_verdict(
        readbacks, lambda observed: readback_matches(rule, requested, observed), "read-back matches the request",
        lambda last: (f"read-back {last.value!r} does not match the requested {requested!r} within tolerance "
                      f"{rule.tolerance:g} after {rule.readback_timeout_s:g} s"),
        f"no Good read-back within {rule.readback_timeout_s:g} s")


def poll_verdict(readbacks: list[Observed], done: Callable[[Observed], bool], confirmed: str,
                 mismatch: Callable[[Observed], str], timeout: str) -> tuple[Outcome, ReasonCode | None, str]:
    """Confirmed when the last read is ``done``; else a mismatch (the last Good read, told by
    ``mismatch``) or a timeout (no Good read at all; ``timeout`` plus the last status)."""
    if readbacks and done(readbacks[-1]):
        return Outcome.CONFIRMED, None, confirmed
    good = [r for r in readbacks if is_good(r.status_code)]
    if good:
        return Outcome.MISMATCH, ReasonCode.READBACK_MISMATCH, mismatch(good[-1])
    last_status = readbacks[-1].status_code if readbacks else None
    detail = f"last status 0x{last_status:08X}" if last_status is not None else "no answer"
    return Outcome.TIMEOUT, ReasonCode.READBACK_TIMEOUT, f"{timeout} ({detail})"


def result_of(request: CommandRequest, outcome: Outcome, reason: ReasonCode | None, message: str, *,
              received_at_ms: int, completed_at_ms: int, pending: Pending | None = None) -> CommandResult:
    """The :class:`CommandResult` of a command, filled from what execution observed so far."""
    old = pending.old if pending else None
    last = pending.readbacks[-1] if pending and pending.readbacks else None
    return CommandResult(
        command_id=request.command_id, outcome=outcome, reason=reason, message=message,
        command_hash=request.command_hash(), group_id=request.group_id, edge_node_id=request.edge_node_id,
        device_id=request.device_id, metric=request.metric,
        old_value=old.value if old else None, requested_value=request.value,
        readback_value=last.value if last else None,
        old_status_code=old.status_code if old else None,
        write_status_code=pending.write_status_code if pending else None,
        readback_status_code=last.status_code if last else None,
        old_source_ts_ms=old.source_ts_ms if old else None,
        readback_source_ts_ms=last.source_ts_ms if last else None,
        received_at_ms=received_at_ms, written_at_ms=pending.written_at_ms if pending else None,
        completed_at_ms=completed_at_ms,
    )


def refusal_outcome(decision: Decision) -> Outcome:
    """A checker refusal is ``expired`` when it is about time, ``refused`` otherwise."""
    return Outcome.EXPIRED if decision.reason is ReasonCode.EXPIRED else Outcome.REFUSED


def malformed_result(command_id: uuid.UUID, *, group_id: str, edge_node_id: str, device_id: str | None,
                     metric: str, message: str, received_at_ms: int, completed_at_ms: int,
                     reason: ReasonCode = ReasonCode.MALFORMED_COMMAND) -> CommandResult:
    """The answer to a CMD metric that could not be read as a command but named its command id
    (``not_allowlisted`` when it addressed a device or metric this edge never declared)."""
    return CommandResult(command_id=command_id, outcome=Outcome.REFUSED, reason=reason,
                         message=message, group_id=group_id, edge_node_id=edge_node_id, device_id=device_id,
                         metric=metric, received_at_ms=received_at_ms, completed_at_ms=completed_at_ms)


__all__ = ["Observed", "Pending", "deadline_ms", "is_good", "malformed_result", "method_arguments", "poll_verdict",
           "readback_matches", "readback_node", "readback_verdict", "refusal_outcome", "result_of"]
