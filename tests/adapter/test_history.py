"""Issue 16 items 1 and 4: the historian fed from the host's change stream, read over REST.

Real parts: Mosquitto, the adapter's Sparkplug host and API served by uvicorn, a Sparkplug edge
(``tests.adapter.edge``) publishing on the broker, the embedded SQLite historian on disk.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from historian import Quality, TagId
from tests.adapter.conftest import RunningAdapter, eventually, serve
from tests.adapter.edge import CELL, DEVICE_METRICS, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import auth
from uns.conventions import PROP_QUALITY, PROP_STATUS_CODE
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import QUALITY_BAD, Metric, Payload, PropertyValue, now_ms
from uns.sparkplug.topic import MessageType, node_topic

SPEED = {"group": GROUP, "edge": EDGE, "device": CELL, "metric": "Speed"}
#: source times of the test's values: whole seconds from the next whole minute (after the edge's birth
#: time: the host keeps a value older than the live one out of the live model, and so out of history)
def _next_minute() -> int:
    return (now_ms() // 60_000 + 1) * 60_000
BAD_STATUS = 0x80310000  # BadNoCommunication


def _bad_speed(edge: Edge, ts: int) -> None:
    """A BAD Speed reading, as an edge whose OPC UA source lost the value sends it (null, Quality, StatusCode)."""
    alias, datatype = DEVICE_METRICS["Speed"][0], DEVICE_METRICS["Speed"][1]
    metric = Metric(alias=alias, datatype=datatype, value=None, is_null=True, timestamp=ts, properties={
        PROP_QUALITY: PropertyValue(DataType.Int32, QUALITY_BAD), PROP_STATUS_CODE: PropertyValue(DataType.UInt32, BAD_STATUS)})
    edge._send(node_topic(GROUP, MessageType.DDATA, EDGE, CELL),  # noqa: SLF001 - the helper's publish
               encode_payload(Payload([metric], timestamp=ts, seq=edge._next()), MessageType.DDATA))  # noqa: SLF001


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    return await client.get(f"/api/history/{path}", params=params, headers=auth("viewer"))


async def _raw(client: httpx.AsyncClient, start: int, end: int) -> list[dict[str, Any]]:
    r = await _get(client, "raw", **SPEED, start=start, end=end)
    assert r.status_code == 200, r.text
    return r.json()["values"]


async def _born_with_speeds(edge: Edge, t0: int, count: int, born: int | None = None) -> None:
    """A birth, then Speed = 0, 1, ... one a second from ``t0``."""
    await asyncio.to_thread(edge.birth, born)
    for i in range(count):
        await asyncio.to_thread(edge.ddata, {"Speed": float(i)}, t0 + i * 1000)


async def test_every_value_its_quality_and_a_bad_episode_as_a_gap(adapter: RunningAdapter) -> None:
    client = adapter.client
    T0 = _next_minute()  # noqa: N806
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await _born_with_speeds(edge, T0, 20)  # 20 GOOD values, one a second
        await asyncio.to_thread(_bad_speed, edge, T0 + 20_000)  # BAD for 5 s
        await asyncio.to_thread(edge.ddata, {"Speed": 25.0}, T0 + 25_000)

        async def all_in() -> list[dict[str, Any]] | None:
            values = await _raw(client, T0, T0 + 60_000)
            return values if len(values) == 22 else None

        values = await eventually(all_in, timeout=15)
        assert [v["value"] for v in values] == [float(i) for i in range(20)] + [None, 25.0]
        assert [v["source_ms"] for v in values] == [T0 + i * 1000 for i in range(21)] + [T0 + 25_000]
        assert [v["quality"] for v in values] == ["GOOD"] * 20 + ["BAD", "GOOD"]
        assert values[20]["status_code"] == BAD_STATUS and values[0]["status_code"] == 0
        assert not any(v["is_historical"] for v in values)
        assert all(v["receipt_ms"] >= 0 for v in values)

        r = await _get(client, "gaps", **SPEED, start=T0, end=T0 + 60_000)
        assert r.json()["gaps"] == [{"start_ms": T0 + 20_000, "end_ms": T0 + 25_000, "quality": "BAD"}]
        assert r.json()["tag"]["path"] == f"{LINE}/{CELL}"

        r = await _get(client, "aggregates", **SPEED, start=T0, end=T0 + 60_000, interval=10_000)
        rows = r.json()["intervals"]
        assert [(a["start_ms"], a["count"], a["min"], a["max"], a["samples"]) for a in rows] == [
            (T0, 10, 0.0, 9.0, 10), (T0 + 10_000, 10, 10.0, 19.0, 10), (T0 + 20_000, 1, 25.0, 25.0, 2)]
        assert rows[0]["twa"] == sum(range(10)) / 10  # each value held 1 s

        r = await _get(client, "at", **SPEED, t=T0 + 22_500)
        assert r.json()["value"]["quality"] == "BAD" and r.json()["value"]["source_ms"] == T0 + 20_000
        r = await _get(client, "at", **SPEED, t=T0 + 7_999)
        assert r.json()["value"]["value"] == 7.0
    finally:
        edge.__exit__(None, None, None)


async def test_restart_loses_and_doubles_nothing(tmp_path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    from tests.adapter.setup import write_files
    from tests.support.net import free_port

    files = write_files(tmp_path, mosquitto.url, free_port())
    T0 = _next_minute()  # noqa: N806
    edge = Edge(mosquitto.host, mosquitto.port).__enter__()
    speed = TagId(GROUP, EDGE, CELL, "Speed", f"{LINE}/{CELL}")
    born = now_ms()  # both births state Speed 120.5 at this source time, as an edge restating its value does
    try:
        async with serve(files, mosquitto) as running:
            await _born_with_speeds(edge, T0, 10, born)

            async def ten() -> bool:
                return len(await _raw(running.client, T0, T0 + 60_000)) == 10

            await eventually(ten, timeout=15)
        # stopped: everything accepted is on disk; a new adapter on the same data directory
        async with serve(files, mosquitto) as running:
            store = running.service.history.store
            assert [s.value for s in store.raw(speed, T0, T0 + 60_000)] == [float(i) for i in range(10)]
            await asyncio.to_thread(edge.birth, born)  # rebirth: restates Speed 120.5 at the same source time
            for i in range(10, 15):
                await asyncio.to_thread(edge.ddata, {"Speed": float(i)}, T0 + i * 1000)

            async def fifteen() -> list[dict[str, Any]] | None:
                values = await _raw(running.client, T0, T0 + 60_000)
                return values if len(values) == 15 else None

            values = await eventually(fifteen, timeout=15)
            assert [v["value"] for v in values] == [float(i) for i in range(15)]
            assert [v["source_ms"] for v in values] == [T0 + i * 1000 for i in range(15)]
            everything = await _raw(running.client, born, T0 + 60_000)
            assert [(v["source_ms"], v["value"]) for v in everything] == [(born, 120.5)] + [
                (T0 + i * 1000, float(i)) for i in range(15)]  # the restated birth value is stored once
            assert running.service.history.restated >= 1
    finally:
        edge.__exit__(None, None, None)


async def test_bad_queries_are_4xx_with_a_reason(adapter: RunningAdapter) -> None:
    client = adapter.client
    T0 = _next_minute()  # noqa: N806
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await _born_with_speeds(edge, T0, 5)

        async def five() -> bool:
            return len(await _raw(client, T0, T0 + 60_000)) == 5

        await eventually(five, timeout=15)
    finally:
        edge.__exit__(None, None, None)

    async def refused(path: str, status: int, reason: str, **params: Any) -> str:
        r = await _get(client, path, **params)
        assert r.status_code == status, r.text
        assert r.json()["reason"] == reason, r.text
        return r.json()["detail"]

    assert "reversed" in await refused("raw", 400, "invalid_history_query", **SPEED, start=T0 + 10, end=T0)
    assert "more than 3 values" in await refused("raw", 400, "invalid_history_query", **SPEED, start=T0,
                                                 end=T0 + 60_000, max_points=3)
    assert "multiple" in await refused("aggregates", 400, "invalid_history_query", **SPEED, start=T0 + 1,
                                       end=T0 + 60_000, interval=10_000)
    assert "no history for tag" in await refused("raw", 404, "unknown_tag", **{**SPEED, "metric": "Nope"},
                                                 start=T0, end=T0 + 1000)
    assert "no batch" in await refused("batch", 404, "unknown_batch", **SPEED, line=LINE, batch_id="B-404")
    await refused("raw", 422, "invalid_request", **SPEED, start="yesterday", end=T0)
    r = await client.get("/api/history/raw", params={**SPEED, "start": T0, "end": T0 + 1})
    assert r.status_code == 401
