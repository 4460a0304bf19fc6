"""Production confirmations (a minimal JSON ISA-95 production response): their shape, their id, and when they are due.

Pure, no I/O. Rules, stated once:

* ``confirmation_id`` is the idempotency key: a UUIDv5 of line, batch, kind, window and supplement
  index. Rebuilding the same confirmation after a restart gives the same id; a retry re-sends the
  stored body, so the same id always carries the same bytes (:func:`canonical_json`).
* Quantities are deltas, never counter values. Each confirmation of a batch carries what was counted
  in the batch up to its window end *and not yet confirmed* — so counts that arrived late for an
  earlier window ride on the next confirmation, and the sum of a batch's confirmations equals the
  batch total when the last one was built.
* Windows: partial confirmations every ``interval`` from the batch start
  (``[start + k·interval, start + (k+1)·interval)``), each due ``grace`` after its end; the final one
  covers the rest up to the batch end, due ``grace`` after it. A window cut by the batch end is not a
  partial: the final covers it.
* Counts arriving after the final (store-and-forward replay past the grace) make a *late*
  supplement: a new confirmation (``kind="late"``, ``supplement`` n) for the batch window with the
  difference, never an edit of the final.
* ``lot_id`` of the produced material is the batch id (the batch is the produced lot).
* Quantities are counts in the unit the counters count in (``uom``). With a conversion configured
  (per product for good/reject counts, per consumed counter), a material also carries
  ``converted``: the same quantities in the material's unit, with the units and factors used
  (:mod:`mes_adapter.production.conversion`). Without one, the bytes are what they were.
* Planning is bounded whatever the batch's age: it resumes after the last confirmed partial, and
  when more than ``max_windows`` partials are due at once (a batch that, by a stored mistake, began
  in 1970) they are covered by one *catch-up* partial up to the last due window boundary. So one
  planning step costs at most ``max_windows`` windows, never one per hour since 1970.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SerializerFunctionWrapHandler, model_serializer

from mes_adapter.context.models import BatchWindow, ContextAssertion
from mes_adapter.lines import parse_line_key
from mes_adapter.production.conversion import QuantityConversion
from mes_adapter.production.quantities import Quantities
from mes_adapter.timefmt import iso_utc
from uns.isa95 import MES, NamespaceMapping

#: namespace of confirmation ids (a fixed random UUID: ids are stable across versions and hosts)
CONFIRMATION_NAMESPACE = uuid.UUID("3a0f7c52-9d1e-4b8a-8f43-6c2d15e0b7a9")


def _count_json(value: float) -> int | float:
    """Whole quantities as JSON integers (``9800``, not ``9800.0``); fractions (kg, l) stay."""
    return int(value) if float(value).is_integer() else value


#: a quantity: float inside, integer on the wire when whole
Quantity = Annotated[float, PlainSerializer(_count_json, return_type=int | float)]


class ConfirmationKind(StrEnum):
    PARTIAL = "partial"
    FINAL = "final"
    LATE = "late"


def _drop_none(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Optional fields absent rather than null, so confirmations without them keep their bytes."""
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class ConvertedQuantities(BaseModel):
    """A material's quantities in its own unit (``uom``), converted from the counted ones.

    ``via`` names the units from the counted one to ``uom`` and ``factors`` the factor of each step,
    so the ERP can recompute every number from the count."""

    model_config = ConfigDict(frozen=True)

    uom: str
    via: list[str]
    factors: list[float]
    good: Quantity | None = None
    scrap: Quantity | None = None
    rework: Quantity | None = None
    accepted: Quantity | None = None
    pending_disposition: Quantity | None = None
    quantity: Quantity | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler(self), "good", "scrap", "rework", "accepted", "pending_disposition", "quantity")

    @classmethod
    def of(cls, conversion: QuantityConversion, **counted: float | None) -> ConvertedQuantities:
        return cls(uom=conversion.uom, via=conversion.units, factors=conversion.factors,
                   **{k: None if v is None else conversion.convert(v) for k, v in counted.items()})


class ProducedMaterial(BaseModel):
    model_config = ConfigDict(frozen=True)

    material_id: str | None
    lot_id: str | None = None
    uom: str = "EA"
    good: Quantity
    scrap: Quantity
    rework: Quantity = 0
    #: with QA disposition on (``mes.disposition.required``): rejects QA released as good product
    accepted: Quantity | None = None
    #: with QA disposition on: rejects not classified yet. Additive like every quantity: the sum
    #: over a batch's confirmations is what is pending now (a final may carry a negative one that
    #: takes back what earlier partials reported pending and it classifies)
    pending_disposition: Quantity | None = None
    #: the quantities above in the product's unit (a conversion is configured for the product)
    converted: ConvertedQuantities | None = None

    @model_serializer(mode="wrap")
    def _without_unset_disposition(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Without disposition (or conversion) the bytes stay what they were (stored confirmations
        are compared by bytes)."""
        return _drop_none(handler(self), "accepted", "pending_disposition", "converted")

    @property
    def rejects(self) -> float:
        """Every reject this line carries, however classified (what the reject counters counted)."""
        return self.scrap + self.rework + (self.accepted or 0) + (self.pending_disposition or 0)


@dataclass(frozen=True, slots=True)
class RejectSplit:
    """How a confirmation reports its rejects when QA disposition is on (see ProducedMaterial)."""

    scrap: float
    rework: float
    accepted: float
    pending: float


class ConsumedMaterial(BaseModel):
    model_config = ConfigDict(frozen=True)

    material_id: str
    lot_id: str | None = None
    uom: str = "EA"
    quantity: Quantity
    #: the quantity in the material's unit (the consumed counter has a conversion)
    converted: ConvertedQuantities | None = None

    @model_serializer(mode="wrap")
    def _without_conversion(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler(self), "converted")


class DataItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    value: float | str | None
    uom: str | None = None


class ConfirmationSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    counter_window: tuple[str, str]
    evidence_hash: str
    context_seq: int


class ProductionConfirmation(BaseModel):
    """The JSON the MES receives (webhook body and ``<line>/_mes/confirmation`` payload)."""

    model_config = ConfigDict(frozen=True)

    type: Literal["production_confirmation"] = "production_confirmation"
    schema_version: int = 1
    confirmation_id: str
    kind: ConfirmationKind
    supplement: int = 0
    work_order_id: str | None
    operation_id: str | None = None
    batch_id: str
    equipment_path: str
    start_time: str
    end_time: str
    state: str
    final: bool
    produced: list[ProducedMaterial]
    consumed: list[ConsumedMaterial] = Field(default_factory=list)
    data: list[DataItem] = Field(default_factory=list)
    source: ConfirmationSource


def canonical_json(confirmation: ProductionConfirmation) -> bytes:
    """The exact bytes sent and stored: sorted keys, no spaces, so equal content ⇔ equal bytes."""
    return json.dumps(confirmation.model_dump(mode="json"), sort_keys=True,
                      separators=(",", ":")).encode()


def confirmation_id(line: str, batch_id: str, kind: ConfirmationKind, start_ms: int, end_ms: int,
                    supplement: int = 0) -> str:
    """Deterministic idempotency key of one confirmation window."""
    name = f"{line}|{batch_id}|{kind.value}|{start_ms}|{end_ms}|{supplement}"
    return str(uuid.uuid5(CONFIRMATION_NAMESPACE, name))


def confirmation_topic(mapping: NamespaceMapping, line: str) -> str:
    """``<line>/_mes/confirmation`` under the mapping's mirror root."""
    return mapping.line_topic(parse_line_key(line), MES, "confirmation")


@dataclass(frozen=True, slots=True)
class PlannedConfirmation:
    """A confirmation that is due: which batch, which kind, which window."""

    batch: BatchWindow
    kind: ConfirmationKind
    start_ms: int
    end_ms: int
    supplement: int = 0

    @property
    def confirmation_id(self) -> str:
        return confirmation_id(self.batch.line, self.batch.batch_id, self.kind, self.start_ms,
                               self.end_ms, self.supplement)


@dataclass(frozen=True, slots=True)
class ConfirmedWindow:
    """What the outbox says was already confirmed for a batch (one row per confirmation)."""

    kind: ConfirmationKind
    start_ms: int
    end_ms: int
    supplement: int
    quantities: Quantities


#: at most this many partial windows are planned at once (see the module rules)
MAX_WINDOWS = 1000


def plan(batch: BatchWindow, now_ms: int, interval_ms: int | None, grace_ms: int,
         confirmed: list[ConfirmedWindow], unconfirmed: Quantities | None = None,
         max_windows: int = MAX_WINDOWS) -> list[PlannedConfirmation]:
    """Confirmations of ``batch`` due at ``now_ms`` that are not yet in ``confirmed``, in order.

    ``unconfirmed`` (batch total minus everything confirmed) decides a late supplement after the
    final; pass None to skip that check.
    """
    done = {(c.kind, c.start_ms, c.end_ms, c.supplement) for c in confirmed}
    out: list[PlannedConfirmation] = []
    partial_ends = [c.end_ms for c in confirmed if c.kind is ConfirmationKind.PARTIAL]
    cursor = max(partial_ends, default=batch.start_ms)
    if interval_ms is not None:
        limit = now_ms - grace_ms if batch.end_ms is None else min(now_ms - grace_ms, batch.end_ms - 1)
        due = max(0, (limit - cursor) // interval_ms)
        if due > max_windows:
            end = cursor + due * interval_ms
            out.append(PlannedConfirmation(batch, ConfirmationKind.PARTIAL, cursor, end))
            cursor = end
        while True:
            end = cursor + interval_ms
            if batch.end_ms is not None and end >= batch.end_ms:
                break
            if end + grace_ms > now_ms:
                return [p for p in out if (p.kind, p.start_ms, p.end_ms, p.supplement) not in done]
            out.append(PlannedConfirmation(batch, ConfirmationKind.PARTIAL, cursor, end))
            cursor = end
    if batch.end_ms is not None and batch.end_ms + grace_ms <= now_ms:
        # an end asserted back in time may fall inside an already confirmed window: the final then
        # is the empty window at the end, carrying the (negative) correction
        out.append(PlannedConfirmation(batch, ConfirmationKind.FINAL, min(cursor, batch.end_ms), batch.end_ms))
        final_done = any(c.kind is ConfirmationKind.FINAL for c in confirmed)
        if final_done and unconfirmed is not None and not unconfirmed.is_zero:
            supplements = sum(1 for c in confirmed if c.kind is ConfirmationKind.LATE)
            out.append(PlannedConfirmation(batch, ConfirmationKind.LATE, batch.start_ms,
                                           batch.end_ms, supplements + 1))
    return [p for p in out if (p.kind, p.start_ms, p.end_ms, p.supplement) not in done]


def evidence_hash(planned: PlannedConfirmation, quantities: Quantities, context: ContextAssertion) -> str:
    """sha256 over what the numbers were computed from (window, context seq, quantities)."""
    evidence: dict[str, Any] = {
        "line": planned.batch.line, "batch_id": planned.batch.batch_id, "kind": planned.kind.value,
        "window": [planned.start_ms, planned.end_ms], "supplement": planned.supplement,
        "context_seq": context.seq, "good": quantities.good, "scrap": quantities.scrap,
        "consumed": quantities.consumed,
    }
    digest = hashlib.sha256(json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + digest.hexdigest()


def build_confirmation(planned: PlannedConfirmation, quantities: Quantities,
                       uoms: dict[str, str] | None = None, product_uom: str = "EA",
                       data: list[DataItem] | None = None, split: RejectSplit | None = None,
                       lots: list[ConsumedMaterial] | None = None,
                       conversions: dict[str, QuantityConversion] | None = None,
                       material_conversions: dict[str, QuantityConversion] | None = None) -> ProductionConfirmation:
    """The confirmation of one planned window carrying ``quantities`` (already net of earlier ones).

    ``split``: with QA disposition, how ``quantities.scrap`` (the window's rejects) is reported;
    None: every reject as scrap.

    ``lots`` are the consumed lots asserted for the batch (genealogy; the final confirmation only):
    they are listed after the counted materials, each with its ``lot_id``, and are not counter
    quantities (:func:`quantities_of` leaves them out, so they never net against counts).

    ``conversions`` (product id -> conversion) and ``material_conversions`` (material id ->
    conversion of its consumed counter) add the quantities in the material's unit; the produced
    material's ``uom`` is then the unit its counters count in.

    Work order, product and operation come from the batch's last context in the window.
    """
    uoms = uoms or {}
    material_conversions = material_conversions or {}
    context = _context_for(planned)
    final = planned.kind is not ConfirmationKind.PARTIAL
    conversion = (conversions or {}).get(context.product_id) if context.product_id is not None else None
    produced = ProducedMaterial(material_id=context.product_id, lot_id=planned.batch.batch_id,
                                uom=conversion.counted_in if conversion else context.uom or product_uom,
                                good=quantities.good, scrap=quantities.scrap if split is None else split.scrap,
                                rework=0 if split is None else split.rework,
                                accepted=None if split is None else split.accepted,
                                pending_disposition=None if split is None else split.pending)
    if conversion is not None:
        produced = produced.model_copy(update={"converted": ConvertedQuantities.of(
            conversion, good=produced.good, scrap=produced.scrap, rework=produced.rework,
            accepted=produced.accepted, pending_disposition=produced.pending_disposition)})
    return ProductionConfirmation(
        confirmation_id=planned.confirmation_id,
        kind=planned.kind,
        supplement=planned.supplement,
        work_order_id=context.work_order_id,
        operation_id=context.operation_id,
        batch_id=planned.batch.batch_id,
        equipment_path=planned.batch.line,
        start_time=iso_utc(planned.start_ms),
        end_time=iso_utc(planned.end_ms),
        state="Completed" if final else "Running",
        final=final,
        produced=[produced],
        consumed=[_consumed(m, uoms.get(m, "EA"), q, material_conversions.get(m))
                  for m, q in sorted(quantities.consumed.items())] + list(lots or []),
        data=list(data or []),
        source=ConfirmationSource(counter_window=(iso_utc(planned.start_ms), iso_utc(planned.end_ms)),
                                  evidence_hash=evidence_hash(planned, quantities, context),
                                  context_seq=context.seq),
    )


def _consumed(material_id: str, uom: str, quantity: float, conversion: QuantityConversion | None) -> ConsumedMaterial:
    converted = None if conversion is None else ConvertedQuantities.of(conversion, quantity=quantity)
    return ConsumedMaterial(material_id=material_id, uom=uom, quantity=quantity, converted=converted)


def _context_for(planned: PlannedConfirmation) -> ContextAssertion:
    """The batch context governing the end of the window (the latest phase within it)."""
    chosen = planned.batch.first
    for seg in planned.batch.segments:
        if seg.start_ms < planned.end_ms:
            chosen = seg.assertion
    return chosen


def quantities_of(confirmation: ProductionConfirmation) -> Quantities:
    """The quantities a stored confirmation carried (to subtract from the batch total)."""
    good = sum(p.good for p in confirmation.produced)
    scrap = sum(p.rejects for p in confirmation.produced)
    consumed: dict[str, float] = {}
    for c in confirmation.consumed:
        if c.lot_id is not None:  # an asserted lot (genealogy), not a counted quantity
            continue
        consumed[c.material_id] = consumed.get(c.material_id, 0.0) + c.quantity
    return Quantities(good, scrap, consumed)
