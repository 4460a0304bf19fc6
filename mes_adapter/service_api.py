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

from mes_adapter.auth import Principal
from mes_adapter.commands.service import CommandDraft, CommandRecord
from mes_adapter.confirmations.outbox import DeliveryStatus, OutboxEntry
from mes_adapter.confirmations.service import batch_intervals
from mes_adapter.context import AssertionOutcome, BatchWindow, ContextAssertion
from mes_adapter.context.reconcile import Reconciliation
from mes_adapter.episodes import QualityEpisode
from mes_adapter.history import HistoryQueries
from mes_adapter.host import MetricState, NodeView
from mes_adapter.oee.compute import OeeResult
from mes_adapter.oee.shifts import ShiftCalendar, ShiftWindow
from mes_adapter.production.quantities import Quantities
from mes_adapter.production.records import BoundRecord, Record
from mes_adapter.service import AdapterService
from mes_adapter.status import data_status
from mes_adapter.status.data_status import DataStatus
from mes_adapter.status.live_feed import Event, sse_stream
from mes_adapter.status.node_stats import NodeTally
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

    def authenticate(self, authorization: str | None, query_token: str | None = None) -> Principal:
        """The caller of a request (bearer header, or ``?token=`` for EventSource); AuthError if none."""
        return self._svc.tokens.authenticate(authorization, query_token)

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

    def episodes(self, line: str, from_ms: int | None, to_ms: int | None, *, batch_id: str | None,
                 limit: int) -> list[QualityEpisode]:
        return self._svc.episodes.store.query(line, from_ms, to_ms, batch_id=batch_id, limit=limit)

    # -- batch context -----------------------------------------------------------------------

    def context_lines(self) -> list[str]:
        """Lines that have batch context."""
        return self._svc.context.lines()

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

    def assert_context(self, assertion: ContextAssertion) -> AssertionOutcome:
        return self._svc.assert_context(assertion)

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

    def outbox_entry(self, confirmation_id: str) -> OutboxEntry:
        """One entry; UnknownConfirmationError if there is none."""
        return self._svc.outbox.get(confirmation_id)

    def requeue(self, confirmation_id: str) -> OutboxEntry:
        """Give a dead letter a fresh set of attempts and wake the webhook sender."""
        entry = self._svc.outbox.requeue(confirmation_id)
        if self._svc.sender is not None:
            self._svc.sender.wake()
        return entry

    def shift_calendar(self) -> ShiftCalendar:
        return self._svc.config.mes.calendar

    def batch_oee(self, line: str, batch_id: str) -> OeeResult:
        return self._svc.oee.batch_oee(line, batch_id)

    def shift_oee(self, line: str, window: ShiftWindow) -> OeeResult:
        return self._svc.oee.shift_oee(line, window)

    # -- commands ----------------------------------------------------------------------------

    def command_allowlist(self) -> Allowlist:
        return self._svc.commands.allowlist

    async def submit_command(self, who: Principal, client_id: str, *, draft: CommandDraft | None = None,
                             request: CommandRequest | None = None) -> CommandRecord:
        return await self._svc.commands.submit(who, client_id, draft=draft, request=request)

    async def sign_command(self, who: Principal, command_id: uuid.UUID, signature: Signature) -> CommandRecord:
        return await self._svc.commands.sign(who, command_id, signature)

    def commands(self, limit: int) -> list[CommandRecord]:
        """Recent commands, newest first."""
        return self._svc.commands.records(limit)

    def command(self, command_id: uuid.UUID) -> CommandRecord | None:
        return self._svc.commands.get(command_id)

    def command_audit_trail(self, command_id: uuid.UUID) -> list[dict[str, Any]]:
        return self._svc.commands.audit_trail(command_id)

    # -- audit -------------------------------------------------------------------------------

    def seal_audit(self) -> tuple[Path, Path | None]:
        """Checkpoint the audit trail's tail (so an export vouches for every record); its path and witness."""
        self._svc.audit.checkpoint()
        return self._svc.audit.path, self._svc.config.audit.witness_path

