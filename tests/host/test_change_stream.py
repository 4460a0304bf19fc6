"""Issue 12 defect 8: a lossless change stream never drops; it holds the reader back instead."""

from __future__ import annotations

import asyncio

from mes_adapter.host.live_model import MetricChange
from tests.host.edge import EdgeScript
from tests.host.test_model_mirror import Pipeline


async def test_lossless_stream_keeps_every_change_and_signals_back_pressure() -> None:
    p = Pipeline()
    edge = EdgeScript()
    lossless = p.model.subscribe(maxsize=5, lossless=True)
    conflating = p.model.subscribe(maxsize=5)
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    births = len(lossless)
    assert births > 5 and lossless.dropped == 0 and p.model.dropped_changes == conflating.dropped > 0
    assert lossless.full and not p.model.has_room
    reader = asyncio.create_task(p.model.wait_for_room())  # what the host's MQTT reader awaits
    await asyncio.sleep(0.01)
    assert not reader.done()
    got = [lossless.get_nowait() for _ in range(births - 4)]
    await asyncio.wait_for(reader, 1)  # below the high-water mark: reading goes on
    assert p.model.has_room and None not in got and isinstance(got[-1], MetricChange)
    rest = [lossless.get_nowait() for _ in range(4)]
    assert lossless.get_nowait() is None and len(got + rest) == births
    lossless.close()
    conflating.close()


async def test_a_closed_lossless_stream_never_holds_the_host_back() -> None:
    p = Pipeline()
    edge = EdgeScript()
    stream = p.model.subscribe(maxsize=1, lossless=True)
    p.feed(edge.nbirth())
    assert not p.model.has_room
    stream.close()
    assert p.model.has_room
    await asyncio.wait_for(p.model.wait_for_room(), 1)


async def test_drain_hands_over_every_change_in_batches_in_order_and_closes_the_stream() -> None:
    """The loop the episode service and the alarm journal share (``mes_adapter.host.drain``)."""
    from mes_adapter.host import drain

    p = Pipeline()
    edge = EdgeScript()
    stream = p.model.subscribe(maxsize=1000, lossless=True)
    p.feed(edge.nbirth())
    p.feed(edge.dbirth())
    expected = list(stream._buffer)
    assert len(expected) > 3
    batches: list[list] = []
    stopping = asyncio.Event()

    def handle_many(changes: list) -> None:
        batches.append(changes)
        if sum(map(len, batches)) == len(expected):
            stopping.set()

    await asyncio.wait_for(drain(stream, stopping, handle_many, 3), 5)
    assert [len(b) for b in batches[:-1]] == [3] * (len(batches) - 1) and 1 <= len(batches[-1]) <= 3
    assert [c for b in batches for c in b] == expected  # every change once, in order
    assert stream.closed and p.model.has_room
