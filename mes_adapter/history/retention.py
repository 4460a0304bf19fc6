"""Retention in the running adapter: the store drops whole days outside the policy; this says when.

Why a loop here and not inside the store: the store is a library that never starts threads or tasks;
the adapter owns time. At start (a store that was down for weeks is trimmed at once) and then every
``every_s``; each run logs what it dropped, and a failure is logged and retried at the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from historian import HistorianStore
from mes_adapter.timefmt import now_ms

log = logging.getLogger("uns.adapter.history")


async def enforce_retention(store: HistorianStore, every_s: float, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            dropped = await asyncio.to_thread(store.enforce_retention, now_ms())
        except Exception:  # noqa: BLE001 - retention must not stop the adapter; retried next time
            log.exception("historian retention failed; retried in %.0f s", every_s)
        else:
            if dropped:
                log.info("historian retention dropped %d partitions: %s", len(dropped), ", ".join(dropped))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
