"""Stops of a line over a window, their reasons, and the losses per bucket: stored data + config.

Glue around the pure :func:`mes_adapter.oee.stops.detect_stops` and
:func:`mes_adapter.downtime.losses.loss_buckets`: the state timeline is the one OEE uses
(:meth:`OeeService.state_changes`), so stops here are exactly the stops OEE counts. A stop's reason
is, in this order: the one entered by an operator (stored), else the line's PLC reason tag value at
the stop's start mapped through ``reason_tags``, else none (the stop is *unexplained*).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mes_adapter.config.mes import LineConfig, MesConfig
from mes_adapter.downtime.losses import BucketLoss, bucket_of, loss_buckets
from mes_adapter.downtime.store import ReasonSource, ReasonStore, StopReason
from mes_adapter.errors import MesInputError
from mes_adapter.oee.compute import Interval, MachineState, merge, state_intervals
from mes_adapter.oee.service import OeeService
from mes_adapter.oee.stops import StopEvent, detect_stops, lost_in
from mes_adapter.production.records import RecordStorePort
from mes_adapter.timefmt import now_ms
from uns.conventions import Quality


class NoSuchStopError(MesInputError):
    """A reason was given for a stop that does not exist (no stop starts at that time on that line)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """A stop event with what explains it and where its loss goes, inside the window asked about."""

    event: StopEvent
    lost_ms: int
    bucket: str
    reason: StopReason | None

    def as_dict(self, config: MesConfig) -> dict[str, object]:
        reason: dict[str, object] | None = None
        if self.reason is not None:  # a code no longer in the hierarchy is shown with nulls, never dropped
            code = config.downtime.codes().get(self.reason.code)
            reason = {**self.reason.as_dict(), "category": code and code.category, "bucket": code and code.bucket,
                      "description": code and code.description}
        return {"start_ms": self.event.start_ms, "end_ms": None if self.event.open else self.event.end_ms,
                "down_s": self.event.down_ms / 1000, "lost_s": self.lost_ms / 1000, "micro": self.event.micro,
                "bucket": self.bucket, "reason": reason}


class DowntimeService:
    """Stops, reasons and loss buckets of configured lines."""

    def __init__(self, config: MesConfig, oee: OeeService, records: RecordStorePort, store: ReasonStore,
                 clock: Callable[[], int] = now_ms) -> None:
        self._config = config
        self._oee = oee
        self._records = records
        self.store = store
        self._clock = clock

    @property
    def _debounce_ms(self) -> int:
        return int(self._config.downtime.debounce_s * 1000)

    def _line(self, line: str) -> LineConfig:
        cfg = self._config.line(line)
        if cfg is None:
            raise MesInputError(f"line {line!r} is not configured for the MES adapter")
        return cfg

    def _events(self, cfg: LineConfig, window: Interval) -> tuple[list[StopEvent], list[Interval]]:
        """Stop events touching ``window`` (a stop that began before it keeps its true start) and planned downtime.

        The timeline is read from one debounce before the window, so a stop that flapped across the
        window's start is the same event (same start, the key of its reason) whatever the window.
        """
        changes = self._oee.state_changes(cfg, Interval(window.start_ms - self._debounce_ms - 1, window.end_ms))
        start = min([window.start_ms, *(c.ts_ms for c in changes)])
        pieces = state_intervals(Interval(start, window.end_ms), changes)
        threshold = self._config.oee.micro_stop_threshold_s
        events = detect_stops(pieces, debounce_ms=self._debounce_ms,
                              micro_stop_ms=None if threshold is None else int(threshold * 1000))
        planned = merge(
            [iv for iv in (p.clip(window) for p in self._config.calendar.planned_downtime_between(
                window.start_ms, window.end_ms, cfg.line)) if iv is not None]
            + [iv for iv, state in (p for p in pieces) if state is MachineState.PLANNED_DOWNTIME
               and iv.clip(window) is not None])
        return [e for e in events if e.end_ms > window.start_ms], planned

    def _reasons(self, cfg: LineConfig, events: list[StopEvent]) -> dict[int, StopReason]:
        if not events:
            return {}
        stored = self.store.between(cfg.line, events[0].start_ms, events[-1].start_ms + 1)
        tag = self._config.downtime.reason_tags.get(cfg.line)
        if tag is None:
            return stored
        out = dict(stored)
        for event in events:
            if event.start_ms in out:
                continue
            row = self._records.last_before(cfg.line, tag.cell, tag.metric, event.start_ms + 1)
            if row is None or row.quality is not Quality.GOOD:
                continue
            code = tag.codes.get(str(row.value))
            if code is not None:
                out[event.start_ms] = StopReason(cfg.line, event.start_ms, code, ReasonSource.PLC,
                                                 f"plc:{tag.metric}", row.source_ts_ms)
        return out

    def stops(self, line: str, window: Interval) -> list[Stop]:
        """Every stop with lost time inside ``window``, oldest first."""
        cfg = self._line(line)
        events, planned = self._events(cfg, window)
        reasons = self._reasons(cfg, events)
        out = []
        for event in events:
            lost = lost_in(event, window, planned)
            if lost <= 0:
                continue
            reason = reasons.get(event.start_ms)
            out.append(Stop(event, lost, bucket_of(event, None if reason is None else reason.code,
                                                   self._config.downtime), reason))
        return out

    def losses(self, line: str, window: Interval) -> dict[str, BucketLoss]:
        """Lost time and stop count per loss bucket inside ``window``."""
        cfg = self._line(line)
        events, planned = self._events(cfg, window)
        codes = {start: r.code for start, r in self._reasons(cfg, events).items()}
        return loss_buckets(events, codes, window, planned, self._config.downtime)

    def explain(self, line: str, stop_start_ms: int, code: str, who: str,
                comment: str | None = None) -> Stop:
        """Give the stop starting at ``stop_start_ms`` a reason code (replacing an earlier one).

        Refused with :class:`UnknownReasonError` for a code outside the hierarchy and with
        :class:`NoSuchStopError` when no stop starts there; nothing is stored then.
        """
        cfg = self._line(line)
        self._config.downtime.reason(code)
        probe = Interval(stop_start_ms, stop_start_ms + 1)
        events, _ = self._events(cfg, probe)
        if not any(e.start_ms == stop_start_ms for e in events):
            raise NoSuchStopError(f"no stop of line {line!r} starts at {stop_start_ms} "
                                  "(give start_ms as listed by /api/stops)")
        self.store.put(StopReason(cfg.line, stop_start_ms, code, ReasonSource.OPERATOR, who, self._clock(),
                                  comment))
        event = next(e for e in events if e.start_ms == stop_start_ms)
        return next(s for s in self.stops(line, Interval(stop_start_ms, max(self._clock(), event.end_ms)))
                    if s.event.start_ms == stop_start_ms)
