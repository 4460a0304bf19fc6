"""The order as the ERP sends it and as the adapter keeps it.

Field names follow ISA-95 / B2MML ``ProductionRequest`` in snake case: ``order_id`` is the request's
``ID``, ``product_id`` the ``MaterialProducedRequirement/MaterialDefinitionID``, ``quantity`` and
``uom`` its ``Quantity/QuantityString`` and ``UnitOfMeasure``, ``recipe_version`` the
``ProductProductionRuleID`` version (the recipe/BOM the order is planned against), ``due_time`` the
segment's ``LatestEndTime`` and ``line`` the ``EquipmentID`` of the work unit (its ISA-95 path).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mes_adapter.lines import line_key


class OrderStatus(StrEnum):
    #: accepted, not started
    RECEIVED = "received"
    #: the start command is submitted (waiting for signatures or the edge's result)
    STARTING = "starting"
    #: the PLC confirmed the batch parameters; the batch context is asserted
    RUNNING = "running"
    #: the start command did not confirm (refused, failed, read-back mismatch, timeout): may be started again
    START_FAILED = "start_failed"
    #: the order's batch ended
    COMPLETED = "completed"

    @property
    def started(self) -> bool:
        """A start is under way or done: a second start is refused."""
        return self in (OrderStatus.STARTING, OrderStatus.RUNNING, OrderStatus.COMPLETED)


class OrderIn(BaseModel):
    """An order from the ERP (B2MML production request, flattened)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
                          description="ProductionRequest ID; becomes the batch id on the line")
    product_id: str = Field(min_length=1, max_length=64, description="MaterialDefinitionID of the product")
    quantity: float = Field(gt=0, description="quantity to produce, in uom")
    uom: str = Field(min_length=1, max_length=16, description="UnitOfMeasure of quantity")
    recipe_version: str = Field(min_length=1, max_length=64, description="recipe/BOM version planned against")
    due_time: datetime = Field(description="LatestEndTime, ISO 8601 with offset")
    line: str = Field(description="<enterprise>/<site>/<area>/<line>")

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return line_key(value)

    @field_validator("due_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("due_time needs a UTC offset (e.g. 2026-12-02T18:00:00Z)")
        return value


class Order(BaseModel):
    """An accepted order and where it stands."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    product_id: str
    quantity: float
    uom: str
    recipe_version: str
    due_ms: int
    line: str
    status: OrderStatus
    received_ms: int
    received_by: str
    #: the command that writes the batch parameters (set when a start is submitted)
    command_id: str | None = None
    #: its hash (a result heard after an adapter restart is only believed if it names this command)
    command_hash: str | None = None
    #: the batch the order runs as (its order id) once started
    batch_id: str | None = None
    started_ms: int | None = None
    started_by: str | None = None
    #: why the last start failed, or what the start is waiting for
    detail: str = ""
