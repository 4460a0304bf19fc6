"""Issue 16 item 1: the historian is fed without dropping, under back-pressure, through the real host.

A store-and-forward replay of 54,000 values (``tests.adapter.test_replay_lossless``'s) reaches an
adapter whose change streams hold at most 300 changes and whose historian writer queues one batch:
the historian's feed waits on a full queue, the lossless stream fills, the host's MQTT reader waits.
Afterwards the historian holds exactly the values sent (and the records store saw), each marked
historical, none dropped or doubled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from historian import Quality, TagId
from mes_adapter.service import AdapterService
from tests.adapter.conftest import eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE, Edge
from tests.adapter.service_run import started_service
from tests.adapter.test_replay_lossless import COUNTER_VALUES, DEVICE_VALUES, _birth_seen, _replay
from tests.support.mosquitto import BrokerEndpoint

HIGH_WATER = 300


def _held_back(config: dict) -> None:
    config["host"]["change_stream_size"] = HIGH_WATER
    config["historian"] = {"queue_batches": 1}


@pytest.fixture
async def held_back_adapter(tmp_path: Path, mosquitto: BrokerEndpoint) -> AsyncIterator[AdapterService]:
    async with started_service(tmp_path, mosquitto, _held_back) as service:
        yield service


async def test_a_replay_reaches_the_historian_complete_under_back_pressure(held_back_adapter: AdapterService,
                                                                         mosquitto: BrokerEndpoint) -> None:
    service = held_back_adapter
    assert service.history is not None
    store = service.history.store
    speed = TagId(GROUP, EDGE, CELL, "Speed", f"{LINE}/{CELL}")
    temperature = TagId(GROUP, EDGE, CELL, "Temperature", f"{LINE}/{CELL}")
    good = TagId(GROUP, EDGE, "", "GoodCount", LINE)
    edge = Edge(mosquitto.host, mosquitto.port).__enter__()
    try:
        await asyncio.to_thread(edge.birth)
        born = await eventually(lambda: _birth_seen(service))
        device_t0, counter_t0 = born - 3_600_000, born + 1
        sent = await asyncio.to_thread(_replay, edge, device_t0, counter_t0)

        def replayed() -> int:
            return (len(store.raw(speed, device_t0, born)) + len(store.raw(temperature, device_t0, born))
                    + len(store.raw(good, counter_t0, counter_t0 + COUNTER_VALUES)))

        await eventually(lambda: _now(replayed() >= sent), timeout=90, interval=0.5)
        await service.history.writer.drain()
        speeds = store.raw(speed, device_t0, born)
        assert [(s.source_ms, s.value) for s in speeds] == [(device_t0 + i * 100, float(i))
                                                            for i in range(DEVICE_VALUES)]
        temps = store.raw(temperature, device_t0, born)
        assert [(s.source_ms, s.value) for s in temps] == [(device_t0 + i * 100, float(i % 50))
                                                           for i in range(DEVICE_VALUES)]
        counts = store.raw(good, counter_t0, counter_t0 + COUNTER_VALUES)
        assert [s.value for s in counts] == [101 + i for i in range(COUNTER_VALUES)]
        replay = speeds + temps + counts
        assert all(s.is_historical and s.quality is Quality.GOOD for s in replay)
        # the birth's values (live) once each, before the replay: 1 Speed, 1 GoodCount at the birth time
        assert [(s.value, s.is_historical) for s in store.raw(speed, born, born + 1)] == [(120.5, False)]
        assert [(s.value, s.is_historical) for s in store.raw(good, born, born + 1)] == [(100, False)]
        # the records store saw the same values
        service.ingest.flush()
        records = service.record_store.query(LINE, device_t0, born, metric="Speed", limit=DEVICE_VALUES + 1)
        assert [(r.source_ts_ms, r.value) for r in records] == [(s.source_ms, s.value) for s in speeds]
        stats = service.stats_snapshot()["historian"]
        assert stats["accepted"] == stats["written"] and (stats["queued_batches"], stats["failing"]) == (0, None)
        assert stats["written"] == store.count()  # every sample handed to the writer is stored, once
    finally:
        edge.__exit__()


async def _now(value: bool) -> bool:
    return value
