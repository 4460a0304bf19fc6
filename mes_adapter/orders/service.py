"""Order intake and the start of a batch from an order, through the signed command path.

Why the batch counts as started only on the command result: the ERP's order is only running when
the PLC holds its parameters. The start submits the allowlisted ``StartBatch`` call (it waits for
its signatures like every command); :meth:`OrderService.command_changed` hears every change of
that command: ``confirmed`` (the edge's result after the write) asserts the batch context (batch
id = order id, work order, product, target) from the time the command was sent, so no count made
after the PLC started is outside the batch; any other end marks the order ``start_failed`` with
the command's message, and it may be started again.

A start under way can be cancelled (:meth:`OrderService.cancel_start`): an open command is cancelled
through the command path, and the order goes back to ``received``. Why ``received`` and not a
terminal ``cancelled``: what is withdrawn is this attempt to start, not the ERP's order, which is
still to be produced (cancelling the order itself is the ERP's decision). A command the edge may
still run (dispatched, no result) or has run is never cancelled here: the PLC's state decides.

Every intake decision (accepted or refused) and every cancelled start goes into the audit chain.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mes_adapter.auth import Principal
from mes_adapter.commands.service import CommandDraft, CommandRecord, CommandService, CommandStatus
from mes_adapter.context import AssertionOutcome, ContextAssertion, ContextService
from mes_adapter.context.audited import api_actor
from mes_adapter.errors import MesInputError
from mes_adapter.timefmt import now_ms
from uns.audit.decisions import Actor, DecisionAudit, order_entry
from uns.audit.record import AuditEntry, AuditEvent
from uns.commands.model import CommandResult

from .config import OrdersConfig
from .models import Order, OrderIn, OrderStatus
from .rules import (
    OrderError,
    StartCommandFate,
    check_cancellable,
    check_order,
    check_startable,
    start_arguments,
    start_command_fate,
    start_dispatched,
    start_executed,
)
from .store import OrderStore

log = logging.getLogger("uns.adapter.orders")

_FAILED = {CommandStatus.REFUSED, CommandStatus.NOT_DISPATCHED, CommandStatus.MISMATCH, CommandStatus.TIMEOUT,
           CommandStatus.FAILED, CommandStatus.EXPIRED}
#: the command was withdrawn before it ran (cancelled by its requester or a supervisor, or rejected by an
#: approver): the order goes back to ``received``
_WITHDRAWN = {CommandStatus.CANCELLED, CommandStatus.REJECTED}

#: what an order still ``starting`` shows when the adapter no longer holds its command (after a restart)
_FATE_DETAIL = {
    StartCommandFate.LOST: "start command {command} was never sent and the adapter restarted since: nobody can sign "
                           "it any more; cancel the start (POST /api/orders/{order}/cancel)",
    StartCommandFate.DISPATCHED: "start command {command} was sent to the edge before the adapter restarted; the "
                                 "edge's retained result decides",
    StartCommandFate.ENDED: "start command {command} ended without running while the adapter restarted; cancel the "
                            "start (POST /api/orders/{order}/cancel)",
    StartCommandFate.EXECUTED: "start command {command} was confirmed by the edge; waiting for its retained result "
                               "to start the batch",
}


class OrderService:
    def __init__(self, store: OrderStore, config: OrdersConfig, context: ContextService, commands: CommandService,
                 assert_context: Callable[[ContextAssertion], AssertionOutcome],
                 audit: DecisionAudit | None = None, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.config = config
        self._context = context
        self._commands = commands
        self._assert_context = assert_context
        self._audit = audit
        self._clock = clock
        #: who is cancelling which start command right now (the command's cancel reports back inside
        #: the call, possibly on an API worker thread while the event loop handles other commands)
        self._cancellers: dict[str, tuple[Actor, str]] = {}

    # -- intake ------------------------------------------------------------------------------

    def receive(self, order: OrderIn, who: Principal) -> Order:
        """Accept a new order (checked against the configured products and recipe versions).

        Both outcomes are audited with the order as sent; the order row is stored before its record."""
        body = order.model_dump(mode="json")
        try:
            stored = self._receive(order, who)
        except OrderError as exc:
            self._record(order_entry(AuditEvent.ORDER_REFUSED, api_actor(who), source=self._source, order=body,
                                     outcome="refused", reason_code=exc.reason, message=exc.message))
            raise
        self._record(order_entry(AuditEvent.ORDER_RECEIVED, api_actor(who), source=self._source, order=body,
                                 outcome="accepted"))
        return stored

    def _receive(self, order: OrderIn, who: Principal) -> Order:
        check_order(order, self.config)
        stored = Order(order_id=order.order_id, product_id=order.product_id, quantity=order.quantity, uom=order.uom,
                       recipe_version=order.recipe_version, due_ms=int(order.due_time.timestamp() * 1000),
                       line=order.line, status=OrderStatus.RECEIVED, received_ms=self._clock(),
                       received_by=who.user_id)
        if not self.store.insert(stored):
            raise OrderError(409, "order_id_used", f"order {order.order_id!r} was already received; "
                                                   "an order id is used once")
        return stored

    def get(self, order_id: str) -> Order:
        order = self.store.get(order_id)
        if order is None:
            raise OrderError(404, "unknown_order", f"no order {order_id!r}")
        return self._refreshed(order)

    def orders(self, line: str | None, status: OrderStatus | None, limit: int = 1000) -> list[Order]:
        found = [self._refreshed(o) for o in self.store.query(line, None, limit)]
        return [o for o in found if status is None or o.status is status]

    def _refreshed(self, order: Order) -> Order:
        """A running order whose batch has ended is completed (the end may come from any plant app);
        a starting order whose command the adapter no longer holds says what became of it."""
        if order.status is OrderStatus.STARTING and order.command_id is not None \
                and self._commands.get(uuid.UUID(order.command_id)) is None:
            detail = _FATE_DETAIL[self._forgotten_fate(order)].format(command=order.command_id, order=order.order_id)
            if detail != order.detail:
                order = order.model_copy(update={"detail": detail})
                self.store.update(order)
        if order.status is OrderStatus.RUNNING and order.batch_id is not None:
            window = self._context.batch_window(order.line, order.batch_id)
            if window is not None and window.ended:
                order = order.model_copy(update={"status": OrderStatus.COMPLETED})
                self.store.update(order)
        return order

    # -- start -------------------------------------------------------------------------------

    async def start(self, order_id: str, who: Principal, client_id: str) -> tuple[Order, CommandRecord]:
        """Submit the command that writes the order's batch parameters; the order is ``starting``.

        A CommandError from the command path (refused by the allowlist, target offline) propagates
        and the order stays as it was."""
        order = self.get(order_id)
        line = self.config.line(order.line)
        check_startable(order)
        if line is None:
            raise OrderError(422, "line_takes_no_orders", f"line {order.line!r} takes no orders any more")
        arguments = start_arguments(order, line)
        running = self._context.active_at(order.line, self._clock())
        if running is not None:
            raise OrderError(409, "batch_running", f"batch {running.batch_id!r} is running on {order.line}; "
                                                   f"end it before starting order {order_id!r}")
        draft = CommandDraft(group_id=line.group_id, edge_node_id=line.edge_node_id, device_id=line.device_id,
                             metric=line.metric, value=arguments, reason=f"start order {order_id}")
        # marked first: the command's status changes (possibly to its end) inside submit
        starting = order.model_copy(update={"status": OrderStatus.STARTING, "started_by": who.user_id,
                                            "detail": "start command submitted"})
        self.store.update(starting)
        try:
            record = await self._commands.submit(who, client_id, draft=draft)
        except Exception:
            self.store.update(order)
            raise
        current = self.store.get(order_id) or starting
        if current.command_id is None:  # no change was heard during submit
            current = current.model_copy(update={"command_id": str(record.request.command_id),
                                                 "command_hash": record.request.command_hash(),
                                                 "detail": record.message})
            self.store.update(current)
            self._apply(current, record)
        return self.store.get(order_id) or current, record

    # -- cancel ------------------------------------------------------------------------------

    def cancel_start(self, order_id: str, who: Principal, reason: str) -> Order:
        """Withdraw a start under way: the order goes back to ``received`` (startable again).

        An open command (awaiting signatures) is cancelled through the command path (audited there
        too); a command the adapter forgot in a restart is looked up in the audit trail: one never
        sent can no longer be signed and is safe to drop. A command sent to the edge without a
        result, or executed, is refused: the PLC may hold (or will hold) the parameters."""
        if not reason.strip():
            raise OrderError(422, "reason_required", "say why the start is cancelled (audited)")
        order = self.get(order_id)
        check_cancellable(order)
        record = self._commands.get(uuid.UUID(order.command_id)) if order.command_id else None
        actor = api_actor(who)
        if record is not None:
            if record.status is CommandStatus.CONFIRMED:
                raise start_executed(order)
            if record.status is CommandStatus.DISPATCHED:
                raise start_dispatched(order)
            with self._cancelling(order.command_id, actor, reason):
                if record.status.open:
                    self._commands.cancel(who, record.request.command_id, reason)
                else:  # it ended without running, and the order was not moved on (not expected)
                    self._withdraw(order, f"start command {record.status.value}", actor, reason)
            return self.get(order_id)
        fate = self._forgotten_fate(order) if order.command_id else StartCommandFate.LOST
        if fate is StartCommandFate.EXECUTED:
            raise start_executed(order)
        if fate is StartCommandFate.DISPATCHED:
            raise start_dispatched(order)
        self._withdraw(order, f"start command {fate.value}", actor, reason)
        return self.get(order_id)

    @contextmanager
    def _cancelling(self, command_id: str | None, actor: Actor, reason: str) -> Iterator[None]:
        key = command_id or ""
        self._cancellers[key] = (actor, reason.strip())
        try:
            yield
        finally:
            self._cancellers.pop(key, None)

    def _forgotten_fate(self, order: Order) -> StartCommandFate:
        assert order.command_id is not None
        return start_command_fate(self._commands.audit_trail(uuid.UUID(order.command_id)))

    def _withdraw(self, order: Order, what: str, actor: Actor, reason: str, by: str | None = None) -> None:
        """Back to ``received``, the command forgotten by the order, and the decision audited.

        ``by``: who withdrew it, for the order's detail (the command's message names its canceller
        when the cancel came through the command path rather than this service)."""
        by = by if by is not None else f"start cancelled by {actor.user_id}: {reason.strip()}"
        back = order.model_copy(update={"status": OrderStatus.RECEIVED, "command_id": None, "command_hash": None,
                                        "started_by": None,
                                        "detail": f"{by} ({what}, command {order.command_id})"})
        self.store.update(back)
        log.info("order %s: start cancelled by %s (%s)", order.order_id, actor.user_id, what)
        self._record(order_entry(AuditEvent.ORDER_START_CANCELLED, actor, source=self._source,
                                 order={"order_id": order.order_id, "line": order.line},
                                 outcome=OrderStatus.RECEIVED.value, reason=reason.strip(), message=what,
                                 old_value={"status": order.status.value, "detail": order.detail},
                                 command_id=order.command_id))

    @property
    def _source(self) -> str:
        return self._audit.source if self._audit is not None else "mes-adapter"

    def _record(self, entry: AuditEntry) -> None:
        if self._audit is not None:
            self._audit.record(entry)

    def command_changed(self, record: CommandRecord) -> None:
        """Every change of any command; those that start an order move the order on."""
        order = self.store.by_command(str(record.request.command_id))
        if order is None:
            return
        self._apply(order, record)

    def result_after_restart(self, result: CommandResult) -> None:
        """The edge's result of a start command this adapter no longer holds (it restarted meanwhile).

        The result is retained on ``_cmd/result/<id>``, so it is heard again after a restart; it is
        believed only when it names the stored command's hash. The batch then starts from when the
        edge received the command (the dispatch time is gone with the command record)."""
        order = self.store.by_command(str(result.command_id))
        if order is None or order.status is not OrderStatus.STARTING:
            return
        if result.command_hash is None or result.command_hash != order.command_hash:
            log.warning("result for order %s's start command %s does not name its hash; ignored",
                        order.order_id, result.command_id)
            return
        status = CommandStatus(result.outcome.value)
        self._decide(order, status, result.message or result.outcome.value, result.received_at_ms)

    def _apply(self, order: Order, record: CommandRecord) -> None:
        self._decide(order, record.status, record.message, record.dispatched_ms)

    def _decide(self, order: Order, status: CommandStatus, message: str, dispatched_ms: int | None) -> None:
        if order.status is not OrderStatus.STARTING:
            return
        if status is CommandStatus.CONFIRMED:
            since = dispatched_ms if dispatched_ms is not None else self._clock()
            last = self._context.last_seq(order.line)
            spec = self.config.products.get(order.product_id)
            assertion = ContextAssertion(
                line=order.line, seq=0 if last is None else last + 1, since_ms=since, batch_id=order.order_id,
                work_order_id=order.order_id, product_id=order.product_id, target_quantity=order.quantity,
                uom=spec.uom if spec else order.uom, asserted_by=order.started_by or "orders")
            try:
                outcome = self._assert_context(assertion)
            except MesInputError as exc:
                self.store.update(order.model_copy(update={"status": OrderStatus.START_FAILED,
                                                           "detail": f"the PLC took the batch but the context was "
                                                                     f"refused: {exc}"}))
                return
            log.info("order %s started on %s (context %s)", order.order_id, order.line, outcome.value)
            self.store.update(order.model_copy(update={"status": OrderStatus.RUNNING, "batch_id": order.order_id,
                                                       "started_ms": since, "detail": message}))
        elif status in _WITHDRAWN:
            canceller = self._cancellers.get(order.command_id or "")
            if canceller is not None:
                self._withdraw(order, f"start command {status.value}", *canceller)
            else:  # through the approvals queue: the command's own record names who and why
                self._withdraw(order, f"start command {status.value}", Actor.service("orders"), message, by=message)
        elif status in _FAILED:
            self.store.update(order.model_copy(update={"status": OrderStatus.START_FAILED,
                                                       "detail": f"start command {status.value}: {message}"}))
        else:
            self.store.update(order.model_copy(update={"detail": message}))
