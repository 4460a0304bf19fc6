"""Deciding, building and enqueueing the confirmations that are due, line by line.

The glue between the context timeline (batch windows), the production counters (quantities per
window), the pure planner/builder (:mod:`mes_adapter.confirmations.planning`) and the durable outbox. The
outbox is also the ledger of what was confirmed: after a restart, :meth:`run_due` sees the same
confirmed windows and builds only what is missing, with the same ids.

Call :meth:`ConfirmationService.run_due` periodically (every few seconds) and after a batch ends;
publish what it returns on ``<line>/_mes/confirmation`` (:func:`confirmation_message`) and wake the
webhook sender.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from mes_adapter.config.mes import MesConfig
from mes_adapter.confirmations.outbox import EnqueueResult, OutboxStore
from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    ConsumedMaterial,
    DataItem,
    PlannedConfirmation,
    ProductionConfirmation,
    RejectSplit,
    build_confirmation,
    canonical_json,
    confirmation_topic,
    plan,
)
from mes_adapter.context.models import BatchWindow
from mes_adapter.context.service import ContextService
from mes_adapter.errors import OutboxConflictError
from mes_adapter.oee.compute import Interval
from mes_adapter.production.quantities import ProductionCounters, Quantities
from mes_adapter.timefmt import now_ms
from uns.isa95 import NamespaceMapping

log = logging.getLogger(__name__)

_FOREVER = 2**62

#: ``(line, batch_id) -> (scrap, rework, accepted)`` QA classified so far (mes_adapter.quality)
DispositionTotals = Callable[[str, str], tuple[float, float, float]]


def batch_intervals(batch: BatchWindow, until_ms: int | None = None) -> list[Interval]:
    """The batch's segments as intervals, cut at ``until_ms`` (None: up to the batch end or now)."""
    out = []
    for seg in batch.segments:
        end = _FOREVER if seg.end_ms is None else seg.end_ms
        if until_ms is not None:
            end = min(end, until_ms)
        if end > seg.start_ms:
            out.append(Interval(seg.start_ms, end))
    return out


def confirmation_message(mapping: NamespaceMapping,
                         confirmation: ProductionConfirmation) -> tuple[str, bytes]:
    """``(topic, payload)`` to publish a confirmation on the UNS (QoS 1)."""
    return confirmation_topic(mapping, confirmation.equipment_path), canonical_json(confirmation)


class ConfirmationService:
    """Builds due confirmations for every configured line and puts them in the outbox."""

    def __init__(self, config: MesConfig, context: ContextService, production: ProductionCounters,
                 outbox: OutboxStore, clock: Callable[[], int] = now_ms) -> None:
        self._config = config
        self._context = context
        self._production = production
        self._outbox = outbox
        self._clock = clock
        self._interval_ms = (None if config.partial_interval_s is None
                             else int(config.partial_interval_s * 1000))
        self._grace_ms = int(config.confirmation_grace_s * 1000)
        self._lookback_ms = int(config.counter_reorder_horizon_s * 1000)
        #: set by the composition root when ``mes.disposition.required``: rejects wait for QA
        self.dispositions: DispositionTotals | None = None
        #: finals held back because rejects are pending disposition (``final: wait``), per batch
        self.waiting_for_disposition: set[tuple[str, str]] = set()
        #: ``(line, intervals) -> ms`` the line ran (the OEE state timeline); None: no machine time
        self.machine_time: Callable[[str, list[Interval]], int] | None = None
        #: ``(line, intervals) -> ms`` of crew presence inside them (mes_adapter.crew); None: no labour time
        self.labour_time: Callable[[str, list[Interval]], int] | None = None
        #: the lots a batch consumed (line, batch_id) -> objects with lot_id, material_id, quantity, uom;
        #: set by the service to the genealogy (mes_adapter.genealogy), listed on the final confirmation
        self.lots_of: Callable[[str, str], Sequence[Any]] = lambda _line, _batch: []
        #: ``(line, batch_id) -> True`` while the batch is on hold (mes_adapter.alarms): its final and
        #: late confirmations wait for the signed release; partial ones go on
        self.held: Callable[[str, str], bool] | None = None

    def run_due(self, now: int | None = None) -> list[ProductionConfirmation]:
        """Enqueue every due confirmation of every configured line; return the newly enqueued ones."""
        now = self._clock() if now is None else now
        new: list[ProductionConfirmation] = []
        for line in self._config.lines:
            for batch in self._context.batch_windows(line.line, now - self._lookback_ms, now):
                new.extend(self.run_batch(batch, now))
        return new

    def run_batch(self, batch: BatchWindow, now: int) -> list[ProductionConfirmation]:
        """Enqueue the due confirmations of one batch, in window order."""
        line_cfg = self._config.line(batch.line)
        confirmed = self._outbox.confirmed_windows(batch.line, batch.batch_id)
        done = Quantities()
        for c in confirmed:
            done = done.plus(c.quantities)
        total = self._production.quantities(batch.line, batch_intervals(batch))
        new: list[ProductionConfirmation] = []
        uoms = {c.material_id: c.uom for c in (line_cfg.counters if line_cfg else [])
                if c.material_id is not None}
        product_uom = line_cfg.uom if line_cfg else "EA"
        conversions = line_cfg.conversions if line_cfg else {}
        material_conversions = {c.material_id: c.conversion for c in (line_cfg.counters if line_cfg else [])
                                if c.material_id is not None and c.conversion is not None}
        held = self.held is not None and self.held(batch.line, batch.batch_id)
        for planned in plan(batch, now, self._interval_ms, self._grace_ms, confirmed,
                            total.minus(done)):
            if held and planned.kind is not ConfirmationKind.PARTIAL:
                break
            quantities = self._to_date(batch, planned).minus(done)
            split = self._split(batch, planned, quantities, total, done)
            if split is False:
                break
            lots = ([ConsumedMaterial(material_id=c.material_id, lot_id=c.lot_id, uom=c.uom, quantity=c.quantity)
                     for c in self.lots_of(batch.line, batch.batch_id)]
                    if planned.kind is ConfirmationKind.FINAL else [])
            confirmation = build_confirmation(planned, quantities, uoms, product_uom, self._data(batch, planned),
                                              split=split if isinstance(split, RejectSplit) else None, lots=lots,
                                              conversions=conversions, material_conversions=material_conversions)
            try:
                result = self._outbox.enqueue(confirmation)
            except OutboxConflictError:
                log.error("confirmation %s conflicts with the stored one; not re-sent",
                          confirmation.confirmation_id)
                break
            done = done.plus(quantities)
            if result is EnqueueResult.ENQUEUED:
                new.append(confirmation)
        return new

    def _split(self, batch: BatchWindow, planned: PlannedConfirmation, quantities: Quantities, total: Quantities,
               done: Quantities) -> RejectSplit | bool:
        """How this confirmation reports its rejects with QA disposition on; True: disposition off
        (all scrap); False: a final that must wait for QA (``final: wait`` with rejects pending).

        Partials (and late supplements) report their rejects as pending. The final reports the
        batch's whole classification and, as pending, what is still pending minus what earlier
        confirmations already reported pending (``done.scrap``: they never classify), so every
        quantity stays additive over the batch's confirmations."""
        if self.dispositions is None:
            return True
        if planned.kind is not ConfirmationKind.FINAL:
            return RejectSplit(scrap=0.0, rework=0.0, accepted=0.0, pending=quantities.scrap)
        scrap, rework, accepted = self.dispositions(batch.line, batch.batch_id)
        still_pending = total.scrap - (scrap + rework + accepted)
        key = (batch.line, batch.batch_id)
        if self._config.disposition.final == "wait" and still_pending > 1e-9:
            if key not in self.waiting_for_disposition:
                log.info("final confirmation of batch %s on %s waits for QA: %g rejects pending disposition",
                         batch.batch_id, batch.line, still_pending)
            self.waiting_for_disposition.add(key)
            return False
        self.waiting_for_disposition.discard(key)
        return RejectSplit(scrap=scrap, rework=rework, accepted=accepted, pending=still_pending - done.scrap)

    def _data(self, batch: BatchWindow, planned: PlannedConfirmation) -> list[DataItem]:
        """Machine time (running state inside the batch's segments) and labour time (the crew's
        presence inside them, stops and holds included: see :mod:`mes_adapter.crew.models`) of the
        window, for the ERP's activity confirmation. A late supplement corrects quantities only: no
        time of its own."""
        if planned.kind is ConfirmationKind.LATE:
            return []
        window = Interval(planned.start_ms, planned.end_ms)
        parts = [p for p in (iv.clip(window) for iv in batch_intervals(batch, planned.end_ms)) if p is not None]
        out = []
        if self.machine_time is not None:
            out.append(DataItem(name="machine_time", value=self.machine_time(batch.line, parts) / 1000, uom="s"))
        if self.labour_time is not None:
            out.append(DataItem(name="labour_time", value=self.labour_time(batch.line, parts) / 1000, uom="s"))
        return out

    def _to_date(self, batch: BatchWindow, planned: PlannedConfirmation) -> Quantities:
        until = None if planned.kind is ConfirmationKind.LATE else planned.end_ms
        return self._production.quantities(batch.line, batch_intervals(batch, until))
