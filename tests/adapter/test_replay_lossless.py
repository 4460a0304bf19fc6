"""Issue 12 defect 8: a store-and-forward replay reaches the MES store complete, through the real
host on a real broker, with the ingest stream's high-water mark far below the replay's size (so the
host's MQTT reader is held back many times) — nothing dropped, nothing duplicated.

The million-value version with throughput numbers is ``bench/replay_to_mes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mes_adapter.oee.compute import Interval
from mes_adapter.service import AdapterService
from tests.adapter.conftest import eventually
from tests.adapter.edge import CELL, DEVICE_METRICS, EDGE, GROUP, LINE, NODE_METRICS, Edge
from tests.adapter.service_run import started_service
from tests.support.mosquitto import BrokerEndpoint
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.model import Metric, Payload, now_ms
from uns.sparkplug.topic import MessageType, node_topic

PER_MESSAGE = 500
DEVICE_VALUES = 25_000  # per device metric (Speed, Temperature)
COUNTER_VALUES = 4_000  # GoodCount increments replayed as history
HIGH_WATER = 300  # the ingest stream's high-water mark (change_stream_size)


def _small_stream(config: dict) -> None:
    config["host"]["change_stream_size"] = HIGH_WATER


@pytest.fixture
async def small_stream_adapter(tmp_path: Path, mosquitto: BrokerEndpoint) -> AsyncIterator[AdapterService]:
    """The adapter's service (no HTTP needed) with a small ingest high-water mark."""
    async with started_service(tmp_path, mosquitto, _small_stream) as service:
        yield service


def _replay(edge: Edge, device_t0: int, counter_t0: int) -> int:
    """Publish the history as DDATA/NDATA with ``is_historical``; returns how many values were sent."""
    speed, temperature = DEVICE_METRICS["Speed"], DEVICE_METRICS["Temperature"]
    values = [Metric(alias=speed[0], datatype=speed[1], value=float(i), timestamp=device_t0 + i * 100,
                     is_historical=True) for i in range(DEVICE_VALUES)]
    values += [Metric(alias=temperature[0], datatype=temperature[1], value=float(i % 50),
                      timestamp=device_t0 + i * 100, is_historical=True) for i in range(DEVICE_VALUES)]
    for start in range(0, len(values), PER_MESSAGE):
        chunk = values[start:start + PER_MESSAGE]
        edge._send(node_topic(GROUP, MessageType.DDATA, EDGE, CELL),  # noqa: SLF001 - the helper's publish
                   encode_payload(Payload(chunk, timestamp=now_ms(), seq=edge._next()), MessageType.DDATA))  # noqa: SLF001
    good = NODE_METRICS["GoodCount"]
    counts = [Metric(alias=good[0], datatype=good[1], value=good[2] + i + 1, timestamp=counter_t0 + i,
                     is_historical=True) for i in range(COUNTER_VALUES)]
    for start in range(0, len(counts), PER_MESSAGE):
        chunk = counts[start:start + PER_MESSAGE]
        edge._send(node_topic(GROUP, MessageType.NDATA, EDGE),  # noqa: SLF001
                   encode_payload(Payload(chunk, timestamp=now_ms(), seq=edge._next()), MessageType.NDATA))  # noqa: SLF001
    return len(values) + len(counts)


async def test_a_50000_value_replay_reaches_records_and_counters_complete(small_stream_adapter: AdapterService,
                                                                        mosquitto: BrokerEndpoint) -> None:
    service = small_stream_adapter
    ingest_stream = service.ingest_stream
    edge = Edge(mosquitto.host, mosquitto.port).__enter__()
    try:
        await asyncio.to_thread(edge.birth)
        born = await eventually(lambda: _birth_seen(service))
        device_t0 = born - 3_600_000  # the last hour, replayed
        counter_t0 = born + 1  # the counter history after the birth's value
        sent = await asyncio.to_thread(_replay, edge, device_t0, counter_t0)
        assert sent == 2 * DEVICE_VALUES + COUNTER_VALUES

        def stored() -> bool:
            service.ingest.flush()
            return _count(service, "Speed", device_t0) + _count(service, "Temperature", device_t0) \
                + _count(service, "GoodCount", counter_t0) >= sent

        await eventually(lambda: _async(stored), timeout=60, interval=0.5)
        assert _count(service, "Speed", device_t0) == DEVICE_VALUES
        assert _count(service, "Temperature", device_t0) == DEVICE_VALUES
        assert _count(service, "GoodCount", counter_t0) == COUNTER_VALUES
        speeds = service.record_store.query(LINE, device_t0, device_t0 + DEVICE_VALUES * 100, metric="Speed",
                                            limit=DEVICE_VALUES + 1)
        assert [r.value for r in speeds] == [float(i) for i in range(DEVICE_VALUES)]
        assert all(r.is_historical for r in speeds)
        good = service.production.quantities(LINE, [Interval(counter_t0, counter_t0 + COUNTER_VALUES)]).good
        assert good == COUNTER_VALUES
        assert ingest_stream.dropped == 0 and service.ingest.pending == 0 and service.ingest_errors == 0
    finally:
        edge.__exit__()


async def _async(check):  # type: ignore[no-untyped-def]
    return check()


async def _birth_seen(service: AdapterService) -> int | None:
    state = service.host.model.metric(GROUP, EDGE, None, "GoodCount")
    return None if state is None or state.value is None else state.source_timestamp_ms


def _count(service: AdapterService, metric: str, t0: int) -> int:
    span = DEVICE_VALUES * 100 if metric != "GoodCount" else COUNTER_VALUES
    return len(service.record_store.query(LINE, t0, t0 + span, metric=metric, limit=10 * DEVICE_VALUES))
