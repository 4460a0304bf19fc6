"""What genealogy records: consumption of a lot by a batch, a lot produced by a batch, splits and merges."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mes_adapter.lines import line_key

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


class _BatchLot(BaseModel):
    """A lot tied to a batch on a line, with its material, quantity and unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line: str
    batch_id: str = Field(min_length=1, max_length=64)
    lot_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    material_id: str = Field(min_length=1, max_length=64)
    quantity: float = Field(gt=0)
    uom: str = Field(min_length=1, max_length=16)

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return line_key(value)

    def describe(self) -> str:
        return f"{self.quantity:g} {self.uom} of {self.material_id} (batch {self.batch_id} on {self.line})"


class Consumption(_BatchLot):
    """Batch ``batch_id`` on ``line`` consumed ``quantity`` ``uom`` of lot ``lot_id`` (material ``material_id``)."""


class ProducedLot(_BatchLot):
    """Batch ``batch_id`` on ``line`` produced lot ``lot_id`` of ``material_id``."""


class LotQuantity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lot_id: str = Field(min_length=1, max_length=64, pattern=_ID)
    quantity: float = Field(gt=0)
    uom: str = Field(min_length=1, max_length=16)


class LinkKind(StrEnum):
    SPLIT = "split"
    MERGE = "merge"


class LotLink(BaseModel):
    """A split (one lot into several new ones) or a merge (several lots into one new one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LinkKind
    sources: list[LotQuantity] = Field(min_length=1)
    targets: list[LotQuantity] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> LotLink:
        if self.kind is LinkKind.SPLIT and (len(self.sources) != 1 or len(self.targets) < 2):
            raise ValueError("a split takes one source lot into two or more target lots")
        if self.kind is LinkKind.MERGE and (len(self.targets) != 1 or len(self.sources) < 2):
            raise ValueError("a merge takes two or more source lots into one target lot")
        ids = [q.lot_id for q in (*self.sources, *self.targets)]
        if len(ids) != len(set(ids)):
            raise ValueError("a lot appears twice in one split or merge")
        return self


class BatchRef(BaseModel):
    """One batch reached by a trace."""

    model_config = ConfigDict(frozen=True)

    line: str
    batch_id: str


class Trace(BaseModel):
    """The answer of a trace query: every lot and batch reached, and the end points."""

    lot_id: str
    direction: str
    #: each batch reached, sorted by line and batch id
    batches: list[BatchRef]
    #: every lot reached (the start lot excluded), sorted
    lots: list[str]
    #: backward: lots nothing was made from (raw lots); forward: lots nothing was made from yet (finished lots)
    end_lots: list[str]
