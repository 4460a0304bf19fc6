"""The edge-side command executor: the last line of defence before a PLC write.

Whatever the host sent, a DCMD/NCMD metric reaches OPC UA only through here (docs/architecture.md, "Commands"):

1. **intake** (one task, arrival order): rebuild the :class:`CommandRequest` from the topic the
   edge received on and the metric's envelope (:func:`uns.commands.wire.command_from_metric`);
   a malformed metric is refused (``malformed_command``) and audited, never raised. Its command
   id is then recorded as taken in (:meth:`edge_node.commands.journal.CommandJournal.claim`,
   durable): an id seen before is refused ``replayed``, so a captured DCMD/NCMD published again
   never writes twice, also across a restart. Then the
   allowlist check with ``consume=False`` and the machine state read fresh from OPC UA. A refusal
   is audited and answered on ``<line>/_cmd/result/<id>`` at once, also while OPC UA is down.
2. **queue** (one ordered queue per OPC UA endpoint): while the endpoint's command session is
   down the command waits (audited ``queued``); it expires with outcome ``expired`` when its
   deadline passes, or runs in arrival order after the reconnect.
3. **execute** (one task per endpoint, so commands to one server never overlap): check again with
   ``consume=True`` (state re-read; rate-limit slot taken; ``expired`` if too late), read the old
   value, write it with the rule's datatype (or call the method, atomically), and poll the
   read-back until it matches within tolerance or the rule's timeout passes
   (:mod:`edge_node.commands.logic` decides what the reads mean).
4. **report** (:mod:`edge_node.commands.reporting`, the one place that writes about a command):
   the :class:`CommandResult` JSON goes to the ``_cmd`` result topic (QoS 1) and every step into
   the edge's own hash-chained audit log (the edge is the one writer of its chain). The new
   value reaches the UNS as DDATA through the normal subscription path.

**Restart safety.** A command that has to wait (its endpoint is down, or others are ahead of it)
is written to the command journal (:mod:`edge_node.commands.journal`, SQLite in the data dir)
before its ``queued`` audit record, and removed once its final record and result are out. At
start-up (:meth:`CommandExecutor.start`) the journal and the audit chain are compared
(:mod:`edge_node.commands.recovery`): journaled commands resume in arrival order through the
normal checks (``expired`` if overdue), and every other open command gets a final ``failed``
record and a result, saying whether the write may have happened. Persisting the queue, rather
than only closing what was open, keeps the promise a ``queued`` record makes: the command still
runs when OPC UA comes back, restart or not.

**Undecodable commands.** An NCMD/DCMD the Sparkplug session could not decode reaches
:meth:`CommandExecutor.handle_rejected` (wired with
:meth:`edge_node.mqtt_client.SparkplugEdgeClient.set_rejected_command_handler`) and is refused
like any other command: audited, and answered on the result topic when its envelope names a
command id (:mod:`edge_node.commands.rejects` decides what is said).

**Template members.** A command to a member of a template instance (an allowlist ``member:`` rule,
:mod:`uns.commands.template_members`) is checked against the members the edge publishes for that
instance (``template_members``: ``unknown_member`` for one it lacks, before the allowlist), then
the member is read, written and read back by :meth:`OpcUaWriter.read_member` /
:meth:`OpcUaWriter.write_member` and audited like any write.

The write session is dedicated (:class:`edge_node.commands.opcua_writer.OpcUaWriter`, one per endpoint),
so telemetry load does not delay a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uns.aio import cancel_and_wait, raise_if_cancelling
from uns.audit.chain import AuditLog
from uns.commands.allowlist import LineRules, WritableMetric
from uns.commands.checker import AllowlistChecker, Decision
from uns.commands.model import CommandRequest, Outcome, ReasonCode
from uns.commands.template_members import member_value
from uns.commands.wire import P_ID, CommandWireError, command_from_metric
from uns.isa95 import NamespaceMapping
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, now_ms
from uns.sparkplug.topic import MessageType, SparkplugTopic

from ..config import OpcUaEndpointConfig
from ..session_events import RejectedCommand
from . import conditions as condition_calls
from .edge_client import ResultPublisher
from .journal import CommandJournal, CommandJournalError, JournalEntry
from .logic import (
    Observed,
    Pending,
    deadline_ms,
    is_good,
    method_arguments,
    readback_matches,
    readback_node,
    readback_verdict,
    replay_decision,
    seen_keep_until_ms,
)
from .opcua_writer import BAD_NO_MATCH, OpcUaWriter, ReadResult, WriterDisconnectedError, to_variant
from .recovery import (
    Close,
    Discard,
    Republish,
    Resume,
    Step,
    plan_recovery,
    read_trails,
)
from .rejects import details_of, reason_for, rejected_metrics
from .reporting import CommandReporter, ExecutorStats

log = logging.getLogger("edge_node.executor")  # its name before edge_node.commands: log filters use it

#: read-back polling: first read at once, then these gaps (s), the last one repeated
READBACK_GAPS_S: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.05)


#: (device id, ConditionName) -> (ConditionId, newest EventId as hex), None for a condition the edge does not know
ConditionLookup = Callable[[str | None, str], tuple[str, str] | None]
#: (device id, metric) -> the members (path -> datatype) the edge publishes for that template instance, or None
TemplateMembersLookup = Callable[[str | None, str], dict[str, DataType] | None]


@dataclass(frozen=True, slots=True)
class StateNode:
    """Where a Sparkplug state metric is read in OPC UA: endpoint name and node id string."""

    endpoint: str
    node_id: str


@dataclass(frozen=True, slots=True)
class _Arrived:
    """Metrics of one decoded NCMD/DCMD, as the session delivered them."""

    device_id: str | None
    metrics: list[Metric]
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class _Undecodable:
    rejected: RejectedCommand
    received_at_ms: int


@dataclass(frozen=True, slots=True)
class _Recovered:
    """A start-up step for a command the previous run left open."""

    step: Step


_IntakeItem = _Arrived | _Undecodable | _Recovered


class CommandExecutor:
    """``await start()``; give :meth:`handle` to the Sparkplug client; ``await stop()``."""

    def __init__(self, *, group_id: str, edge_node_id: str, mapping: NamespaceMapping, checker: AllowlistChecker,
                 audit: AuditLog, publisher: ResultPublisher, endpoints: Sequence[OpcUaEndpointConfig],
                 data_dir: Path, endpoint_of_device: Callable[[str | None], str],
                 state_nodes: dict[tuple[str | None, str], StateNode], clock: Callable[[], int] = now_ms,
                 writers: dict[str, OpcUaWriter] | None = None, journal_path: Path | None = None,
                 conditions: ConditionLookup | None = None,
                 template_members: TemplateMembersLookup | None = None) -> None:
        if not endpoints:
            raise ValueError("the command executor needs at least one OPC UA endpoint")
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.checker = checker
        self.audit = audit
        self.endpoints = {ep.name: ep for ep in endpoints}
        self.endpoint_of_device = endpoint_of_device
        self.state_nodes = state_nodes
        #: (device id, ConditionName) -> (ConditionId, newest EventId hex) the edge received; for condition rules
        self.conditions = conditions
        #: the members of a template instance metric as the edge publishes it; for member rules
        self.template_members = template_members
        self.clock = clock
        self.stats = ExecutorStats()
        self.writers = writers or {ep.name: OpcUaWriter(ep, data_dir) for ep in endpoints}
        self.journal_path = journal_path or data_dir / "commands" / "journal.db"
        self.report = CommandReporter(group_id=group_id, edge_node_id=edge_node_id, mapping=mapping,
                                      endpoint_urls={ep.name: ep.url for ep in endpoints}, audit=audit,
                                      publisher=publisher, stats=self.stats, clock=clock)
        self._intake: asyncio.Queue[_IntakeItem] = asyncio.Queue()
        self._queues: dict[str, deque[Pending]] = {name: deque() for name in self.endpoints}
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.endpoints}
        self._tasks: list[asyncio.Task[None]] = []
        #: the command sessions' supervisors, stopped after the loops that use them (see stop)
        self._session_tasks: list[asyncio.Task[None]] = []

    @property
    def journal(self) -> CommandJournal | None:
        """The open command journal while running (its writes go through :attr:`report`)."""
        return self.report.journal

    # -- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, plan what the last run left open (queued first), then run."""
        journal = self.report.journal = await asyncio.to_thread(CommandJournal, self.journal_path)
        for step in await asyncio.to_thread(self._recovery_plan, journal):
            self._intake.put_nowait(_Recovered(step))
        loop = asyncio.get_running_loop()
        for name, writer in self.writers.items():
            self._session_tasks.append(loop.create_task(writer.run(), name=f"cmd-session-{name}"))
            self._tasks.append(loop.create_task(self._endpoint_loop(name), name=f"cmd-exec-{name}"))
        self._tasks.append(loop.create_task(self._intake_loop(), name="cmd-intake"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)  # cancelled again if one swallows the first cancel (uns.aio)
        # the sessions only once no loop uses them: a session closed under a read-back in flight
        # made it end early, judged "mismatch" on the reads so far (a false final result); ended
        # by the cancel, the command stays open and the next start closes it as "may be written"
        sessions, self._session_tasks = self._session_tasks, []
        await cancel_and_wait(sessions)
        journal, self.report.journal = self.report.journal, None
        if journal is not None:  # what still waits stays in it, for the next start
            await asyncio.to_thread(journal.close)

    def _recovery_plan(self, journal: CommandJournal) -> list[Step]:
        entries, bad_rows = journal.load()
        trails = read_trails(self.audit.path, {str(e.request.command_id) for e in entries})
        steps = plan_recovery(entries, bad_rows, trails)
        if steps:
            log.warning("the last run left %d command(s) open: %s", len(steps),
                        ", ".join(type(s).__name__.lower() for s in steps))
        return steps

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every command session is up (tests, readiness)."""
        await asyncio.wait_for(asyncio.gather(*(w.connected.wait() for w in self.writers.values())), timeout)

    def pending(self) -> int:
        return self._intake.qsize() + sum(len(q) for q in self._queues.values())

    # -- entry point ----------------------------------------------------------------------------

    async def handle(self, device_id: str | None, metrics: list[Metric]) -> None:
        """The Sparkplug client's command handler. Enqueues before any await: arrival order is kept."""
        self._intake.put_nowait(_Arrived(device_id, list(metrics), self.clock()))

    async def handle_rejected(self, rejected: RejectedCommand) -> None:
        """The client's rejected-command handler: an NCMD/DCMD its session could not decode."""
        self._intake.put_nowait(_Undecodable(rejected, self.clock()))

    # -- intake ---------------------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        while True:
            raise_if_cancelling()  # a cancel an awaited library call swallowed ends the loop here
            item = await self._intake.get()
            try:
                if isinstance(item, _Arrived):
                    await self._arrived(item)
                elif isinstance(item, _Undecodable):
                    await self._refuse_undecodable(item.rejected, item.received_at_ms)
                else:
                    await self._recover(item.step)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug here must not stop later commands
                log.exception("command intake failed for %s", type(item).__name__)

    async def _arrived(self, item: _Arrived) -> None:
        kind = MessageType.NCMD if item.device_id is None else MessageType.DCMD
        topic = SparkplugTopic(self.group_id, kind, self.edge_node_id, item.device_id)
        for metric in item.metrics:
            try:
                await self._admit(topic, metric, item.received_at_ms)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad metric must not stop the others
                log.exception("command intake failed for %s", metric.name or metric.alias)

    async def _admit(self, topic: SparkplugTopic, metric: Metric, received: int) -> None:
        self.stats.received += 1
        try:
            request = command_from_metric(topic, metric)
        except CommandWireError as exc:
            await self._refuse_malformed(topic, metric, str(exc), received)
            return
        await self._accept(request, received)

    async def _accept(self, request: CommandRequest, received: int, resumed: JournalEntry | None = None) -> None:
        """Check, then queue (journaled if it has to wait) or refuse. ``resumed``: from the journal."""
        journal_id = resumed.id if resumed is not None else None
        found = self.checker.rule_for(request)
        if not await self._first_sighting(request, found, received, resumed):
            return
        endpoint = self.endpoint_of_device(request.device_id)
        if self._queues[endpoint] or not self.writers[endpoint].connected.is_set():
            state, state_note, unavailable = await self._machine_state(request)
        else:  # idle endpoint: execution follows at once and reads the state with the old value
            state, state_note, unavailable = None, "read at execution", True
        decision = self.checker.check(request, state, self.clock(), consume=False, members=self._members(request))
        if found is None or not decision.allowed:
            rule = found[1] if found else None
            # the state is read (again) at execution, e.g. once OPC UA is back: judge it then
            deferrable = found is not None and decision.reason is ReasonCode.WRONG_MACHINE_STATE and unavailable
            if not deferrable:
                await self._finish_refused(request, decision, rule, received, state_note, journal_id=journal_id)
                return
        assert found is not None
        line, rule = found
        pending = Pending(request=request, rule=rule, line=line, endpoint=endpoint, received_at_ms=received,
                          deadline_ms=deadline_ms(request, rule), decision=decision, journal_id=journal_id)
        if resumed is not None:
            await self.report.queued(pending, f"edge restarted; resumed from the command journal (received {received})")
        elif not self.writers[endpoint].connected.is_set():
            await self.report.queued(pending, f"OPC UA endpoint {endpoint!r} is down")
        elif self._queues[endpoint]:  # waits behind others: durable, but not audited as queued
            pending.journal_id = await self.report.journal_add(request, received)
        self._queues[endpoint].append(pending)
        self._wake[endpoint].set()

    async def _first_sighting(self, request: CommandRequest, found: tuple[LineRules, WritableMetric] | None,
                              received: int, resumed: JournalEntry | None) -> bool:
        """Record the command id as taken in (durably, before any check or write); False, after an
        audited ``replayed`` refusal, when the edge has seen the id before.

        A command resumed from the journal was recorded when it first arrived; it is recorded
        again (a no-op, or the first time for a journal written before the ledger existed) and
        always goes on. On a disk error the command goes on too (counted and logged), like the
        journal's own policy: refusing every command because a file can't be written would stop
        the plant's commands for a fault the operator sees in the log and the counters.
        """
        journal = self.journal
        if journal is None:
            return True
        rule = found[1] if found else None
        now = self.clock()
        try:
            seen = await asyncio.to_thread(journal.claim, request, seen_keep_until_ms(request, rule, now), now)
        except CommandJournalError as exc:
            self.stats.journal_errors += 1
            log.error("%s; replays of this command can't be refused", exc)
            return True
        if seen is None or resumed is not None:
            return True
        self.stats.replayed += 1
        decision = replay_decision(request, seen.command_hash, seen.first_seen_at_ms, self.checker.allowlist.version,
                                   found[0].rule_id(found[1]) if found else None)
        log.warning("command %s refused: %s", request.command_id, decision.message)
        await self._finish_refused(request, decision, rule, received, None)
        return False

    def _state_where(self, request: CommandRequest) -> tuple[StateNode | None, str | None]:
        """Where the rule's state metric is read (None: not needed, or not an edge tag, then the note)."""
        source = self.checker.state_source(request)
        if source is None:
            return None, None
        where = self.state_nodes.get((source.device_id, source.metric))
        if where is None or where.endpoint not in self.writers:
            return None, f"state metric {source.metric!r} of {source.device_id or 'the node'} is not an edge tag"
        return where, None

    @staticmethod
    def _state_of(where: StateNode, read: ReadResult) -> tuple[str | int | None, str | None]:
        if not is_good(read.status_code) or isinstance(read.value, bool) or not isinstance(read.value, (int, str)):
            return None, f"state read of {where.node_id} gave status 0x{read.status_code:08X}"
        return read.value, None

    async def _machine_state(self, request: CommandRequest,
                             ) -> tuple[str | int | None, str | None, bool]:
        """``(raw state, note, unavailable)``: the state for the checker (None if not needed, unknown
        or unreadable), why it is missing, and whether that is because its OPC UA session is down."""
        where, note = self._state_where(request)
        if where is None:
            return None, note, False
        writer = self.writers[where.endpoint]
        if not writer.connected.is_set():
            return None, f"OPC UA endpoint {where.endpoint!r} is down", True
        try:
            read = await writer.read(where.node_id)
        except WriterDisconnectedError as exc:
            return None, str(exc), True
        return (*self._state_of(where, read), False)

    # -- per-endpoint execution -----------------------------------------------------------------

    async def _endpoint_loop(self, name: str) -> None:
        queue, wake, writer = self._queues[name], self._wake[name], self.writers[name]
        while True:
            raise_if_cancelling()  # a cancel an awaited OPC UA call swallowed ends the loop here
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            if not writer.connected.is_set():
                await self._wait_or_expire(name)
                continue
            pending = queue[0]
            try:
                await self._execute(pending, writer)
            except WriterDisconnectedError as exc:
                log.warning("command %s waits: %s", pending.request.command_id, exc)
                # it was taken for an idle, connected endpoint: now it waits like a queued one
                await self.report.queued(pending, f"OPC UA session lost before the write ({exc})")
                if writer.connected.is_set():  # another endpoint (the state's) is down: do not spin
                    await asyncio.sleep(0.05)
                continue  # nothing was written: it stays at the head and runs after the reconnect
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - report the failure, keep the queue going
                log.exception("command %s failed unexpectedly", pending.request.command_id)
                await self.report.finished(pending, Outcome.FAILED, ReasonCode.WRITE_FAILED, f"edge error: {exc}")
            queue.popleft()

    async def _wait_or_expire(self, name: str) -> None:
        """While the endpoint is down: wake at the next deadline, expire what is overdue, in order."""
        queue, writer = self._queues[name], self.writers[name]
        now = self.clock()
        next_deadline = min(p.deadline_ms for p in queue)
        timeout = min(1.0, max(0.01, (next_deadline - now + 1) / 1000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(writer.connected.wait(), timeout)
        now = self.clock()
        for pending in [p for p in queue if now > p.deadline_ms]:
            queue.remove(pending)
            self.stats.expired += 1
            await self.report.finished(pending, Outcome.EXPIRED, ReasonCode.EXPIRED,
                               f"expired while OPC UA endpoint {name!r} was down (deadline {pending.deadline_ms}, "
                               f"{now - pending.deadline_ms} ms ago)")

    async def _execute(self, pending: Pending, writer: OpcUaWriter) -> None:
        request, rule = pending.request, pending.rule
        where, state_note = self._state_where(request)
        state: str | int | None = None
        unavailable = False
        if rule.write is not None and rule.member is not None:
            pending.old = _observed(await writer.read_member(rule.write.node_id, rule.member))
            if where is not None:
                state, state_note, unavailable = await self._machine_state(request)
        elif rule.write is not None and (where is None or where.endpoint == pending.endpoint):
            # one Read for the state and the old value: a busy server answers each round trip slowly
            nodes = [rule.write.node_id] + ([where.node_id] if where is not None else [])
            reads = await writer.read_many(nodes)
            pending.old = _observed(reads[0])
            if where is not None:
                state, state_note = self._state_of(where, reads[1])
        elif where is not None:
            state, state_note, unavailable = await self._machine_state(request)
        decision = self.checker.check(request, state, self.clock(), consume=True, members=self._members(request))
        if not decision.allowed:
            if decision.reason is ReasonCode.WRONG_MACHINE_STATE and unavailable:
                raise WriterDisconnectedError(state_note or "machine state unavailable")
            await self._finish_refused(request, decision, rule, pending.received_at_ms, state_note, pending)
            return
        pending.decision = decision
        if rule.call is not None:
            await self._call(pending, writer)
            return
        if rule.condition is not None:
            await self._condition_call(pending, writer)
            return
        if rule.member is not None:
            await self._write_member(pending, writer)
            return
        assert rule.write is not None
        node = rule.write.node_id
        readback = readback_node(rule)
        assert readback is not None
        await self._write_and_read_back(pending, request.value, node,
                                        lambda: writer.write(node, to_variant(rule.sparkplug_type, request.value)),
                                        lambda: writer.read(readback))

    async def _write_and_read_back(self, pending: Pending, value: Any, what: str, write: Callable[[], Awaitable[int]],
                                   read: Callable[[], Awaitable[ReadResult]]) -> None:
        """Write, audit ``written``, then poll the read-back of ``value`` until it matches or times out."""
        rule = pending.rule
        try:
            status = await write()
        except WriterDisconnectedError as exc:  # the write may or may not have reached the server
            raise_if_cancelling()  # stopping: left open, the next start closes it as "may be written"
            await self.report.finished(pending, Outcome.FAILED, ReasonCode.WRITE_FAILED,
                               f"session lost during the write; the value may or may not be written: {exc}")
            return
        pending.write_status_code = status
        pending.written_at_ms = self.clock()
        await self.report.written(pending)
        if not is_good(status):
            await self.report.finished(pending, Outcome.FAILED, ReasonCode.WRITE_FAILED,
                               f"OPC UA write of {what} answered 0x{status:08X}")
            return
        await self._poll(pending, rule, read, lambda observed: readback_matches(rule, value, observed))
        outcome, reason, message = readback_verdict(rule, value, pending.readbacks)
        await self.report.finished(pending, outcome, reason, message)

    def _members(self, request: CommandRequest) -> dict[str, DataType] | None:
        return self.template_members(request.device_id, request.metric) if self.template_members else None

    async def _write_member(self, pending: Pending, writer: OpcUaWriter) -> None:
        """One member of a template instance: written, read back like any write (the member's value)."""
        request, rule = pending.request, pending.rule
        assert rule.write is not None and rule.member is not None
        node, member, value = rule.write.node_id, rule.member, member_value(request.value)
        if pending.old is not None and pending.old.status_code == BAD_NO_MATCH:
            await self.report.finished(pending, Outcome.REFUSED, ReasonCode.UNKNOWN_MEMBER,
                                       f"OPC UA node {node} has no member {member!r}")
            return
        readback = readback_node(rule)
        assert readback is not None
        await self._write_and_read_back(pending, value, f"member {member!r} of {node}",
                                        lambda: writer.write_member(node, member, rule.sparkplug_type, value),
                                        lambda: writer.read_member(readback, member))

    async def _call(self, pending: Pending, writer: OpcUaWriter) -> None:
        request, rule = pending.request, pending.rule
        assert rule.call is not None and isinstance(request.value, dict)
        args = [to_variant(datatype, value) for value, datatype in method_arguments(rule, request.value)]
        status = await self._method(pending, writer, rule.call.object_node_id, rule.call.method_node_id, args,
                                    "the method call")
        if status is None:
            return
        if is_good(status):
            await self.report.finished(pending, Outcome.CONFIRMED, None, "method call returned Good")
        else:
            await self.report.finished(pending, Outcome.FAILED, ReasonCode.WRITE_FAILED,
                               f"OPC UA call of {rule.call.method_node_id} answered 0x{status:08X}")

    async def _method(self, pending: Pending, writer: OpcUaWriter, object_id: str, method_id: str,
                      args: list[Any], what: str) -> int | None:
        """Call, record the ``written`` step; its StatusCode, or None once a lost session failed the command."""
        try:
            status = await writer.call(object_id, method_id, args)
        except WriterDisconnectedError as exc:
            await self.report.finished(pending, Outcome.FAILED, ReasonCode.WRITE_FAILED,
                                       f"session lost during {what}; it may or may not have run: {exc}")
            return None
        pending.write_status_code = status
        pending.written_at_ms = self.clock()
        await self.report.written(pending)
        return status

    async def _condition_call(self, pending: Pending, writer: OpcUaWriter) -> None:
        """Acknowledge / Confirm with the newest EventId, then read the state variable back
        (:mod:`edge_node.commands.conditions` decides what each answer means)."""
        request, rule = pending.request, pending.rule
        call = rule.condition
        assert call is not None and isinstance(request.value, str)
        known = self.conditions(request.device_id, call.name) if self.conditions is not None else None
        tgt = (condition_calls.target(call, *known, request.value) if known is not None else
               f"condition {call.name} of {request.device_id or 'the node'} is not in the edge's alarms config")
        if isinstance(tgt, str):
            await self.report.finished(pending, Outcome.REFUSED, ReasonCode.UNKNOWN_CONDITION, tgt)
            return
        pending.old = _observed(await writer.read_path(tgt.condition_id, tgt.state_path))
        status = await self._method(pending, writer, tgt.condition_id, tgt.method_id, condition_calls.arguments(tgt),
                                    f"the {call.method} of {call.name} with EventId {tgt.event_id.hex()}")
        if status is None:
            return
        refused = condition_calls.call_verdict(call, tgt.condition_id, status)
        if refused is not None:
            reason, message = refused
            outcome = Outcome.FAILED if reason is ReasonCode.WRITE_FAILED else Outcome.REFUSED
            await self.report.finished(pending, outcome, reason, f"{message}; EventId {tgt.event_id.hex()}")
            return
        await self._poll(pending, rule, lambda: writer.read_path(tgt.condition_id, tgt.state_path),
                         condition_calls.readback_done)
        outcome, reason, message = condition_calls.readback_verdict(call, pending.readbacks, rule.readback_timeout_s)
        await self.report.finished(pending, outcome, reason,
                                   f"{message} (condition {tgt.condition_id}, EventId {tgt.event_id.hex()})")

    async def _poll(self, pending: Pending, rule: WritableMetric, read: Callable[[], Awaitable[ReadResult]],
                    done: Callable[[Observed], bool]) -> None:
        """Read until ``done`` or the rule's read-back timeout; every read lands in ``pending.readbacks``."""
        request = pending.request
        loop = asyncio.get_running_loop()
        until = loop.time() + rule.readback_timeout_s
        for attempt in itertools.count():
            gap = READBACK_GAPS_S[min(attempt, len(READBACK_GAPS_S) - 1)]
            if gap:
                await asyncio.sleep(min(gap, max(0.0, until - loop.time())))
            try:
                observed = _observed(await read())
            except WriterDisconnectedError as exc:
                raise_if_cancelling()  # the edge is stopping: no verdict on a cut-off read-back
                pending.readbacks.append(Observed(None, 0x80050000, None))  # BadCommunicationError
                log.warning("read-back of %s lost: %s", request.command_id, exc)
                break
            pending.readbacks.append(observed)
            if done(observed) or loop.time() >= until:
                break

    # -- refusals ------------------------------------------------------------------------------

    async def _finish_refused(self, request: CommandRequest, decision: Decision, rule: WritableMetric | None,
                              received: int, state_note: str | None, pending: Pending | None = None, *,
                              journal_id: int | None = None) -> None:
        if state_note and decision.reason is ReasonCode.WRONG_MACHINE_STATE:
            decision = decision.model_copy(update={"message": f"{decision.message} ({state_note})"})
        endpoint = pending.endpoint if pending else self.endpoint_of_device(request.device_id)
        await self.report.refused(request, decision, rule, received, endpoint, pending, journal_id=journal_id)

    async def _refuse_malformed(self, topic: SparkplugTopic, metric: Metric, message: str, received: int) -> None:
        self.stats.malformed += 1
        await self.report.unreadable(topic.device_id, metric.name or f"alias {metric.alias}", _command_id_of(metric),
                                     ReasonCode.MALFORMED_COMMAND, message, received,
                                     {"value": _jsonable(metric.value)})

    async def _refuse_undecodable(self, rejected: RejectedCommand, received: int) -> None:
        """One audited refusal per command in a message the session could not decode."""
        self.stats.undecodable += 1
        reason = reason_for(rejected.fault)
        details = details_of(rejected)
        for found in rejected_metrics(rejected.payload):
            self.stats.received += 1
            if reason is ReasonCode.MALFORMED_COMMAND:
                self.stats.malformed += 1
            else:
                self.stats.refused += 1
            await self.report.unreadable(rejected.device_id, found.label, found.command_id, reason,
                                         rejected.error, received, details)

    # -- start-up recovery -----------------------------------------------------------------------

    async def _recover(self, step: Step) -> None:
        if isinstance(step, Resume):
            self.stats.resumed += 1
            await self._accept(step.entry.request, step.entry.received_at_ms, resumed=step.entry)
        elif isinstance(step, Close):
            await self.report.close_open(step)
        elif isinstance(step, Republish):
            await self.report.republish(step)
        elif isinstance(step, Discard):
            log.error("command journal row %d (command %s) is unreadable (%s); dropped, its open audit record "
                      "is closed instead", step.row.id, step.row.command_id, step.row.error)
            await self.report.journal_remove(step.row.id)


def _observed(read: ReadResult) -> Observed:
    return Observed(read.value, read.status_code, read.source_ts_ms)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


def _command_id_of(metric: Metric) -> uuid.UUID | None:
    """The command id a malformed metric's envelope names, if it names a valid one (to answer it)."""
    prop = (metric.properties or {}).get(P_ID)
    if prop is None or not isinstance(prop.value, str):
        return None
    try:
        return uuid.UUID(prop.value)
    except ValueError:
        return None


__all__ = ["READBACK_GAPS_S", "CommandExecutor", "ConditionLookup", "StateNode"]
