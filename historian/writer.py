"""Feeding a store from asyncio without ever dropping: a bounded queue whose ``put`` waits.

The host's change stream calls ``await writer.put(samples)``; when the store falls behind (a slow disk,
PostgreSQL restarting) the queue fills and ``put`` waits, which slows the stream down to what the store
takes (back-pressure, all the way to the MQTT session) instead of discarding the oldest values.
One task drains the queue, joining queued batches up to ``batch_max`` values, and calls the store's
blocking ``append`` in a worker thread so the event loop keeps running. Batches only grow when the
store is behind (an idle writer takes whatever one batch is queued): then large ones are what catches
up — the embedded store took 82k values/s in batches of 100,000 against 62k in batches of 20,000
(bench/historian_ingest.py, same machine, same hour), since each batch rewrites about one page per tag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from .errors import HistorianError
from .model import Sample
from .port import HistorianStore

log = logging.getLogger(__name__)

#: retrying a batch the machine could not take (full disk): first wait, and the longest
_RETRY_MIN_S = 0.5
_RETRY_MAX_S = 2.0


class HistorianWriter:
    def __init__(self, store: HistorianStore, *, max_batches: int = 64, batch_max: int = 100_000) -> None:
        self.store = store
        self.batch_max = batch_max
        self._queue: asyncio.Queue[Sequence[Sample]] = asyncio.Queue(maxsize=max_batches)
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        #: appends that failed for the machine's reasons and were tried again (the batch kept)
        self.retries = 0

    async def put(self, samples: Sequence[Sample]) -> None:
        """Queue a batch; waits while the queue is full (never drops)."""
        if samples:
            await self._queue.put(samples)

    def queued(self) -> int:
        """Batches waiting in the queue (not yet taken by the writer task)."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="historian-writer")

    async def _run(self) -> None:
        while True:
            batch = list(await self._queue.get())
            taken = 1
            while len(batch) < self.batch_max and not self._queue.empty():
                batch += self._queue.get_nowait()
                taken += 1
            await self._append(batch)
            self.written += len(batch)
            for _ in range(taken):
                self._queue.task_done()

    async def _append(self, batch: list[Sample]) -> None:
        """Append ``batch``, keeping it and trying again while the disk or the database fails.

        A :class:`HistorianError` is the batch's own fault (a value the store refuses, a newer
        schema): the task ends with it and the queue keeps the batches behind it (``put`` then
        waits: nothing is silently lost). Anything else (``OSError``, SQLite's "database or disk
        is full", a connection error the store did not buffer) is the machine's: the batch stays
        in hand and is written again until it goes in, so a full disk holds the data back while
        it lasts, and the writer carries on by itself once space returns.
        """
        delay = _RETRY_MIN_S
        while True:
            try:
                await asyncio.to_thread(self.store.append, batch)
            except HistorianError:
                raise
            except Exception as exc:  # noqa: BLE001 - the machine's fault: kept and tried again
                self.retries += 1
                log.warning("historian append of %d values failed (%s: %s); trying again in %.1f s",
                            len(batch), type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            else:
                return

    async def drain(self) -> None:
        """Wait until every queued batch is in the store; raises the store's error if the writer stopped on one."""
        joined = asyncio.ensure_future(self._queue.join())
        waiting = {joined} if self._task is None else {joined, self._task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not joined.done():
            joined.cancel()
            assert self._task is not None
            self._task.result()  # the store's error, with the batches still queued behind it

    async def stop(self) -> None:
        """Write what is queued, then stop the task."""
        if self._task is not None:
            await self.drain()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
