"""Line status and quality episodes over real HTTP and a real broker, fed by a hand-made edge node.

A DDEATH turns the cell's four tags STALE: ``/api/lines`` names the dead device and counts it in
``devices_online``; ``/api/lines/{line}/events`` lists one active ``comm_lost`` episode per tag, started at
the death; the next DBIRTH closes all four and the line is complete again. Bad requests get a
specific 404 / 422.
"""

from __future__ import annotations

import asyncio

from mes_adapter.status.data_status import iso
from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, DEVICE_METRICS, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import auth
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.model import Payload, now_ms
from uns.sparkplug.topic import MessageType, node_topic


def _ddeath(edge: Edge) -> None:
    edge._send(node_topic(GROUP, MessageType.DDEATH, EDGE, CELL),
               encode_payload(Payload([], timestamp=now_ms(), seq=edge._next()), MessageType.DDEATH))


async def test_dead_device_makes_the_line_incomplete_and_its_tags_episodes(adapter: RunningAdapter) -> None:
    client = adapter.client
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await asyncio.to_thread(edge.birth)

        async def line() -> dict:
            lines = (await client.get("/api/lines", headers=auth("viewer"))).json()
            return next(entry for entry in lines if entry["line"] == LINE)

        async def complete() -> dict | None:
            entry = await line()
            return entry if entry["data_complete"] and entry["devices"] == 1 else None

        assert (await eventually(complete))["incomplete_reasons"] == []
        await asyncio.to_thread(_ddeath, edge)

        async def dead() -> dict | None:
            entry = await line()
            return entry if entry["devices_online"] == 0 else None

        entry = await eventually(dead)
        assert (entry["data_complete"], entry["nodes_online"], entry["nodes"], entry["devices"]) == (False, 1, 1, 1)
        [reason] = entry["incomplete_reasons"]
        assert reason.startswith(f"device {CELL} STALE since ")

        async def episodes(active: bool) -> list[dict] | None:
            rows = (await client.get(f"/api/lines/{LINE}/events", headers=auth("viewer"))).json()
            return rows if len(rows) == len(DEVICE_METRICS) and all(r["active"] is active for r in rows) else None

        rows = await eventually(lambda: episodes(True))
        assert sorted(r["metric"] for r in rows) == sorted(DEVICE_METRICS)
        summary = {(r["reason"], r["quality"], r["cell"], r["end_ms"]) for r in rows}
        assert summary == {("comm_lost", "STALE", CELL, None)}
        start = rows[0]["start_ms"]
        assert {r["start_ms"] for r in rows} == {start} and reason == f"device {CELL} STALE since {iso(start)}"

        exposition = (await client.get("/metrics")).text
        assert f"uns_adapter_quality_episodes_active {float(len(DEVICE_METRICS))}" in exposition
        assert f"uns_adapter_quality_episodes_opened_total {float(len(DEVICE_METRICS))}" in exposition

        await asyncio.to_thread(edge.birth)
        rows = await eventually(lambda: episodes(False))
        exposition = (await client.get("/metrics")).text
        assert "uns_adapter_quality_episodes_active 0.0" in exposition
        assert f"uns_adapter_quality_episodes_closed_total {float(len(DEVICE_METRICS))}" in exposition
        assert all(r["end_ms"] >= start for r in rows)
        assert (await eventually(complete))["devices_online"] == 1
        window = (await client.get(f"/api/lines/{LINE}/events", params={"from_ms": 0, "to_ms": start},
                                   headers=auth("viewer"))).json()
        assert window == []  # [from, to) ends at the start: nothing overlaps
    finally:
        edge.__exit__()


async def test_events_api_refuses_unknown_lines_and_reversed_windows(adapter: RunningAdapter) -> None:
    client = adapter.client
    unknown = await client.get("/api/lines/acme/plant1/packaging/nope/events", headers=auth("viewer"))
    assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_line"
    reversed_window = await client.get(f"/api/lines/{LINE}/events", params={"from_ms": 10, "to_ms": 5},
                                       headers=auth("viewer"))
    assert reversed_window.status_code == 422 and reversed_window.json()["reason"] == "bad_range"
    anonymous = await client.get(f"/api/lines/{LINE}/events")
    assert anonymous.status_code == 401
