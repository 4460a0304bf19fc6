"""The adapter as the REST API sees it: one method per question a handler asks.

Why a separate, narrow interface: the handlers in :mod:`mes_adapter.api` used to reach two levels
into :class:`~mes_adapter.service.AdapterService` (``svc.context.batch_window``, ``svc.host.model``,
``svc.outbox.entries``, ``svc.config.mes.line``, ...), so a change to how the service holds its parts
broke routers, and each router decided for itself when to flush ingest. :class:`ServiceApi` names what
the API may read and the few things it may do; the handlers see nothing else
(``tests/adapter/test_api_reach.py`` fails if a module under ``api/`` reaches ``svc.<part>.<x>``).

Read-your-writes: ingest buffers records and writes them in batches (:class:`~mes_adapter.production.
ingest.Ingest`). A query of stored records first writes what is buffered (:meth:`_records_caught_up`),
so a value the caller has just seen live (``/api/tags``) or that arrived before the batch ended is in
the answer. Every record query goes through that one method.

The methods delegate unchanged; they add no behaviour of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from mes_adapter.alarms import AlarmEvent, AlarmException, BatchHold, Shelf
from mes_adapter.auth import Principal, Session
from mes_adapter.commands.conditions import ConditionMethod, condition_draft
from mes_adapter.commands.service import CommandDraft, CommandRecord
from mes_adapter.confirmations.outbox import DeliveryStatus, OutboxEntry
from mes_adapter.confirmations.service import batch_intervals
from mes_adapter.context import AssertionOutcome, BatchWindow, ContextAssertion
from mes_adapter.context.audited import api_actor
from mes_adapter.context.reconcile import Reconciliation
from mes_adapter.crew import CrewPresence
from mes_adapter.crew import Outcome as CrewOutcome
from mes_adapter.downtime.config import ReasonCode
from mes_adapter.downtime.losses import BucketLoss
from mes_adapter.downtime.service import Stop
from mes_adapter.episodes import QualityEpisode
from mes_adapter.genealogy import Consumption, LotLink, ProducedLot, Trace
from mes_adapter.genealogy.service import Outcome as LotOutcome
from mes_adapter.history import HistoryQueries
from mes_adapter.host import MetricState, NodeView
from mes_adapter.oee.compute import Interval, OeeResult
from mes_adapter.oee.shifts import ShiftCalendar, ShiftWindow
from mes_adapter.orders import Order, OrderIn, OrderStatus
from mes_adapter.production.quantities import Quantities
from mes_adapter.production.records import BoundRecord, Record
from mes_adapter.quality import Disposition, DispositionRequest, DispositionSplit
from mes_adapter.quality.service import DispositionState
from mes_adapter.service import AdapterService
from mes_adapter.status import data_status
from mes_adapter.status.data_status import DataStatus
from mes_adapter.status.live_feed import Event, sse_stream
from mes_adapter.status.node_stats import NodeTally
from mes_adapter.timefmt import now_ms
from uns.commands.allowlist import Allowlist
from uns.commands.model import CommandRequest, Signature
from uns.isa95 import EquipmentPath


class ServiceApi:
    """What the REST handlers may ask of a running :class:`AdapterService` (one level, no reaching in)."""

    def __init__(self, service: AdapterService) -> None:
        self._svc = service

    # -- history (the historian) -------------------------------------------------------------

    def history(self) -> HistoryQueries | None:
        """The historian's queries; None when ``historian.enabled`` is false."""
        return self._svc.history_queries

    # -- callers and health ------------------------------------------------------------------

    def authenticate(self, authorization: str | None, query_token: str | None = None,
                     session_id: str | None = None) -> Principal:
        """The caller of a request (bearer header, or ``?token=`` for EventSource, or else the login
        session cookie); AuthError if none. A presented token wins: machines never use sessions."""
        if authorization or query_token or not session_id:
            return self._svc.tokens.authenticate(authorization, query_token)
        return self._svc.sessions.principal(session_id, now_ms())

    def logins_enabled(self) -> bool:
        return bool(self._svc.sessions)

    def login(self, user_id: str, password: str) -> tuple[str, Session]:
        """Blocking (argon2): call it off the event loop."""
        return self._svc.sessions.login(user_id, password, now_ms())

    def logout(self, session_id: str) -> bool:
        return self._svc.sessions.logout(session_id)

    def readiness(self) -> dict[str, str]:
        return self._svc.readiness()

    # -- the plant, live ---------------------------------------------------------------------

    def lines(self) -> list[str]:
        return self._svc.lines()

    def configured_lines(self) -> set[str]:
        """Lines with an MES configuration (counters, state)."""
        return {line.line for line in self._svc.config.mes.lines}

    def is_configured(self, line: str) -> bool:
        return self._svc.config.mes.line(line) is not None

    def line_signals(self, line: str) -> dict[str, tuple[str | None, str]]:
        """The configured state and speed tags of ``line`` as ``{"state"|"speed": (cell, metric)}``."""
        config = self._svc.config.mes.line(line)
        if config is None:
            return {}
        return {kind: (signal.cell, signal.metric) for kind, signal in (("state", config.state),
                                                                         ("speed", config.speed))
                if signal is not None}

    def data_status(self, line: str) -> DataStatus:
        return self._svc.data_status(line)

    def data_statuses(self, lines: list[str]) -> dict[str, DataStatus]:
        return self._svc.data_statuses(lines)

    def nodes(self) -> list[NodeView]:
        return list(self._svc.host.model.nodes())

    def nodes_of_line(self, line: str) -> list[NodeView]:
        return data_status.nodes_of_line(self._svc.host.model, self._svc.equipment_of, line)

    def node_tally(self, group_id: str, edge_node_id: str) -> NodeTally | None:
        return self._svc.node_stats.get((group_id, edge_node_id))

    def tag_states(self) -> list[MetricState]:
        """Every metric of the live model (the API shows those with a UNS topic)."""
        return list(self._svc.host.model.metrics())

    def topic_of(self, state: MetricState) -> str | None:
        return self._svc.topic_of(state)

    def equipment_of(self, group_id: str, edge_node_id: str, device_id: str | None) -> EquipmentPath | None:
        return self._svc.equipment_of(group_id, edge_node_id, device_id)

    def quarantined_nodes(self) -> list[tuple[str, str]]:
        """(group_id, edge_node_id) of the nodes the host quarantined for birth churn."""
        return list(self._svc.host.tracker.quarantined())

    def release_node(self, group_id: str, edge_node_id: str, now_ms: int) -> bool:
        """Let a quarantined node back in; False if it was not quarantined."""
        return self._svc.host.tracker.release(group_id, edge_node_id, now_ms)

    def live_events(self, snapshot: Callable[[], Event]) -> AsyncIterator[bytes]:
        """An SSE stream: subscribed first, then ``snapshot()`` taken, so no change falls in between."""
        client = self._svc.feed.subscribe()
        return sse_stream(client, self._svc.feed.closing, [snapshot()])

    # -- stored records (read-your-writes) ---------------------------------------------------

    def _records_caught_up(self) -> None:
        """Write what ingest still buffers, so a record query sees every value ingested so far."""
        self._svc.ingest.flush()

    def tag_records(self, line: str, from_ms: int, to_ms: int, *, metric: str, cell: str,
                    limit: int) -> list[Record]:
        self._records_caught_up()
        return self._svc.record_store.query(line, from_ms, to_ms, metric=metric, cell=cell, limit=limit)

    def batch_records(self, line: str, batch_id: str, *, metric: str | None, limit: int) -> list[BoundRecord]:
        self._records_caught_up()
        return self._svc.records.query_batch(line, batch_id, metric=metric, limit=limit)

    def line_records(self, line: str, from_ms: int, to_ms: int, *, metric: str | None, cell: str | None,
                     limit: int) -> list[BoundRecord]:
        """A line's records in a time range, each with the context active at its source time."""
        self._records_caught_up()
        return self._svc.records.query(line, from_ms, to_ms, metric=metric, cell=cell, limit=limit)

    def check_owns(self, line: str) -> None:
        """Raise ``LineNotOwnedError`` (422) for a line of another instance's group (writes only)."""
        self._svc.check_owns(line)

    def owns_line(self, line: str) -> bool:
        """This instance counts and contextualizes ``line`` (its group is in ``host.groups``, or there is none)."""
        return self._svc.config.owns_line(line)

    def line_group(self, line: str) -> str:
        """The Sparkplug group of ``line`` (``host.mapping``)."""
        return self._svc.config.line_group(line)

    def episodes(self, line: str, from_ms: int | None, to_ms: int | None, *, batch_id: str | None,
                 limit: int) -> list[QualityEpisode]:
        return self._svc.episodes.store.query(line, from_ms, to_ms, batch_id=batch_id, limit=limit)

    def active_alarms(self, line: str | None) -> list[AlarmEvent]:
        """The newest journal row of every condition whose alarm is active or still retained."""
        return [e for e in self._svc.alarms.journal.latest(line) if e.active or e.retain]

    def alarm_history(self, *, line: str | None, batch_id: str | None, phase: str | None, condition: str | None,
                      from_ms: int | None, to_ms: int | None, limit: int) -> list[AlarmEvent]:
        return self._svc.alarms.journal.query(line=line, batch_id=batch_id, phase=phase, condition=condition,
                                              from_ms=from_ms, to_ms=to_ms, limit=limit)

    def alarm_exceptions(self, line: str | None, *, open_only: bool, batch_id: str | None) -> list[AlarmException]:
        return self._svc.alarm_desk.exceptions(line, open_only, batch_id)

    def close_alarm_exception(self, exception_id: int, principal: Principal, comment: str,
                              client: str) -> AlarmException:
        return self._svc.alarm_desk.close_exception(exception_id, principal, comment, client)

    def alarm_shelves(self, line: str | None) -> list[Shelf]:
        return self._svc.alarm_desk.shelves(line)

    def shelve_alarm(self, line: str, cell: str | None, condition: str, duration_s: float, principal: Principal,
                     comment: str, client: str) -> Shelf:
        return self._svc.alarm_desk.shelve(line, cell, condition, duration_s, principal, comment, client)

    def batch_holds(self, line: str | None, *, held_only: bool) -> list[BatchHold]:
        return self._svc.alarm_desk.holds(line, held_only)

    def release_batch_hold(self, hold_id: int, principal: Principal, comment: str, signature: Signature,
                           client: str) -> BatchHold:
        return self._svc.alarm_desk.release(hold_id, principal, comment, signature, client)

    # -- batch context -----------------------------------------------------------------------

    def context_lines(self) -> list[str]:
        """Lines that have batch context (with the shared store, other instances' lines too)."""
        return self._svc.context.all_lines()

    def last_context_seq(self, line: str) -> int | None:
        return self._svc.context.last_seq(line)

    def current_context(self, line: str) -> ContextAssertion | None:
        return self._svc.context.current(line)

    def batch_at(self, line: str, at_ms: int) -> ContextAssertion | None:
        """The batch running on ``line`` at ``at_ms``, if any."""
        return self._svc.context.active_at(line, at_ms)

    def batch_window(self, line: str, batch_id: str) -> BatchWindow | None:
        return self._svc.context.batch_window(line, batch_id)

    def batch_windows(self, line: str, from_ms: int | None, to_ms: int | None) -> list[BatchWindow]:
        return self._svc.context.batch_windows(line, from_ms, to_ms)

    def batch_quantities(self, window: BatchWindow) -> Quantities:
        """What the line made while the batch ran (its context segments)."""
        return self._svc.production.quantities(window.line, batch_intervals(window))

    def reorder_horizon_ms(self) -> int:
        """How far back a counter sample (and so an asserted change-point) may lie."""
        return int(self._svc.config.mes.counter_reorder_horizon_s * 1000)

    def assert_context(self, assertion: ContextAssertion, who: Principal | None = None) -> AssertionOutcome:
        """Accept an assertion; ``who`` (the API caller) is the identity the audit chain records."""
        return self._svc.assert_context(assertion, who)

    def disposition_state(self, line: str, batch_id: str) -> DispositionState:
        """Rejects of a batch, classified and pending; DispositionRefusedError(404) for an unknown batch."""
        return self._svc.quality.state(line, batch_id)

    def dispose(self, who: Principal, line: str, batch_id: str, request: DispositionRequest) -> Disposition:
        """Classify rejects (QA role, own signature, no more than pending), then build what is now due."""
        disposition = self._svc.quality.dispose(who, line, batch_id, request)
        self._svc.run_confirmations()
        return disposition

    def disposition_required(self) -> bool:
        """Whether rejects wait for QA (``mes.disposition.required``): then scrap is what QA classified."""
        return self._svc.config.mes.disposition.required

    def owner_requires_disposition(self, line: str) -> bool | None:
        """Whether the instance owning ``line`` holds its rejects for QA: this instance's setting for its
        own lines; for another's, what that instance registered in the shared state (None: not known,
        no live owner or an older uns-hub)."""
        if self.owns_line(line) or self._svc.instance is None:
            return self.disposition_required()
        return self._svc.instance.owner_disposition_required(self.line_group(line))

    def disposition_totals(self, line: str, batch_id: str) -> DispositionSplit:
        """What QA classified of a batch's rejects so far."""
        return self._svc.quality.totals(line, batch_id)

    def final_waiting_for_disposition(self, line: str, batch_id: str) -> bool:
        return (line, batch_id) in self._svc.confirmations.waiting_for_disposition

    def reconcile_line(self, line: str) -> Reconciliation:
        return self._svc.reconcile_line(line)

    def reconciliation(self, line: str) -> Reconciliation | None:
        """The start-up reconciliation of ``line``, once it happened."""
        return self._svc.reconciliations.get(line)

    # -- confirmations, outbox, OEE ----------------------------------------------------------

    def run_confirmations(self) -> int:
        return self._svc.run_confirmations()

    def outbox_entries(self, *, status: DeliveryStatus | None = None, line: str | None = None,
                       batch_id: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
        return self._svc.outbox.entries(status=status, line=line, batch_id=batch_id, limit=limit)

    def outbox_counts(self) -> dict[DeliveryStatus, int]:
        return self._svc.outbox.counts()

    def webhook_configured(self) -> bool:
        """An MES endpoint (``mes.webhook.url``) is set: without one nothing sends confirmations."""
        return self._svc.config.mes.webhook.url is not None

    def outbox_entry(self, confirmation_id: str) -> OutboxEntry:
        """One entry; UnknownConfirmationError if there is none."""
        return self._svc.outbox.get(confirmation_id)

    def requeue(self, confirmation_id: str, who: Principal | None = None) -> OutboxEntry:
        """Give a dead letter a fresh set of attempts (audited as ``who``) and wake the webhook sender."""
        before = self._svc.outbox.get(confirmation_id)
        entry = self._svc.outbox.requeue(confirmation_id)
        actor = api_actor(who)
        self._svc.decisions.requeue(confirmation_id, actor, line=before.line, batch_id=before.batch_id,
                                    attempts_before=before.attempts)
        if self._svc.sender is not None:
            self._svc.sender.wake()
        return entry

    def shift_calendar(self) -> ShiftCalendar:
        return self._svc.config.mes.calendar

    def batch_oee(self, line: str, batch_id: str) -> OeeResult:
        self._records_caught_up()  # the state records OEE reads, like every record query
        return self._svc.oee.batch_oee(line, batch_id)

    def shift_oee(self, line: str, window: ShiftWindow) -> OeeResult:
        self._records_caught_up()
        return self._svc.oee.shift_oee(line, window)

    # -- downtime ----------------------------------------------------------------------------

    def batch_interval(self, line: str, batch_id: str) -> Interval:
        return self._svc.oee.batch_interval(line, batch_id)

    def shift_interval(self, window: ShiftWindow) -> Interval:
        return self._svc.oee.shift_interval(window)

    def stops(self, line: str, window: Interval) -> list[Stop]:
        self._records_caught_up()
        return self._svc.downtime.stops(line, window)

    def losses(self, line: str, window: Interval) -> dict[str, BucketLoss]:
        self._records_caught_up()
        return self._svc.downtime.losses(line, window)

    def explain_stop(self, line: str, stop_start_ms: int, code: str, who: Principal,
                     comment: str | None = None) -> Stop:
        """Set a stop's reason code and record the decision (who, the code before) in the audit chain."""
        self._records_caught_up()
        downtime = self._svc.downtime
        before = [s for s in downtime.stops(line, Interval(stop_start_ms, stop_start_ms + 1))
                  if s.event.start_ms == stop_start_ms]
        stop = downtime.explain(line, stop_start_ms, code, who.user_id, comment)
        context = self._svc.context.active_at(line, stop_start_ms)
        previous = before[0].reason.code if before and before[0].reason is not None else None
        self._svc.decisions.reason_code(api_actor(who), line=line, batch_id=context and context.batch_id,
                                        stop_id=f"{line}@{stop_start_ms}", code=code, previous_code=previous,
                                        reason=comment)
        return stop

    def reason_codes(self) -> list[ReasonCode]:
        """The configured reason hierarchy, flat: what an operator may choose for a stop."""
        return list(self._svc.config.mes.downtime.codes().values())

    def stop_as_dict(self, stop: Stop) -> dict[str, Any]:
        return stop.as_dict(self._svc.config.mes)

    # -- commands ----------------------------------------------------------------------------

    def command_allowlist(self) -> Allowlist:
        return self._svc.commands.allowlist

    async def submit_command(self, who: Principal, client_id: str, *, draft: CommandDraft | None = None,
                             request: CommandRequest | None = None) -> CommandRecord:
        return await self._svc.commands.submit(who, client_id, draft=draft, request=request)

    async def condition_command(self, who: Principal, client_id: str, *, line: str, cell: str, condition: str,
                                method: ConditionMethod, comment: str,
                                validity_s: float | None = None) -> CommandRecord:
        """Acknowledge / Confirm of an OPC UA condition, submitted as an ordinary command."""
        draft = condition_draft(self._svc.mapping, line=line, cell=cell, condition=condition, method=method,
                                comment=comment, validity_s=validity_s)
        return await self._svc.commands.submit(who, client_id, draft=draft)

    async def sign_command(self, who: Principal, command_id: uuid.UUID, signature: Signature) -> CommandRecord:
        return await self._svc.commands.sign(who, command_id, signature)

    def approvals(self, who: Principal) -> list[CommandRecord]:
        """Open commands waiting for a signature ``who`` may add (the approvals queue)."""
        return self._svc.commands.approvals(who)

    def command_current_value(self, request: CommandRequest) -> tuple[Any, str] | None:
        return self._svc.commands.current_value(request)

    def command_target_path(self, request: CommandRequest) -> str | None:
        """The ISA-95 path of a command's target (what people read), None when unmapped."""
        equipment = self._svc.equipment_of(request.group_id, request.edge_node_id, request.device_id)
        return None if equipment is None else f"{equipment.topic}/{request.metric}"

    def cancel_command(self, who: Principal, command_id: uuid.UUID, reason: str) -> CommandRecord:
        return self._svc.commands.cancel(who, command_id, reason)

    def reject_command(self, who: Principal, command_id: uuid.UUID, reason: str) -> CommandRecord:
        return self._svc.commands.reject(who, command_id, reason)

    def commands(self, limit: int) -> list[CommandRecord]:
        """Recent commands, newest first."""
        return self._svc.commands.records(limit)

    def command(self, command_id: uuid.UUID) -> CommandRecord | None:
        return self._svc.commands.get(command_id)

    def command_audit_trail(self, command_id: uuid.UUID) -> list[dict[str, Any]]:
        return self._svc.commands.audit_trail(command_id)

    # -- orders and genealogy (mes_adapter.orders, mes_adapter.genealogy) -------------------

    def receive_order(self, order: OrderIn, who: Principal) -> Order:
        return self._svc.orders.receive(order, who)

    def order(self, order_id: str) -> Order:
        """One order; OrderError 404 if there is none."""
        return self._svc.orders.get(order_id)

    def orders(self, line: str | None, status: OrderStatus | None, limit: int) -> list[Order]:
        return self._svc.orders.orders(line, status, limit)

    async def start_order(self, order_id: str, who: Principal, client_id: str) -> tuple[Order, CommandRecord]:
        return await self._svc.orders.start(order_id, who, client_id)

    def cancel_order_start(self, order_id: str, who: Principal, reason: str) -> Order:
        """Withdraw an order's start under way (OrderError with the reason when it cannot be)."""
        return self._svc.orders.cancel_start(order_id, who, reason)

    def consume_lot(self, item: Consumption, who: Principal) -> LotOutcome:
        return self._svc.genealogy.consume(item, who.user_id, actor=api_actor(who))

    def produce_lot(self, item: ProducedLot, who: Principal) -> LotOutcome:
        return self._svc.genealogy.produce(item, who.user_id, actor=api_actor(who))

    def link_lots(self, link: LotLink, who: Principal) -> LotOutcome:
        return self._svc.genealogy.link(link, who.user_id, actor=api_actor(who))

    def batch_lots(self, line: str, batch_id: str) -> tuple[list[Consumption], list[ProducedLot]]:
        return self._svc.genealogy.consumed_by(line, batch_id), self._svc.genealogy.produced_by(line, batch_id)

    def trace(self, lot_id: str, direction: str) -> Trace:
        return self._svc.genealogy.backward(lot_id) if direction == "backward" else self._svc.genealogy.forward(lot_id)

    # -- crew (mes_adapter.crew) -------------------------------------------------------------

    def assert_crew(self, presence: CrewPresence, who: Principal) -> CrewOutcome:
        """A person's presence on a line (CrewError with the reason when refused)."""
        return self._svc.crew.assert_presence(presence, who.user_id, actor=api_actor(who))

    def crew(self, line: str, from_ms: int, to_ms: int) -> list[CrewPresence]:
        return self._svc.crew.crew(line, from_ms, to_ms)

    # -- audit -------------------------------------------------------------------------------

    def seal_audit(self) -> tuple[Path, Path | None]:
        """Checkpoint the audit trail's tail (so an export vouches for every record); its path and witness."""
        self._svc.audit.checkpoint()
        return self._svc.audit.path, self._svc.config.audit.witness_path

