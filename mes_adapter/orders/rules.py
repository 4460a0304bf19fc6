"""What makes an order acceptable and startable: pure checks, no I/O, each refusal with its reason code."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from mes_adapter.errors import RefusalError

from .config import OrderLineConfig, OrdersConfig
from .models import Order, OrderIn, OrderStatus


class OrderError(RefusalError):
    """An order or an order start refused; ``status`` (HTTP) and ``reason`` (code) say how and why."""


def check_order(order: OrderIn, config: OrdersConfig) -> None:
    """Refuse an order for an unknown product, a recipe/BOM version not released, a wrong unit or line."""
    if config.line(order.line) is None:
        takes = ", ".join(sorted(line.line for line in config.lines)) or "none"
        raise OrderError(422, "line_takes_no_orders", f"line {order.line!r} takes no orders (lines that do: {takes})")
    spec = config.products.get(order.product_id)
    if spec is None:
        known = ", ".join(sorted(config.products)) or "none"
        raise OrderError(422, "unknown_product", f"product {order.product_id!r} is not configured (known: {known})")
    if order.recipe_version not in spec.recipe_versions:
        raise OrderError(422, "recipe_version_not_valid",
                      f"recipe/BOM version {order.recipe_version!r} of {order.product_id!r} is not released for "
                      f"production (valid: {', '.join(spec.recipe_versions)})")
    if order.uom != spec.uom:
        raise OrderError(422, "wrong_uom", f"{order.product_id!r} is ordered in {spec.uom!r}, not {order.uom!r}")


def check_startable(order: Order) -> None:
    """A start of an order whose start is under way or done is refused (the PLC would run it twice)."""
    if order.status.started:
        raise OrderError(409, "order_already_started",
                      f"order {order.order_id!r} is {order.status.value}"
                      + (f" (command {order.command_id})" if order.command_id else "") + "; it is started once")


def start_arguments(order: Order, line: OrderLineConfig) -> dict[str, Any]:
    """The method arguments that write the order's batch parameters to the PLC.

    The PLC counts whole units (UInt32): a fractional quantity is refused rather than rounded, so
    the line never runs a quantity the ERP did not order."""
    if order.quantity != int(order.quantity):
        raise OrderError(422, "quantity_not_whole",
                      f"order {order.order_id!r}: quantity {order.quantity} is not a whole number of {order.uom}; "
                      "the line's batch quantity is a whole count")
    return {line.order_arg: order.order_id, line.product_arg: order.product_id, line.quantity_arg: int(order.quantity)}


class StartCommandFate(StrEnum):
    """What an order's start command can still do, from its audit trail (the adapter forgot the command)."""

    #: the edge confirmed it: the PLC holds the batch parameters
    EXECUTED = "executed"
    #: sent to the edge, no result heard yet: the edge may still run it
    DISPATCHED = "dispatched"
    #: it ended without running (refused, cancelled, rejected, not dispatched, failed, expired, ...)
    ENDED = "ended"
    #: never sent, and the adapter that held it for signatures restarted: it can no longer be signed
    LOST = "lost"


def start_command_fate(trail: Iterable[dict[str, Any]]) -> StartCommandFate:
    """Classify a command's audit records (oldest first) for a cancel after an adapter restart.

    Every final step carries an ``outcome`` (``confirmed``, ``refused``, ``cancelled``, ``failed``, ...);
    ``dispatched`` carries none. A command the adapter never dispatched was held in memory only, so
    after a restart nobody can sign it any more: it is ``lost`` and cancelling its order is safe."""
    dispatched = False
    final: str | None = None
    for record in trail:
        outcome = record.get("outcome")
        if outcome == "confirmed":
            return StartCommandFate.EXECUTED
        if record.get("event") == "dispatched":
            dispatched = True
        elif outcome is not None:
            final = str(outcome)
    if final is not None:
        return StartCommandFate.ENDED
    return StartCommandFate.DISPATCHED if dispatched else StartCommandFate.LOST


def check_cancellable(order: Order) -> None:
    """Only a start under way can be cancelled; one the PLC took is refused (end the batch instead)."""
    if order.status in (OrderStatus.RUNNING, OrderStatus.COMPLETED):
        raise start_executed(order)
    if order.status is not OrderStatus.STARTING:
        raise OrderError(409, "order_not_starting",
                         f"order {order.order_id!r} is {order.status.value}; only a start under way (starting) "
                         "can be cancelled")


def start_executed(order: Order) -> OrderError:
    return OrderError(409, "start_command_executed",
                      f"order {order.order_id!r}: its start command {order.command_id} was executed (the PLC holds "
                      "the batch parameters); end the batch instead of cancelling the start")


def start_dispatched(order: Order) -> OrderError:
    return OrderError(409, "start_command_dispatched",
                      f"order {order.order_id!r}: its start command {order.command_id} was sent to the edge, which "
                      "may still run it; its result decides (confirmed: running, any other end: start_failed)")
