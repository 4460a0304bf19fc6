"""What of the host's change stream is history, and getting it into the store without dropping any.

The feed reads its own *lossless* change stream (:meth:`LiveModel.subscribe(lossless=True)
<mes_adapter.host.live_model.LiveModel.subscribe>`) and hands batches to a
:class:`historian.HistorianWriter`, whose ``put`` waits while its queue is full. While the feed
waits it takes nothing from the stream, the stream reaches its high-water mark, and the host's MQTT
reader waits before the next message: a slow store slows the plant's data down to what it takes
(back-pressure); nothing is discarded.

What is stored: every metric change the host emits, as the edge sent it (value, source time, receipt
time, quality, raw status code, ``is_historical``), under its Sparkplug address and ISA-95 placement;
a metric turned STALE by a death is stored at the death time, so the dead period shows as a gap.
Two things are not new values and are skipped:

* a birth (or a broker's stored birth certificate) restating a value the historian already holds (same
  tag, source time, value, quality and status): after an adapter restart or a rebirth the edge restates
  its values with their source times; storing them again would double them;
* a live value identical to the tag's last one (same source time, value, quality, status): the same
  sample delivered again (seen after an adapter restart: the value in the rebirth, then in a data
  message), not a new one; the records store keeps one row per tag and source time for the same reason;
* a historical value (the edge's replay after this host was away) or the first value of a tag in this
  run that the store already holds: delivered again across an adapter restart (seen in the restart
  test: one value stored twice); checked with one range read per tag and batch;
* values of types the historian does not keep (bytes, datasets, templates): counted in
  :attr:`HistoryFeed.skipped_types`, never given to the store (one would refuse the whole batch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from historian import HistorianError, HistorianStore, HistorianWriter, Quality, Sample, TagId
from mes_adapter.host import Change, ChangeStream, MetricChange, MetricState
from uns.isa95 import EquipmentPath
from uns.sparkplug.datatypes import DataType

log = logging.getLogger("uns.adapter.history")

#: changes taken from the stream into one batch for the writer at most
_BATCH = 5000

_KEPT_TYPES = frozenset({DataType.Boolean, DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64,
                         DataType.UInt8, DataType.UInt16, DataType.UInt32, DataType.UInt64, DataType.DateTime,
                         DataType.Float, DataType.Double, DataType.String, DataType.Text, DataType.UUID})

#: (source time, value, quality, status code): what makes a birth's value the same as the stored one
_Last = tuple[int, Any, Quality, int]

Placement = Callable[[str, str, str | None], EquipmentPath | None]


def tag_of(state: MetricState, placement: Placement) -> TagId:
    """The historian's identity of a metric: Sparkplug address and the ISA-95 place (``""`` if unplaced)."""
    equipment = placement(state.group_id, state.edge_node_id, state.device_id)
    return TagId(state.group_id, state.edge_node_id, state.device_id or "", state.name,
                 "" if equipment is None else equipment.topic)


def sample_of(change: MetricChange, tag: TagId) -> Sample | None:
    """The change as a historian sample (None for a type the historian does not keep)."""
    state = change.metric
    try:
        datatype = DataType[state.datatype]
    except KeyError:
        return None
    if datatype not in _KEPT_TYPES:
        return None
    value = state.value
    if value is not None and datatype is not DataType.Boolean and isinstance(value, bool):
        value = int(value)
    return Sample(tag, state.timestamp_ms, state.received_ms, value, int(datatype),
                  Quality.parse(state.quality.value), state.status_code or 0, change.historical)


class HistoryFeed:
    """Host change stream → :class:`HistorianWriter` → store; see the module docstring."""

    def __init__(self, store: HistorianStore, placement: Placement, *, max_batches: int = 64) -> None:
        self.store = store
        #: why the store's last append failed (None: it succeeds). The writer stops on such an error and
        #: its queue then holds the host back: nothing is dropped, and readiness says why data waits.
        self.failing: str | None = None
        self.writer = HistorianWriter(_Watched(self), max_batches=max_batches)  # type: ignore[arg-type]  # append only
        self._placement = placement
        self._tags: dict[tuple[str, str, str | None, str], TagId] = {}
        #: the last value stored of each tag in this run
        self._last: dict[TagId, _Last] = {}
        #: what the store held at a birth value's source time (read once per tag and time)
        self._stored_at: dict[tuple[TagId, int], set[_Last]] = {}
        #: samples handed to the writer
        self.accepted = 0
        #: births restating the stored value, not stored again
        self.restated = 0
        #: values of types the historian does not keep
        self.skipped_types = 0
        self._stream: ChangeStream | None = None
        self._inflight: list[Change] = []
        self._unqueued: list[Sample] = []

    async def run(self, stream: ChangeStream, stopping: asyncio.Event) -> None:
        """Until ``stopping``: take what the stream holds, turn it into samples, ``put`` (waits when full).

        Cancellation (the adapter stopping) can come at any ``await``; what was taken from the stream
        but not yet queued is kept (:attr:`_inflight`, :attr:`_unqueued`) and :meth:`stop` queues it,
        with what the stream still holds, so a clean stop loses nothing the host accepted."""
        self.writer.start()
        self._stream = stream
        try:
            while not stopping.is_set():
                await self._queue(await stream.take(_BATCH))
        finally:
            stream.close()

    async def _queue(self, changes: list[Change]) -> None:
        self._inflight = changes
        await self._prefetch(changes)  # the only await before the samples are built
        batch = self._convert(changes)  # synchronous: no cancellation half-way through the dedup state
        self._inflight, self._unqueued = [], batch
        if batch:
            await self.writer.put(batch)  # a cancelled put has queued nothing
            self.accepted += len(batch)
        self._unqueued = []

    async def _prefetch(self, changes: list[Change]) -> None:
        """Read what the store already holds where a value may be a second delivery of one it has:
        a birth value (a restart or rebirth restates values with their source times), a historical
        value (the edge replays what it buffered while this host was away, some of which an earlier
        run of the adapter stored), and the first value of each tag in this run (nothing remembered
        yet: delivered again across an adapter restart). One range read per tag and batch."""
        wanted: dict[TagId, list[int]] = {}
        first: set[TagId] = set()
        for change in changes:
            if not isinstance(change, MetricChange):
                continue
            state = change.metric
            tag = self._tag(state)
            fresh = tag not in self._last and tag not in first
            if fresh:
                first.add(tag)
            if (change.birth or change.historical or fresh) and (tag, state.timestamp_ms) not in self._stored_at:
                wanted.setdefault(tag, []).append(state.timestamp_ms)
        if wanted:
            found = await asyncio.to_thread(self._read_stored, wanted)
            self._stored_at.update(found)
            while len(self._stored_at) > 100_000:  # births come from peers: bound what is remembered
                self._stored_at.pop(next(iter(self._stored_at)))

    def _read_stored(self, wanted: dict[TagId, list[int]]) -> dict[tuple[TagId, int], set[_Last]]:
        out: dict[tuple[TagId, int], set[_Last]] = {}
        for tag, times in wanted.items():
            for at in times:
                out[(tag, at)] = set()
            try:
                samples = self.store.raw(tag, min(times), max(times) + 1, max_points=len(times) * 4 + 1000)
            except LookupError:  # a tag the store has never seen
                samples = []
            except HistorianError:  # too many values in the range to be second deliveries: store them
                samples = []
            for s in samples:
                held = out.get((tag, s.source_ms))
                if held is not None:
                    held.add((s.source_ms, s.value, s.quality, s.status_code))
        return out

    def _tag(self, state: MetricState) -> TagId:
        key = (state.group_id, state.edge_node_id, state.device_id, state.name)
        tag = self._tags.get(key)
        if tag is None:
            tag = self._tags[key] = tag_of(state, self._placement)
        return tag

    def _convert(self, changes: list[Change]) -> list[Sample]:
        out: list[Sample] = []
        for change in changes:
            if not isinstance(change, MetricChange):
                continue
            tag = self._tag(change.metric)
            sample = sample_of(change, tag)
            if sample is None:
                self.skipped_types += 1
                continue
            this: _Last = (sample.source_ms, sample.value, sample.quality, sample.status_code)
            stored = self._stored_at.get((tag, sample.source_ms), ())
            if this in stored or (not change.historical and self._last.get(tag) == this):
                self.restated += 1
                continue
            if not change.historical:
                self._last[tag] = this
            seen = self._stored_at.get((tag, sample.source_ms))
            if seen is not None:
                seen.add(this)
            out.append(sample)
        return out

    async def stop(self) -> None:
        """Queue what was taken but not queued and what the stream still holds, write it all, stop the
        writer (call after :meth:`run` ended; the store stays open until closed)."""
        if self._unqueued:
            await self.writer.put(self._unqueued)
            self.accepted += len(self._unqueued)
            self._unqueued = []
        left = self._inflight
        while self._stream is not None and (change := self._stream.get_nowait()) is not None:
            left.append(change)
        if left:
            await self._queue(left)
        await self.writer.stop()


class _Watched:
    """The store as the writer sees it: appends pass through, a failure is noted on the feed."""

    def __init__(self, feed: HistoryFeed) -> None:
        self._feed = feed

    def append(self, batch: list[Sample]) -> None:
        try:
            self._feed.store.append(batch)
        except Exception as exc:
            self._feed.failing = f"{type(exc).__name__}: {exc}"
            log.error("historian append failed; values are held, not dropped: %s", self._feed.failing)
            raise
        self._feed.failing = None
