"""Which products and recipe/BOM versions an order may name, and how a line starts a batch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mes_adapter.lines import line_key


class ProductSpec(BaseModel):
    """A product the plant makes, with the recipe/BOM versions released for production.

    Why a list of versions: the ERP may still send orders for a superseded BOM; the line must not
    run one, so an order naming a version not listed here is refused with the versions that are valid.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: recipe/BOM versions released for production; an order naming any other is refused
    recipe_versions: list[str] = Field(min_length=1)
    #: unit of the order quantity (an order in another unit is refused)
    uom: str = Field("EA", min_length=1)


class OrderLineConfig(BaseModel):
    """How batches are started on one line: the allowlisted method whose call writes the parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``<enterprise>/<site>/<area>/<line>``
    line: str
    #: Sparkplug ids of the node that owns the start method (it must be in the command allowlist)
    group_id: str
    edge_node_id: str
    device_id: str | None = None
    #: the allowlisted method (a ``call`` rule) that writes order, product and quantity to the PLC
    metric: str = "StartBatch"
    #: names of the method's arguments for order id, product and quantity
    order_arg: str = "Order"
    product_arg: str = "Product"
    quantity_arg: str = "Quantity"

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return line_key(value)


class OrdersConfig(BaseModel):
    """Order intake: the valid products (with recipe versions) and the lines that take orders."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: product id -> its released recipe/BOM versions and unit; an order for any other product is refused
    products: dict[str, ProductSpec] = Field(default_factory=dict)
    #: lines that accept orders, each with its batch-start method
    lines: list[OrderLineConfig] = Field(default_factory=list)

    def line(self, key: str) -> OrderLineConfig | None:
        return next((line for line in self.lines if line.line == key), None)
