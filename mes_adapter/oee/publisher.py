"""Publishes each line's OEE retained on ``<line>/_mes/oee/batch`` and ``<line>/_mes/oee/shift``.

Why retained: a dashboard or MES client that subscribes late (or reconnects after a broker restart)
must see the line's current figures at once, not wait for the next change. ``batch`` is the running
batch, or the last one that ran; ``shift`` is the shift on now. A payload is published only when it
changed (``computed_at_ms`` aside), so a finished batch costs no traffic. The schema is in
docs/mes-downtime.md ("What _mes carries").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from mes_adapter.config.mes import MesConfig
from mes_adapter.context.service import ContextService
from mes_adapter.errors import MesError
from mes_adapter.lines import parse_line_key
from mes_adapter.oee.compute import Interval, OeeResult
from mes_adapter.oee.service import OeeService
from mes_adapter.timefmt import now_ms
from uns.isa95 import MES, NamespaceMapping

log = logging.getLogger("uns.adapter.oee")

#: ``(line, window) -> {bucket: {"lost_s", "stops"}}`` (the downtime service's losses)
Losses = Callable[[str, Interval], dict[str, Any]]


def oee_payload(line: str, scope: str, key: str, result: OeeResult, *, batches: list[str], shifts: list[str],
                computed_at_ms: int, losses: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of ``<line>/_mes/oee/<scope>`` (see docs/mes-downtime.md for each field)."""
    return {"line": line, "scope": scope, "key": key, "batches": batches, "shifts": shifts,
            **result.as_dict(), "losses": losses, "computed_at_ms": computed_at_ms}


def oee_topic(mapping: NamespaceMapping, line: str, scope: str) -> str:
    return mapping.line_topic(parse_line_key(line), MES, "oee", scope)


class OeePublisher:
    """Computes and publishes every configured line's batch and shift OEE when it changed."""

    def __init__(self, config: MesConfig, context: ContextService, oee: OeeService, mapping: NamespaceMapping,
                 publish: Callable[[str, bytes], None], losses: Losses | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self._config = config
        self._context = context
        self._oee = oee
        self._mapping = mapping
        self._publish = publish
        self._losses = losses
        self._clock = clock
        self._last: dict[tuple[str, str], dict[str, Any]] = {}

    def tick(self) -> int:
        """Publish what changed; returns how many messages were published. One line's failure skips only it."""
        published = 0
        now = self._clock()
        for cfg in self._config.lines:
            try:
                for scope, payload in self._payloads(cfg.line, now):
                    published += self._send(cfg.line, scope, payload)
            except MesError:
                log.exception("OEE of %s not published", cfg.line)
        return published

    def _payloads(self, line: str, now: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        batches = self._context.batch_windows(line)
        if batches:
            batch = batches[-1]
            window = self._oee.batch_interval(line, batch.batch_id)
            shifts = [s.key for s in self._config.calendar.shifts_between(window.start_ms, max(window.end_ms,
                                                                                                window.start_ms + 1))]
            out.append(("batch", self._payload(line, "batch", batch.batch_id, self._oee.batch_oee(line, batch.batch_id),
                                               window, [batch.batch_id], shifts, now)))
        shift = self._config.calendar.shift_at(now)
        if shift is not None:
            window = self._oee.shift_interval(shift)
            in_shift = sorted({b.batch_id for b in self._context.batch_windows(line, window.start_ms, window.end_ms)})
            out.append(("shift", self._payload(line, "shift", shift.key, self._oee.shift_oee(line, shift),
                                               window, in_shift, [shift.key], now)))
        return out

    def _payload(self, line: str, scope: str, key: str, result: OeeResult, window: Interval, batches: list[str],
                 shifts: list[str], now: int) -> dict[str, Any]:
        losses = None if self._losses is None else self._losses(line, window)
        return oee_payload(line, scope, key, result, batches=batches, shifts=shifts, computed_at_ms=now,
                           losses=losses)

    def _send(self, line: str, scope: str, payload: dict[str, Any]) -> int:
        same = {k: v for k, v in payload.items() if k != "computed_at_ms"}
        if self._last.get((line, scope)) == same:
            return 0
        self._publish(oee_topic(self._mapping, line, scope), json.dumps(payload, separators=(",", ":")).encode())
        self._last[(line, scope)] = same
        return 1
