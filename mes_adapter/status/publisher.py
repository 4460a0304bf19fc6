"""Publishes each line's data status retained on ``<line>/_mes/status`` whenever it changes.

Plant apps reading the UNS must learn that a line's figures rest on incomplete inputs (a dead
device, BAD tags) the same way the REST API and the dashboard say it. A one-second poll of the
pure :func:`mes_adapter.status.data_status.line_data_status` is cheap (it walks the live model) and
publishes only on a change, so a steady line costs no traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from mes_adapter.lines import parse_line_key
from mes_adapter.status.data_status import DataStatus
from mes_adapter.timefmt import now_ms
from uns.isa95 import MES, NamespaceMapping

log = logging.getLogger("uns.adapter.status")


def status_message(mapping: NamespaceMapping, line: str, status: DataStatus, at_ms: int) -> tuple[str, bytes]:
    """``(topic, payload)`` of ``<line>/_mes/status``."""
    topic = mapping.line_topic(parse_line_key(line), MES, "status")
    payload = {"line": line, **status.model_dump(mode="json"), "timestamp_ms": at_ms}
    return topic, json.dumps(payload, separators=(",", ":")).encode()


class LineStatusPublisher:
    def __init__(self, mapping: NamespaceMapping, lines: Callable[[], list[str]],
                 compute: Callable[[list[str]], dict[str, DataStatus]], publish: Callable[[str, bytes], None],
                 notify: Callable[[str, DataStatus], None] | None = None) -> None:
        self._mapping = mapping
        self._lines = lines
        self._compute = compute
        self._publish = publish
        self._notify = notify
        self._last: dict[str, DataStatus] = {}

    def tick(self, at_ms: int | None = None) -> int:
        """Publish the status of every line whose status changed; returns how many were published."""
        published = 0
        for line, status in self._compute(self._lines()).items():
            if self._last.get(line) == status:
                continue
            self._last[line] = status
            self._publish(*status_message(self._mapping, line, status, now_ms() if at_ms is None else at_ms))
            if self._notify is not None:
                self._notify(line, status)
            published += 1
        return published

    async def run(self, stopping: asyncio.Event, every_s: float = 1.0) -> None:
        while not stopping.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a status hiccup must not end the loop
                log.exception("line status not published")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_s)
