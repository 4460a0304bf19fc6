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
from collections.abc import Callable

from mes_adapter.config.mes import MesConfig
from mes_adapter.confirmations.outbox import EnqueueResult, Outbox
from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    PlannedConfirmation,
    ProductionConfirmation,
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
                 outbox: Outbox, clock: Callable[[], int] = now_ms) -> None:
        self._config = config
        self._context = context
        self._production = production
        self._outbox = outbox
        self._clock = clock
        self._interval_ms = (None if config.partial_interval_s is None
                             else int(config.partial_interval_s * 1000))
        self._grace_ms = int(config.confirmation_grace_s * 1000)
        self._lookback_ms = int(config.counter_reorder_horizon_s * 1000)
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
        held = self.held is not None and self.held(batch.line, batch.batch_id)
        for planned in plan(batch, now, self._interval_ms, self._grace_ms, confirmed,
                            total.minus(done)):
            if held and planned.kind is not ConfirmationKind.PARTIAL:
                break
            quantities = self._to_date(batch, planned).minus(done)
            confirmation = build_confirmation(planned, quantities, uoms, product_uom)
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

    def _to_date(self, batch: BatchWindow, planned: PlannedConfirmation) -> Quantities:
        until = None if planned.kind is ConfirmationKind.LATE else planned.end_ms
        return self._production.quantities(batch.line, batch_intervals(batch, until))
