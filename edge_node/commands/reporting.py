"""What the edge says about each command: audit records, published results, journal entries.

Kept apart from :mod:`edge_node.commands.executor` so the executor reads as "check, write, read
back, report", and so every record the edge writes about a command is made here, in one place:

* the **audit chain** (:class:`uns.audit.chain.AuditLog`; the edge is the one writer of its
  chain): ``queued`` and ``written`` steps, refusals, and one final record per command;
* the **result** (:class:`uns.commands.model.CommandResult` JSON, QoS 1) on
  ``<line>/_cmd/result/<command_id>``, also for commands that could not be read as a request or
  that the last run left open;
* the **command journal** (:mod:`edge_node.commands.journal`): a command is added before it
  waits and removed once its final record and result are out.

None of these three raises into the executor: a failed append, publish or journal write is
counted in :class:`ExecutorStats` and logged, and the command goes on (the audit chain holds the
result anyway; a restart closes or republishes what the journal still lists). Audit appends and
journal writes (SQLite, fsync) run in a worker thread so the event loop keeps pumping telemetry
while the disk syncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from uns.audit.chain import AuditLog
from uns.audit.record import AuditEntry, AuditEvent, AuditTarget
from uns.commands import audit_events
from uns.commands.allowlist import WritableMetric
from uns.commands.audit_events import AuditContext
from uns.commands.checker import Decision
from uns.commands.model import CommandRequest, CommandResult, Outcome, ReasonCode
from uns.commands.wire import result_topic
from uns.isa95 import NamespaceMapping
from uns.sparkplug.topic import MessageType, SparkplugTopic

from .edge_client import ResultPublisher
from .journal import CommandJournal, CommandJournalError
from .logic import Pending, malformed_result, refusal_outcome, result_of
from .recovery import Close, Republish, closing_entry, result_from

log = logging.getLogger("edge_node.executor")  # the executor logged these lines; filters and alerts use it


@dataclass
class ExecutorStats:
    received: int = 0
    malformed: int = 0
    #: NCMD/DCMD messages the session could not decode (each audited and, if possible, answered)
    undecodable: int = 0
    refused: int = 0
    queued: int = 0
    expired: int = 0
    #: commands refused because their id had been taken in before (a replayed DCMD/NCMD)
    replayed: int = 0
    confirmed: int = 0
    mismatch: int = 0
    timeout: int = 0
    failed: int = 0
    results_unpublished: int = 0
    audit_errors: int = 0
    #: commands the previous run left waiting, queued again at start-up
    resumed: int = 0
    #: commands the previous run left open, closed at start-up with a final record
    closed_at_startup: int = 0
    #: journal writes that failed (the command still runs; a restart would close it as failed)
    journal_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


#: the counter a final outcome of an executed command adds to
_OUTCOME_COUNTERS = {Outcome.CONFIRMED: "confirmed", Outcome.MISMATCH: "mismatch", Outcome.TIMEOUT: "timeout",
                     Outcome.FAILED: "failed", Outcome.REFUSED: "refused"}


class CommandReporter:
    """Audit, answer and journal the commands of one edge node; owned by the executor.

    ``journal`` is set by the executor while it runs (None before start and after stop: then
    nothing is journaled, as before the journal existed).
    """

    def __init__(self, *, group_id: str, edge_node_id: str, mapping: NamespaceMapping,
                 endpoint_urls: Mapping[str, str], audit: AuditLog, publisher: ResultPublisher,
                 stats: ExecutorStats, clock: Callable[[], int]) -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.mapping = mapping
        self.endpoint_urls = endpoint_urls
        self.audit = audit
        self.publisher = publisher
        self.stats = stats
        self.clock = clock
        self.journal: CommandJournal | None = None
        self.source = f"edge:{group_id}/{edge_node_id}"

    # -- steps of a command that goes on ---------------------------------------------------------

    async def queued(self, pending: Pending, why: str) -> None:
        """The command has to wait for OPC UA: journaled, then audited ``queued`` (each once)."""
        if pending.journal_id is None:
            pending.journal_id = await self.journal_add(pending.request, pending.received_at_ms)
        if pending.queued:
            return
        pending.queued = True
        self.stats.queued += 1
        request, rule = pending.request, pending.rule
        await self._append(audit_events.command_entry(
            AuditEvent.QUEUED, request, self._context(pending.endpoint, request), rule=rule,
            allowlist_rule_id=pending.line.rule_id(rule), allowlist_version=pending.decision.allowlist_version,
            actor_user_id=request.requested_by, message=f"{why}; queued until {pending.deadline_ms}"))

    async def written(self, pending: Pending) -> None:
        """The ``written`` step: the write (or method call) was answered, with its status code."""
        await self._append(self._step_entry(AuditEvent.WRITTEN, pending))

    # -- final records: audit, result, out of the journal ----------------------------------------

    async def refused(self, request: CommandRequest, decision: Decision, rule: WritableMetric | None,
                      received: int, endpoint: str, pending: Pending | None = None, *,
                      journal_id: int | None = None) -> None:
        """A command the checks turned down (refused, or expired before it ran)."""
        outcome = refusal_outcome(decision)
        if outcome is Outcome.EXPIRED:
            self.stats.expired += 1
        if outcome is Outcome.REFUSED:
            self.stats.refused += 1
            await self._append(audit_events.refused(request, decision, self._context(endpoint, request), rule))
        result = result_of(request, outcome, decision.reason, decision.message, received_at_ms=received,
                           completed_at_ms=self.clock(), pending=pending)
        if outcome is not Outcome.REFUSED:
            await self._append(audit_events.result_entry(request, result, self._context(endpoint, request), rule))
        await self._publish(request, result)
        await self.journal_remove(pending.journal_id if pending is not None else journal_id)

    async def finished(self, pending: Pending, outcome: Outcome, reason: ReasonCode | None, message: str) -> None:
        """A command that was taken for execution: its final record under the rule that allowed it."""
        request = pending.request
        counter = _OUTCOME_COUNTERS.get(outcome)
        if counter:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        result = result_of(request, outcome, reason, message, received_at_ms=pending.received_at_ms,
                           completed_at_ms=self.clock(), pending=pending)
        entry = audit_events.result_entry(request, result, self._context(pending.endpoint, request), pending.rule)
        entry = entry.model_copy(update={"allowlist_rule_id": pending.decision.rule_id,
                                         "allowlist_version": pending.decision.allowlist_version})
        await self._append(entry)
        await self._publish(request, result)
        await self.journal_remove(pending.journal_id)

    async def unreadable(self, device_id: str | None, label: str, command_id: uuid.UUID | None,
                         reason: ReasonCode, message: str, received: int, details: dict[str, Any]) -> None:
        """Audit (and answer, if it names its id) a command that could not be read as a request."""
        target = AuditTarget(group_id=self.group_id, edge_node_id=self.edge_node_id, device_id=device_id,
                             metric=label)
        await self._append(AuditEntry(
            event=AuditEvent.REFUSED, command_id=str(command_id) if command_id else None, source=self.source,
            target=target, reason_code=reason.value, message=message, outcome=Outcome.REFUSED.value,
            details=details))
        log.warning("refused unreadable command %s (%s): %s", label, reason.value, message)
        if command_id is None:
            return
        result = malformed_result(command_id, group_id=self.group_id, edge_node_id=self.edge_node_id,
                                  device_id=device_id, metric=label, message=message, received_at_ms=received,
                                  completed_at_ms=self.clock(), reason=reason)
        await self._publish_result(result)

    # -- what the last run left open -------------------------------------------------------------

    async def republish(self, step: Republish) -> None:
        """The command finished before the restart: its result again, then out of the journal."""
        log.warning("command %s finished before the restart; publishing its result again", step.trail.command_id)
        result = result_from(step.trail, step.trail.last, completed_at_ms=int(step.trail.last.get("ts_ms") or 0),
                             received_at_ms=step.entry.received_at_ms)
        if result is not None:
            await self._publish_result(result)
        await self.journal_remove(step.entry.id)

    async def close_open(self, step: Close) -> None:
        """A final ``failed`` record and result for a command the last run left open."""
        self.stats.closed_at_startup += 1
        self.stats.failed += 1
        trail = step.trail
        entry = closing_entry(trail, step.message, self.source)
        log.warning("closing command %s left %s by the last run: %s", trail.command_id, trail.last_event,
                    step.message)
        await self._append(entry)
        result = result_from(trail, entry.model_dump(mode="json"), completed_at_ms=self.clock(),
                             received_at_ms=step.entry.received_at_ms if step.entry else None)
        if result is not None:
            await self._publish_result(result)
        else:
            self.stats.results_unpublished += 1
            log.error("no result can be built for command %s from its audit record", trail.command_id)
        if step.entry is not None:
            await self.journal_remove(step.entry.id)

    # -- the journal -----------------------------------------------------------------------------

    async def journal_add(self, request: CommandRequest, received: int) -> int | None:
        """Durable before the command waits; on a disk error it waits anyway (counted, logged: a
        restart would then close it as failed from its ``queued`` record instead of resuming it)."""
        journal = self.journal
        if journal is None:
            return None
        try:
            return await asyncio.to_thread(journal.add, request, received)
        except CommandJournalError as exc:
            self.stats.journal_errors += 1
            log.error("%s; it is kept in memory only", exc)
            return None

    async def journal_remove(self, journal_id: int | None) -> None:
        journal = self.journal
        if journal is None or journal_id is None:
            return
        try:
            await asyncio.to_thread(journal.remove, journal_id)
        except CommandJournalError as exc:  # a restart publishes its result again: harmless
            self.stats.journal_errors += 1
            log.error("%s", exc)

    # -- records and results ---------------------------------------------------------------------

    def _context(self, endpoint: str | None = None, request: CommandRequest | None = None) -> AuditContext:
        isa95 = None
        if request is not None:
            with contextlib.suppress(ValueError):
                isa95 = self.mapping.from_sparkplug(request.group_id, request.edge_node_id, request.device_id).topic
        url = self.endpoint_urls.get(endpoint) if endpoint is not None else None
        return AuditContext(source=self.source, isa95_path=isa95, opcua_endpoint=url)

    def _step_entry(self, event: AuditEvent, pending: Pending) -> AuditEntry:
        request = pending.request
        first = next((s for s in request.signatures if s.user_id == request.requested_by), None)
        second = next((s for s in request.signatures if s.user_id != request.requested_by), None)
        old = pending.old
        return audit_events.command_entry(
            event, request, self._context(pending.endpoint, request), rule=pending.rule, decision=pending.decision,
            actor_user_id=request.requested_by, actor_printed_name=first.full_name if first else None,
            signature_meaning=first.meaning.value if first else None, auth_method=audit_events.SIGNATURE_AUTH,
            second_signer_user_id=second.user_id if second else None,
            second_signer_printed_name=second.full_name if second else None,
            second_signer_meaning=second.meaning.value if second else None,
            signatures=[audit_events.signature_record(s) for s in request.signatures],
            old_value=old.value if old else None, old_status_code=old.status_code if old else None,
            old_source_ts_ms=old.source_ts_ms if old else None, write_status_code=pending.write_status_code,
        )

    async def _publish_result(self, result: CommandResult) -> None:
        """Publish a result that has no :class:`CommandRequest` (unreadable or recovered commands)."""
        kind = MessageType.NCMD if result.device_id is None else MessageType.DCMD
        try:
            topic = result_topic(self.mapping, SparkplugTopic(result.group_id, kind, result.edge_node_id,
                                                              result.device_id), result.command_id)
        except ValueError as exc:
            self.stats.results_unpublished += 1
            log.error("no result topic for command %s: %s", result.command_id, exc)
            return
        await self._publish_raw(topic, result)

    async def _publish(self, request: CommandRequest, result: CommandResult) -> None:
        try:
            topic = result_topic(self.mapping, request)
        except ValueError as exc:
            self.stats.results_unpublished += 1
            log.error("no result topic for %s: %s", request.target_label, exc)
            return
        await self._publish_raw(topic, result)

    async def _publish_raw(self, topic: str, result: CommandResult) -> None:
        try:
            sent = await self.publisher.publish_json(topic, result.to_bytes(), qos=1)
        except Exception as exc:  # noqa: BLE001 - the audit chain holds the result anyway
            log.warning("result of %s not published: %s", result.command_id, exc)
            sent = False
        if not sent:
            self.stats.results_unpublished += 1

    async def _append(self, entry: AuditEntry) -> None:
        try:
            await asyncio.to_thread(self.audit.append, entry)
        except Exception:  # noqa: BLE001 - counted and logged loudly; the command result still goes out
            self.stats.audit_errors += 1
            log.exception("audit append failed for command %s (%s)", entry.command_id, entry.event)


__all__ = ["CommandReporter", "ExecutorStats"]
