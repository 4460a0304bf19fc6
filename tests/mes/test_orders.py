"""Orders (issue 19 item 1): the intake rules, the start rules and the order store, with exact values.

The start through the real command path, the simulator and the read-back is end to end in
``tests/e2e/test_orders_genealogy.py``.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from mes_adapter.auth import Principal, Role
from mes_adapter.commands.service import CommandRecord, CommandStatus
from mes_adapter.context import ContextService, ContextStore
from mes_adapter.orders import (
    Order,
    OrderError,
    OrderIn,
    OrderLineConfig,
    OrdersConfig,
    OrderService,
    OrderStatus,
    OrderStore,
)
from mes_adapter.orders.rules import (
    StartCommandFate,
    check_cancellable,
    check_order,
    check_startable,
    start_arguments,
    start_command_fate,
)
from mes_adapter.orders.store import SCHEMA_VERSION
from tests.mes.helpers import LINE
from uns.audit.chain import AuditLog
from uns.audit.decisions import DecisionAudit
from uns.audit.query import AuditReader
from uns.commands.model import CommandRequest, CommandResult, Outcome, ReasonCode
from uns.sqlite_schema import SchemaVersionError

CONFIG = OrdersConfig.model_validate({
    "products": {"SKU-12": {"recipe_versions": ["R-12.3", "R-12.4"], "uom": "EA"},
                 "SKU-20": {"recipe_versions": ["R-20.1"], "uom": "kg"}},
    "lines": [{"line": LINE, "group_id": "acme:plant1", "edge_node_id": "packaging:line2"}],
})


def order_in(**kw: object) -> OrderIn:
    body = {"order_id": "WO-4711", "product_id": "SKU-12", "quantity": 1200, "uom": "EA",
            "recipe_version": "R-12.4", "due_time": "2026-12-02T18:00:00Z", "line": LINE, **kw}
    return OrderIn.model_validate(body)


def stored(order: OrderIn, status: OrderStatus = OrderStatus.RECEIVED, **kw: object) -> Order:
    return Order(order_id=order.order_id, product_id=order.product_id, quantity=order.quantity, uom=order.uom,
                 recipe_version=order.recipe_version, due_ms=int(order.due_time.timestamp() * 1000), line=order.line,
                 status=status, received_ms=5, received_by="erp", **kw)


def test_a_valid_order_passes() -> None:
    order = order_in()
    check_order(order, CONFIG)
    assert order.due_time == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("change", "status", "reason", "message"), [
    ({"product_id": "SKU-404"}, 422, "unknown_product", "product 'SKU-404' is not configured (known: SKU-12, SKU-20)"),
    ({"recipe_version": "R-12.2"}, 422, "recipe_version_not_valid",
     "recipe/BOM version 'R-12.2' of 'SKU-12' is not released for production (valid: R-12.3, R-12.4)"),
    ({"uom": "kg"}, 422, "wrong_uom", "'SKU-12' is ordered in 'EA', not 'kg'"),
    ({"line": "acme/plant1/packaging/line9"}, 422, "line_takes_no_orders",
     "line 'acme/plant1/packaging/line9' takes no orders (lines that do: acme/plant1/packaging/line2)"),
])
def test_refusals_name_the_reason(change: dict, status: int, reason: str, message: str) -> None:
    with pytest.raises(OrderError) as refused:
        check_order(order_in(**change), CONFIG)
    assert (refused.value.status, refused.value.reason, refused.value.message) == (status, reason, message)


@pytest.mark.parametrize(("change", "message"), [
    ({"due_time": "2026-12-02T18:00:00"}, "due_time needs a UTC offset"),
    ({"quantity": 0}, "Input should be greater than 0"),
    ({"order_id": "WO 1"}, "String should match pattern"),
    ({"line": "Line1"}, "line"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
])
def test_malformed_orders_are_refused_by_the_model(change: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        order_in(**change)


def test_start_arguments_are_the_method_arguments_and_whole_counts() -> None:
    line = CONFIG.line(LINE)
    assert isinstance(line, OrderLineConfig)
    assert start_arguments(stored(order_in()), line) == {"Order": "WO-4711", "Product": "SKU-12", "Quantity": 1200}
    with pytest.raises(OrderError) as fractional:
        start_arguments(stored(order_in(quantity=12.5)), line)
    assert (fractional.value.reason, fractional.value.message) == (
        "quantity_not_whole",
        "order 'WO-4711': quantity 12.5 is not a whole number of EA; the line's batch quantity is a whole count")


@pytest.mark.parametrize("status", [OrderStatus.STARTING, OrderStatus.RUNNING, OrderStatus.COMPLETED])
def test_a_second_start_is_refused(status: OrderStatus) -> None:
    with pytest.raises(OrderError) as refused:
        check_startable(stored(order_in(), status, command_id="c-1"))
    assert (refused.value.status, refused.value.reason, refused.value.message) == (
        409, "order_already_started", f"order 'WO-4711' is {status.value} (command c-1); it is started once")


@pytest.mark.parametrize("status", [OrderStatus.RECEIVED, OrderStatus.START_FAILED])
def test_a_received_or_failed_order_may_be_started(status: OrderStatus) -> None:
    check_startable(stored(order_in(), status))


def test_store_lists_per_line_and_status_by_due_time_and_survives_reopen(tmp_path: Path) -> None:
    store = OrderStore(tmp_path / "orders.sqlite")
    late = stored(order_in(order_id="WO-2", due_time="2026-12-03T06:00:00Z"))
    early = stored(order_in(order_id="WO-1", due_time="2026-12-02T06:00:00Z"))
    elsewhere = stored(order_in(order_id="WO-3", line="acme/plant1/packaging/line3"))
    assert [store.insert(o) for o in (late, early, elsewhere)] == [True, True, True]
    assert store.insert(early.model_copy(update={"quantity": 5})) is False  # an id is used once
    running = late.model_copy(update={"status": OrderStatus.RUNNING, "command_id": "c-9", "batch_id": "WO-2"})
    store.update(running)
    assert store.query(LINE) == [early, running]
    assert store.query(LINE, OrderStatus.RUNNING) == [running]
    assert store.by_command("c-9") == running
    store.close()
    again = OrderStore(tmp_path / "orders.sqlite")
    assert again.get("WO-1") == early and again.get("WO-404") is None
    again.close()
    conn = sqlite3.connect(tmp_path / "orders.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="order store has schema version 2"):
        OrderStore(tmp_path / "orders.sqlite")


class HoldingCommands:
    """A command service that still holds every command (the adapter did not restart)."""

    def get(self, command_id: uuid.UUID) -> object:
        return object()


def _service(tmp_path: Path) -> tuple[OrderService, ContextService]:
    context = ContextService(ContextStore(tmp_path / "context.sqlite"))
    # command_changed only asks whether the command is still held (the end-to-end test runs the real path)
    service = OrderService(OrderStore(tmp_path / "orders.sqlite"), CONFIG, context,
                           HoldingCommands(), context.assert_context,  # type: ignore[arg-type]
                           clock=lambda: 1_705_471_260_000)
    return service, context


def _command(status: CommandStatus, message: str, dispatched_ms: int | None = 1_705_471_200_000) -> CommandRecord:
    request = CommandRequest(command_id=uuid.UUID(int=7), group_id="acme:plant1", edge_node_id="packaging:line2",
                             metric="StartBatch", value={"Order": "WO-4711", "Product": "SKU-12", "Quantity": 1200},
                             requested_by="op", reason="start order WO-4711", created_at_ms=1, valid_until_ms=2)
    record = CommandRecord(request, status, "http:test", dispatched_ms=dispatched_ms)
    record.message = message
    return record


def test_a_failed_start_command_leaves_the_order_startable_and_no_batch(tmp_path: Path) -> None:
    service, context = _service(tmp_path)
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                started_by="op"))
    service.command_changed(_command(CommandStatus.DISPATCHED, "sent; waiting for the edge's result"))
    assert service.get("WO-4711").status is OrderStatus.STARTING
    service.command_changed(_command(CommandStatus.FAILED, "BadInvalidState"))
    failed = service.get("WO-4711")
    assert (failed.status, failed.detail, failed.batch_id) == (
        OrderStatus.START_FAILED, "start command failed: BadInvalidState", None)
    check_startable(failed)
    assert context.current(LINE) is None


def test_a_confirmed_start_asserts_the_batch_from_the_dispatch_time(tmp_path: Path) -> None:
    service, context = _service(tmp_path)
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                started_by="op"))
    service.command_changed(_command(CommandStatus.CONFIRMED, "confirmed"))
    running = service.get("WO-4711")
    assert (running.status, running.batch_id, running.started_ms) == (
        OrderStatus.RUNNING, "WO-4711", 1_705_471_200_000)
    current = context.current(LINE)
    assert current is not None
    assert current.model_dump() == {
        "line": LINE, "seq": 0, "since_ms": 1_705_471_200_000, "batch_id": "WO-4711", "work_order_id": "WO-4711",
        "operation_id": None, "product_id": "SKU-12", "phase": None, "target_quantity": 1200.0, "uom": "EA",
        "asserted_by": "op", "ended": False}
    # a late, different result for the same command changes nothing (a command has one outcome)
    service.command_changed(_command(CommandStatus.FAILED, "replayed"))
    assert service.get("WO-4711").status is OrderStatus.RUNNING
    context.assert_context(current.model_copy(update={"seq": 1, "since_ms": 1_705_471_230_000, "ended": True}))
    assert service.get("WO-4711").status is OrderStatus.COMPLETED
    assert [o.order_id for o in service.orders(LINE, OrderStatus.COMPLETED)] == ["WO-4711"]


def _result(outcome: Outcome, command_hash: str | None, reason: ReasonCode | None = None) -> CommandResult:
    return CommandResult(command_id=uuid.UUID(int=7), outcome=outcome, reason=reason, command_hash=command_hash,
                         group_id="acme:plant1", edge_node_id="packaging:line2", device_id=None, metric="StartBatch",
                         received_at_ms=1_705_471_201_000, completed_at_ms=1_705_471_201_500)


def test_a_retained_result_heard_after_a_restart_starts_the_order_only_if_it_names_the_command(
        tmp_path: Path) -> None:
    """After an adapter restart the command record is gone; the edge's retained result still decides."""
    service, context = _service(tmp_path)
    command_hash = _command(CommandStatus.DISPATCHED, "").request.command_hash()
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                command_hash=command_hash, started_by="op"))
    service.result_after_restart(_result(Outcome.CONFIRMED, "0" * 64))  # not this command
    assert service.get("WO-4711").status is OrderStatus.STARTING and context.current(LINE) is None
    service.result_after_restart(_result(Outcome.CONFIRMED, command_hash))
    running = service.get("WO-4711")
    assert (running.status, running.started_ms) == (OrderStatus.RUNNING, 1_705_471_201_000)
    current = context.current(LINE)
    assert current is not None and (current.batch_id, current.since_ms) == ("WO-4711", 1_705_471_201_000)


def test_a_failed_result_after_a_restart_fails_the_start(tmp_path: Path) -> None:
    service, context = _service(tmp_path)
    command_hash = _command(CommandStatus.DISPATCHED, "").request.command_hash()
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                command_hash=command_hash, started_by="op"))
    service.result_after_restart(_result(Outcome.FAILED, command_hash, ReasonCode.WRITE_FAILED))
    failed = service.get("WO-4711")
    assert (failed.status, failed.detail) == (OrderStatus.START_FAILED, "start command failed: failed")
    assert context.current(LINE) is None


# -- cancelling a start under way (issue 19 leftovers, item 1) -----------------------------------

def _trail(*steps: tuple[str, str | None]) -> list[dict]:
    return [{"event": event, "outcome": outcome} for event, outcome in steps]


@pytest.mark.parametrize(("trail", "fate"), [
    (_trail(("requested", None)), StartCommandFate.LOST),
    (_trail(("requested", None), ("signed", None)), StartCommandFate.LOST),
    (_trail(("requested", None), ("signed", None), ("dispatched", None)), StartCommandFate.DISPATCHED),
    (_trail(("requested", None), ("signed", None), ("dispatched", None), ("readback_ok", "confirmed")),
     StartCommandFate.EXECUTED),
    (_trail(("requested", None), ("signed", None), ("dispatched", None), ("expired", "expired")),
     StartCommandFate.ENDED),
    (_trail(("requested", None), ("refused", "refused")), StartCommandFate.ENDED),
    (_trail(("requested", None), ("failed", "not_dispatched")), StartCommandFate.ENDED),
    ([], StartCommandFate.LOST),
])
def test_the_fate_of_a_forgotten_start_command_comes_from_its_audit_trail(trail: list[dict],
                                                                         fate: StartCommandFate) -> None:
    assert start_command_fate(trail) is fate


@pytest.mark.parametrize(("status", "reason", "message"), [
    (OrderStatus.RUNNING, "start_command_executed",
     "order 'WO-4711': its start command c-1 was executed (the PLC holds the batch parameters); end the batch "
     "instead of cancelling the start"),
    (OrderStatus.COMPLETED, "start_command_executed",
     "order 'WO-4711': its start command c-1 was executed (the PLC holds the batch parameters); end the batch "
     "instead of cancelling the start"),
    (OrderStatus.RECEIVED, "order_not_starting",
     "order 'WO-4711' is received; only a start under way (starting) can be cancelled"),
    (OrderStatus.START_FAILED, "order_not_starting",
     "order 'WO-4711' is start_failed; only a start under way (starting) can be cancelled"),
])
def test_only_a_start_under_way_can_be_cancelled(status: OrderStatus, reason: str, message: str) -> None:
    with pytest.raises(OrderError) as refused:
        check_cancellable(stored(order_in(), status, command_id="c-1"))
    assert (refused.value.status, refused.value.reason, refused.value.message) == (409, reason, message)
    check_cancellable(stored(order_in(), OrderStatus.STARTING, command_id="c-1"))


class ForgetfulCommands:
    """The command service of an adapter that restarted: it holds no command, only the audit trail."""

    def __init__(self, trail: list[dict]) -> None:
        self.trail = trail

    def get(self, command_id: uuid.UUID) -> None:
        return None

    def audit_trail(self, command_id: uuid.UUID) -> list[dict]:
        return self.trail


SUPERVISOR = Principal("sam", "Sam Supervisor", Role.SUPERVISOR)


def _forgetful(tmp_path: Path, trail: list[dict]) -> tuple[OrderService, AuditLog]:
    context = ContextService(ContextStore(tmp_path / "context.sqlite"))
    log = AuditLog(tmp_path / "audit.sqlite")
    service = OrderService(OrderStore(tmp_path / "orders.sqlite"), CONFIG, context,
                           ForgetfulCommands(trail), context.assert_context,  # type: ignore[arg-type]
                           audit=DecisionAudit(log, "mes-adapter"), clock=lambda: 1_705_471_260_000)
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                command_hash="ab" * 32, started_by="op", detail="awaiting signature"))
    return service, log


def test_a_start_whose_command_was_lost_in_a_restart_says_so_and_can_be_cancelled(tmp_path: Path) -> None:
    service, log = _forgetful(tmp_path, _trail(("requested", None)))
    command = str(uuid.UUID(int=7))
    starting = service.get("WO-4711")
    assert (starting.status, starting.detail) == (
        OrderStatus.STARTING,
        f"start command {command} was never sent and the adapter restarted since: nobody can sign it any more; "
        "cancel the start (POST /api/orders/WO-4711/cancel)")
    with pytest.raises(OrderError) as no_reason:
        service.cancel_start("WO-4711", SUPERVISOR, "  ")
    assert (no_reason.value.status, no_reason.value.reason) == (422, "reason_required")
    back = service.cancel_start("WO-4711", SUPERVISOR, "PLC recipe not loaded")
    assert (back.status, back.command_id, back.command_hash, back.started_by, back.detail) == (
        OrderStatus.RECEIVED, None, None, None,
        f"start cancelled by sam: PLC recipe not loaded (start command lost, command {command})")
    check_startable(back)
    log.close()
    with AuditReader(tmp_path / "audit.sqlite") as reader:
        records = [r.fields() for r in reader.events()]
    assert [(r["event"], r["command_id"], r["actor_user_id"], r["auth_method"], r["work_order_id"], r["reason"],
             r["message"], r["outcome"], r["old_value"], r["target"]["isa95_path"]) for r in records] == [
        ("order_start_cancelled", command, "sam", "api-token", "WO-4711", "PLC recipe not loaded",
         "start command lost", "received", {"status": "starting", "detail": starting.detail}, LINE)]


@pytest.mark.parametrize(("trail", "reason"), [
    (_trail(("requested", None), ("signed", None), ("dispatched", None)), "start_command_dispatched"),
    (_trail(("requested", None), ("dispatched", None), ("readback_ok", "confirmed")), "start_command_executed"),
])
def test_a_forgotten_start_the_edge_may_run_or_ran_is_not_cancelled(tmp_path: Path, trail: list[dict],
                                                                   reason: str) -> None:
    service, log = _forgetful(tmp_path, trail)
    with pytest.raises(OrderError) as refused:
        service.cancel_start("WO-4711", SUPERVISOR, "stuck")
    assert (refused.value.status, refused.value.reason) == (409, reason)
    assert service.get("WO-4711").status is OrderStatus.STARTING
    log.close()
    with AuditReader(tmp_path / "audit.sqlite") as reader:
        assert reader.events() == []


def test_a_start_command_cancelled_in_the_approvals_queue_returns_the_order(tmp_path: Path) -> None:
    service, _ = _service(tmp_path)
    service.store.insert(stored(order_in(), OrderStatus.STARTING, command_id=str(uuid.UUID(int=7)),
                                started_by="op"))
    service.command_changed(_command(CommandStatus.CANCELLED, "cancelled by op: wrong line", dispatched_ms=None))
    back = service.get("WO-4711")
    assert (back.status, back.command_id, back.detail) == (
        OrderStatus.RECEIVED, None,
        f"cancelled by op: wrong line (start command cancelled, command {uuid.UUID(int=7)})")
