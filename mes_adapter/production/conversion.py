"""Quantities in the material's unit: a counted quantity taken through named conversion steps.

A counter counts what its sensor sees (pulses of a light barrier, strokes of a dosing pump); the ERP
books the material in its own unit (pieces, kg, litres). A conversion names the unit the counter
counts in and the steps to the material's unit, each with its factor (``pulse --×0.5--> EA
--×0.0125--> kg``): 1000 pulses are 500 EA are 6.25 kg.

Why steps and not one factor: each step is a fact someone owns and checks separately (pulses per
piece is the sensor's, the piece weight is the product's master data), and the confirmation lists
them so the ERP can retrace the number. Why the base count stays in the confirmation beside the
converted quantity: the count is exact and additive; the converted quantity is a product of
configured factors, rounded to :data:`DECIMALS` decimals (so 250 pulses × 0.1 l is 25 l, not
25.000000000000004), which the ERP may recompute from the count and the factors.

Pure: pydantic models and arithmetic, no I/O.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: converted quantities are rounded to this many decimals (float noise of the multiplications)
DECIMALS = 9

_UNIT = Field(min_length=1, max_length=16, pattern=r"^\S+$")


class ConversionStep(BaseModel):
    """One step: each unit before it is ``factor`` units ``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the unit after this step (e.g. ``EA``, ``kg``)
    to: str = _UNIT
    #: how many ``to`` one unit before this step is (finite, > 0; e.g. 0.5 EA per pulse)
    factor: float

    @field_validator("factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"a conversion factor must be finite and > 0, not {value}")
        return value


class QuantityConversion(BaseModel):
    """From the unit a counter counts in to the material's unit, step by step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the unit the counter counts in (e.g. ``pulse``)
    counted_in: str = _UNIT
    #: applied in order; the last step's ``to`` is the material's unit
    steps: list[ConversionStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _chain(self) -> QuantityConversion:
        units = self.units
        if len(set(units)) != len(units):
            raise ValueError(f"a conversion names each unit once: {' -> '.join(units)}")
        overall = math.prod(step.factor for step in self.steps)
        if not math.isfinite(overall) or overall <= 0:
            raise ValueError(f"the factors of {' -> '.join(units)} multiply to {overall}, which is not a usable "
                             "factor (finite, > 0)")
        return self

    @property
    def uom(self) -> str:
        """The material's unit (the last step's)."""
        return self.steps[-1].to

    @property
    def units(self) -> list[str]:
        """Every unit from the counted one to the material's."""
        return [self.counted_in, *(step.to for step in self.steps)]

    @property
    def factors(self) -> list[float]:
        return [step.factor for step in self.steps]

    def convert(self, counted: float) -> float:
        """``counted`` (in ``counted_in``) in the material's unit: multiplied step by step, then rounded."""
        value = counted
        for step in self.steps:
            value *= step.factor
        rounded = round(value, DECIMALS)
        return 0.0 if rounded == 0 else rounded  # no -0.0 on the wire


__all__ = ["DECIMALS", "ConversionStep", "QuantityConversion"]
