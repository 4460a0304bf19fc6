"""OEE per batch, per shift or per any window of a line, from stored data and configuration.

Glue around the pure :func:`mes_adapter.oee.compute.compute_oee`: the state timeline comes from the
records store (the configured state metric, mapped by name to OEE categories; BAD/STALE state values
mean UNKNOWN), the counts per product from the production counters inside each context segment,
the ideal cycle time per product from the line config, planned downtime from the shift calendar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from mes_adapter.config.mes import LineConfig, MesConfig
from mes_adapter.context.service import ContextService
from mes_adapter.errors import MesInputError
from mes_adapter.oee.compute import (
    Interval,
    MachineState,
    OeeResult,
    ProductionCount,
    StateChange,
    compute_oee,
    state_intervals,
)
from mes_adapter.oee.shifts import ShiftWindow
from mes_adapter.production.quantities import ProductionCounters
from mes_adapter.production.records import RecordStorePort
from mes_adapter.timefmt import now_ms
from uns.conventions import Quality

_MAX_STATE_ROWS = 1_000_000

#: ``(line, start_ms, end_ms, {(cell, metric)}) -> reasons`` the inputs of a window are incomplete
GapFinder = Callable[[str, int, int, set[tuple[str | None, str]]], list[str]]


class OeeService:
    """OEE of configured lines over batches, shifts and arbitrary windows."""

    def __init__(self, config: MesConfig, context: ContextService, production: ProductionCounters,
                 records: RecordStorePort, clock: Callable[[], int] = now_ms, gaps: GapFinder | None = None) -> None:
        self._config = config
        #: where quality episodes come from (the episode service); None: no completeness check
        self.gaps = gaps
        self._context = context
        self._production = production
        self._records = records
        self._clock = clock

    def _line(self, line: str) -> LineConfig:
        cfg = self._config.line(line)
        if cfg is None:
            raise MesInputError(f"line {line!r} is not configured for the MES adapter")
        return cfg

    def state_changes(self, cfg: LineConfig, window: Interval) -> list[StateChange]:
        if cfg.state is None:
            return []
        signal = cfg.state
        cell = signal.cell or ""
        rows = self._records.query(cfg.line, window.start_ms, window.end_ms, metric=signal.metric,
                                   cell=cell, limit=_MAX_STATE_ROWS)
        before = self._records.last_before(cfg.line, signal.cell, signal.metric, window.start_ms)
        if before is not None:
            rows.insert(0, before)
        return [StateChange(r.source_ts_ms,
                            MachineState.UNKNOWN if r.quality in (Quality.BAD, Quality.STALE)
                            else signal.categorize(r.value)) for r in rows]

    def running_ms(self, line: str, intervals: list[Interval]) -> int:
        """Machine time: how long the line's state was ``RUNNING`` inside ``intervals`` (0 without a state tag)."""
        cfg = self._line(line)
        total = 0
        for iv in intervals:
            total += sum(piece.duration_ms for piece, state in state_intervals(iv, self.state_changes(cfg, iv))
                         if state is MachineState.RUNNING)
        return total

    def counts(self, cfg: LineConfig, window: Interval) -> list[ProductionCount]:
        """Counts per product: context segments inside the window, the rest as 'no product'."""
        by_product: dict[str | None, list[Interval]] = {}
        covered: list[Interval] = []
        for seg in self._context.segments(cfg.line, window.start_ms, window.end_ms):
            end = window.end_ms if seg.end_ms is None else seg.end_ms
            part = Interval(seg.start_ms, end).clip(window)
            if part is not None:
                by_product.setdefault(seg.assertion.product_id, []).append(part)
                covered.append(part)
        cursor = window.start_ms
        for part in sorted(covered):
            if part.start_ms > cursor:
                by_product.setdefault(None, []).append(Interval(cursor, part.start_ms))
            cursor = max(cursor, part.end_ms)
        if cursor < window.end_ms:
            by_product.setdefault(None, []).append(Interval(cursor, window.end_ms))
        out = []
        for product, intervals in sorted(by_product.items(), key=lambda kv: str(kv[0])):
            q = self._production.quantities(cfg.line, intervals)
            if product is None and q.produced == 0:
                continue
            out.append(ProductionCount(good=q.good, scrap=q.scrap,
                                       ideal_cycle_s=cfg.ideal_cycle_for(product), product_id=product))
        return out

    def window_oee(self, line: str, window: Interval) -> OeeResult:
        cfg = self._line(line)
        threshold = self._config.oee.micro_stop_threshold_s
        debounce_ms = int(self._config.downtime.debounce_s * 1000)
        # read from one debounce before the window, as the downtime service does: the same stop events
        changes = self.state_changes(cfg, Interval(window.start_ms - debounce_ms - 1, window.end_ms))
        result = compute_oee(
            window, changes, self.counts(cfg, window),
            self._config.calendar.planned_downtime_between(window.start_ms, window.end_ms, line),
            None if threshold is None else int(threshold * 1000), debounce_ms=debounce_ms)
        if self.gaps is None:
            return result
        inputs = {(c.cell, c.metric) for c in cfg.counters}
        if cfg.state is not None:
            inputs.add((cfg.state.cell, cfg.state.metric))
        reasons = self.gaps(line, window.start_ms, window.end_ms, inputs)
        return replace(result, incomplete_reasons=tuple(reasons)) if reasons else result

    def batch_interval(self, line: str, batch_id: str) -> Interval:
        """The batch from its start to its end (or now while it runs)."""
        batch = self._context.batch_window(line, batch_id)
        if batch is None:
            raise MesInputError(f"batch {batch_id!r} never ran on line {line!r}")
        end = batch.end_ms if batch.end_ms is not None else max(batch.start_ms, self._clock())
        return Interval(batch.start_ms, end)

    def shift_interval(self, shift: ShiftWindow) -> Interval:
        """One shift occurrence (up to now while it runs)."""
        end = min(shift.interval.end_ms, max(shift.interval.start_ms, self._clock()))
        return Interval(shift.interval.start_ms, end)

    def batch_oee(self, line: str, batch_id: str) -> OeeResult:
        """OEE from the batch start to its end (or now while it runs)."""
        return self.window_oee(line, self.batch_interval(line, batch_id))

    def shift_oee(self, line: str, shift: ShiftWindow) -> OeeResult:
        """OEE of one shift occurrence (up to now while it runs)."""
        return self.window_oee(line, self.shift_interval(shift))

