"""The adapter's history feed: a value delivered again is not stored again, a new one always is.

Deterministic (no broker, no timing): the second deliveries an adapter restart produces, replayed
against a real embedded store. The e2e test ``tests/e2e/test_history_e2e.py::
test_an_adapter_restart_loses_and_doubles_nothing`` caught the doubling once in a full run; this
pins each path of the check: a birth restating the stored value, the edge's historical replay
(some values stored by the earlier run, one not), and the first live value of a tag in the new run.
"""

from __future__ import annotations

from pathlib import Path

from historian import Quality as HQuality
from historian import SqliteHistorian, TagId
from mes_adapter.history.feed import HistoryFeed
from mes_adapter.host import MetricChange, MetricState
from uns.conventions import Quality
from uns.isa95 import EquipmentPath

TAG = TagId("acme:plant1", "packaging:line1", "Filler", "Temperature", "")


def _placement(_group: str, _edge: str, _device: str | None) -> EquipmentPath | None:
    return None


def _change(ts: int, value: float, *, birth: bool = False, historical: bool = False,
            quality: Quality = Quality.GOOD) -> MetricChange:
    state = MetricState(TAG.group, TAG.edge, TAG.device, TAG.metric, value, "Double", quality, ts, ts, ts + 3)
    return MetricChange(state, historical=historical, birth=birth)


async def _deliver(directory: Path, batches: list[list[MetricChange]]) -> tuple[int, int]:
    """One adapter run: each list is one drain of the host's stream; returns (accepted, restated)."""
    store = SqliteHistorian(directory)
    feed = HistoryFeed(store, _placement)
    feed.writer.start()
    try:
        for changes in batches:
            await feed._queue(changes)
        await feed.stop()
    finally:
        store.close()
    return feed.accepted, feed.restated


def _stored(directory: Path) -> list[tuple[int, float, HQuality]]:
    with SqliteHistorian(directory) as store:
        return [(s.source_ms, s.value, s.quality) for s in store.raw(TAG, 0, 10_000)]


async def test_second_deliveries_across_a_restart_are_not_stored_again(tmp_path: Path) -> None:
    first = await _deliver(tmp_path, [[_change(1000, 20.0, birth=True)], [_change(2000, 21.0)],
                                      [_change(3000, 22.0), _change(3000, 22.0)]])  # the same sample twice
    assert first == (3, 1)
    assert _stored(tmp_path) == [(1000, 20.0, HQuality.GOOD), (2000, 21.0, HQuality.GOOD),
                                 (3000, 22.0, HQuality.GOOD)]

    # the restarted adapter: the edge's rebirth restates 22.0 @ 3000; its store-and-forward replay
    # brings 21.0 @ 2000 and 22.0 @ 3000 (stored by the first run) and 21.5 @ 2500 (never stored);
    # the first live message repeats 22.0 @ 3000; then a new value and a BAD at the same time as a
    # stored GOOD (another sample: stored)
    second = await _deliver(tmp_path, [
        [_change(3000, 22.0, birth=True)],
        [_change(2000, 21.0, historical=True), _change(2500, 21.5, historical=True),
         _change(3000, 22.0, historical=True)],
        [_change(3000, 22.0)],
        [_change(4000, 23.0), _change(4000, 23.0, quality=Quality.BAD)],
    ])
    assert second == (3, 4)
    assert _stored(tmp_path) == [(1000, 20.0, HQuality.GOOD), (2000, 21.0, HQuality.GOOD),
                                 (2500, 21.5, HQuality.GOOD), (3000, 22.0, HQuality.GOOD),
                                 (4000, 23.0, HQuality.GOOD), (4000, 23.0, HQuality.BAD)]


async def test_a_value_the_store_does_not_hold_is_stored_even_if_it_looks_like_a_restatement(tmp_path: Path) -> None:
    """A birth after the historian lost its files (or on a new store) restates nothing: stored."""
    assert await _deliver(tmp_path, [[_change(5000, 30.0, birth=True)], [_change(5000, 30.0, historical=True)]]) \
        == (1, 1)
    assert _stored(tmp_path) == [(5000, 30.0, HQuality.GOOD)]
