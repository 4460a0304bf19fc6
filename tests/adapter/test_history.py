"""Issue 16 items 1 and 4: the historian fed from the host's change stream, read over REST.

Real parts: Mosquitto, the adapter's Sparkplug host and API served by uvicorn, a Sparkplug edge
(``tests.adapter.edge``) publishing on the broker, the embedded SQLite historian on disk.
"""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml

from historian import TagId
from mes_adapter.config.application import ConfigError, check_adapter_config, load_adapter_config
from tests.adapter.conftest import RunningAdapter, eventually, serve
from tests.adapter.edge import CELL, DEVICE_METRICS, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import TOKENS, auth, write_files
from tests.support.net import free_port
from tests.support.procs import uns_command
from uns.conventions import PROP_QUALITY, PROP_STATUS_CODE
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import QUALITY_BAD, Metric, Payload, PropertyValue, now_ms
from uns.sparkplug.topic import MessageType, node_topic

SPEED = {"group": GROUP, "edge": EDGE, "device": CELL, "metric": "Speed"}
#: source times of the test's values: whole seconds from the next whole minute (after the edge's birth
#: time: the host keeps a value older than the live one out of the live model, and so out of history)
def _t0() -> int:
    """A whole minute two minutes ago: the tests' values go from here, their edge's birth 1 s before
    (the host keeps a value older than the live one out of the live model, and so out of history;
    a batch context more than 60 s ahead of the adapter's clock is refused)."""
    return (now_ms() // 60_000 - 2) * 60_000
BAD_STATUS = 0x80310000  # BadNoCommunication


def _bad_speed(edge: Edge, ts: int) -> None:
    """A BAD Speed reading, as an edge whose OPC UA source lost the value sends it (null, Quality, StatusCode)."""
    alias, datatype = DEVICE_METRICS["Speed"][0], DEVICE_METRICS["Speed"][1]
    metric = Metric(alias=alias, datatype=datatype, value=None, is_null=True, timestamp=ts, properties={
        PROP_QUALITY: PropertyValue(DataType.Int32, QUALITY_BAD),
        PROP_STATUS_CODE: PropertyValue(DataType.UInt32, BAD_STATUS)})
    edge._send(node_topic(GROUP, MessageType.DDATA, EDGE, CELL),  # noqa: SLF001 - the helper's publish
               encode_payload(Payload([metric], timestamp=ts, seq=edge._next()), MessageType.DDATA))  # noqa: SLF001


async def _get(client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    return await client.get(f"/api/history/{path}", params=params, headers=auth("viewer"))


async def _raw(client: httpx.AsyncClient, start: int, end: int) -> list[dict[str, Any]]:
    r = await _get(client, "raw", **SPEED, start=start, end=end)
    assert r.status_code == 200, r.text
    return r.json()["values"]


async def _stored(client: httpx.AsyncClient, start: int, end: int, count: int) -> list[dict[str, Any]] | None:
    """The values once ``count`` of them are stored (None before; 404 until the tag's first value is in)."""
    r = await _get(client, "raw", **SPEED, start=start, end=end)
    if r.status_code == 404 and r.json()["reason"] == "unknown_tag":
        return None
    assert r.status_code == 200, r.text
    values: list[dict[str, Any]] = r.json()["values"]
    return values if len(values) == count else None


async def _born_with_speeds(edge: Edge, t0: int, count: int) -> None:
    """A birth 1 s before ``t0``, then Speed = 0, 1, ... one a second from ``t0``."""
    await asyncio.to_thread(edge.birth, t0 - 1000)
    for i in range(count):
        await asyncio.to_thread(edge.ddata, {"Speed": float(i)}, t0 + i * 1000)


async def test_every_value_its_quality_and_a_bad_episode_as_a_gap(adapter: RunningAdapter) -> None:
    client = adapter.client
    T0 = _t0()  # noqa: N806
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await _born_with_speeds(edge, T0, 20)  # 20 GOOD values, one a second
        await asyncio.to_thread(_bad_speed, edge, T0 + 20_000)  # BAD for 5 s
        await asyncio.to_thread(edge.ddata, {"Speed": 25.0}, T0 + 25_000)

        values = await eventually(lambda: _stored(client, T0, T0 + 60_000, 22), timeout=15)
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
    files = write_files(tmp_path, mosquitto.url, free_port())
    T0 = _t0()  # noqa: N806
    edge = Edge(mosquitto.host, mosquitto.port).__enter__()
    speed = TagId(GROUP, EDGE, CELL, "Speed", f"{LINE}/{CELL}")
    born = T0 - 1000  # both births state Speed 120.5 at this source time, as an edge restating its value does
    try:
        async with serve(files, mosquitto) as running:
            await _born_with_speeds(edge, T0, 10)

            await eventually(lambda: _stored(running.client, T0, T0 + 60_000, 10), timeout=15)
        # stopped: everything accepted is on disk; a new adapter on the same data directory
        async with serve(files, mosquitto) as running:
            store = running.service.history.store
            assert [s.value for s in store.raw(speed, T0, T0 + 60_000)] == [float(i) for i in range(10)]
            await asyncio.to_thread(edge.birth, born)  # rebirth: restates Speed 120.5 at the same source time
            for i in range(10, 15):
                await asyncio.to_thread(edge.ddata, {"Speed": float(i)}, T0 + i * 1000)

            values = await eventually(lambda: _stored(running.client, T0, T0 + 60_000, 15), timeout=15)
            assert [v["value"] for v in values] == [float(i) for i in range(15)]
            assert [v["source_ms"] for v in values] == [T0 + i * 1000 for i in range(15)]
            everything = await _raw(running.client, born, T0 + 60_000)
            assert [(v["source_ms"], v["value"]) for v in everything] == [(born, 120.5)] + [
                (T0 + i * 1000, float(i)) for i in range(15)]  # the restated birth value is stored once
            assert running.service.history.restated >= 1
    finally:
        edge.__exit__(None, None, None)


async def _speeds_stored(adapter: RunningAdapter, t0: int, count: int) -> None:
    """An edge births and sends ``count`` Speed values from ``t0``; returns once all are stored."""
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await _born_with_speeds(edge, t0, count)
        await eventually(lambda: _stored(adapter.client, t0, t0 + 60_000, count), timeout=15)
    finally:
        edge.__exit__(None, None, None)


async def test_bad_queries_are_4xx_with_a_reason(adapter: RunningAdapter) -> None:
    client = adapter.client
    T0 = _t0()  # noqa: N806
    await _speeds_stored(adapter, T0, 5)

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


async def _uns_history(adapter: RunningAdapter, command: str, *args: str) -> tuple[int | None, str]:
    """``uns history <command>`` against the adapter, as a viewer of line 1's edge node."""
    proc = await asyncio.create_subprocess_exec(
        *uns_command("history", command, "--url", adapter.base_url, "--token", TOKENS["viewer"], "--group", GROUP,
                     "--edge", EDGE, *args), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    return proc.returncode, err.decode()


async def test_per_batch_phase_windows_and_the_cli_csv(adapter: RunningAdapter, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = adapter.client
    T0 = _t0()  # noqa: N806
    await _speeds_stored(adapter, T0, 30)
    # batch B-7 ran [T0+5 s, T0+20 s): phase "mix" until T0+12 s, then "fill"
    for path, body in (("start", {"batch_id": "B-7", "since_ms": T0 + 5000}),
                       ("phase", {"phase": "mix", "since_ms": T0 + 5000}),
                       ("phase", {"phase": "fill", "since_ms": T0 + 12_000}),
                       ("end", {"batch_id": "B-7", "since_ms": T0 + 20_000})):
        r = await client.post(f"/api/lines/{LINE}/batch/{path}", json=body, headers=auth("operator"))
        assert r.status_code in (200, 201), r.text
    r = await _get(client, "batch", **SPEED, line=LINE, batch_id="B-7")
    assert r.status_code == 200, r.text
    windows = r.json()["windows"]
    got = [(w["phase"], w["start_ms"], w["end_ms"], [v["value"] for v in w["values"]]) for w in windows]
    assert got == [("mix", T0 + 5000, T0 + 12_000, [float(i) for i in range(5, 12)]),
                        ("fill", T0 + 12_000, T0 + 20_000, [float(i) for i in range(12, 20)])]

    # `uns history raw` exports the same values as CSV through the REST API
    out = tmp_path / "speed.csv"
    code, err = await _uns_history(adapter, "raw", "--device", CELL, "--metric", "Speed", "--start", str(T0),
                                   "--end", str(T0 + 3000), "--out", str(out))
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert [(int(r["source_ms"]), float(r["value"]), r["quality"], r["is_historical"]) for r in rows] == [
        (T0 + i * 1000, float(i), "GOOD", "False") for i in range(3)]
    assert rows[0]["source_time"] == datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # a refusal: exit 1 with the API's reason
    code, err = await _uns_history(adapter, "raw", "--metric", "Nope", "--start", "2026-01-01T00:00:00Z",
                                   "--end", str(T0))
    assert code == 1 and "(unknown_tag)" in err


def test_config_historian_defaults_and_a_path_that_is_a_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = write_files(tmp_path, "mqtt://127.0.0.1:1883", 8080)
    config_file = files.directory / "adapter.yaml"
    config = load_adapter_config(config_file)
    assert (config.historian.enabled, config.historian.backend.value, config.historian.path) == (True, "sqlite", None)
    raw = yaml.safe_load(config_file.read_text())
    (files.directory / "not-a-dir").write_text("x")
    raw["historian"] = {"path": "not-a-dir"}
    config_file.write_text(yaml.safe_dump(raw))
    config = load_adapter_config(config_file)
    assert config.historian.path == files.directory / "not-a-dir"  # relative to the file
    with pytest.raises(ConfigError, match=r"historian\.path.*not-a-dir is not a directory"):
        check_adapter_config(config, config_file)
    raw["historian"] = {"backend": "postgres"}
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="historian.backend postgres needs historian.dsn"):
        load_adapter_config(config_file)
