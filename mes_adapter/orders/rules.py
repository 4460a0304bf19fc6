"""What makes an order acceptable and startable: pure checks, no I/O, each refusal with its reason code."""

from __future__ import annotations

from typing import Any

from mes_adapter.errors import MesInputError

from .config import OrderLineConfig, OrdersConfig
from .models import Order, OrderIn


class OrderError(MesInputError):
    """An order or an order start refused; ``status`` (HTTP) and ``reason`` (code) say how and why."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


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
