"""Birth churn over real MQTT and HTTP: the node is quarantined, listed, and a supervisor releases it.

The default limit is 20 births per 60 s; an edge that births 21 times is quarantined (its tags
STALE, nothing it sends applied), ``GET /api/quarantine`` lists it, an operator may not release it,
a supervisor may, and the node's next message then earns a ``Node Control/Rebirth`` request.
"""

from __future__ import annotations

import asyncio

from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import auth
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.topic import MessageType

RELEASE = f"/api/quarantine/{GROUP}/{EDGE}/release"


async def test_a_churning_node_is_quarantined_and_released_by_a_supervisor(adapter: RunningAdapter) -> None:
    client = adapter.client
    host = adapter.service.host
    with Edge(adapter.broker.host, adapter.broker.port) as edge:
        for _ in range(21):
            await asyncio.to_thread(edge.birth)

        async def quarantined() -> list:
            return (await client.get("/api/quarantine", headers=auth("viewer"))).json()

        assert await eventually(quarantined) == [{"group_id": GROUP, "edge_node_id": EDGE}]
        tags = (await client.get("/api/tags", params={"line": LINE}, headers=auth("viewer"))).json()
        assert tags and {t["quality"] for t in tags} == {"STALE"}
        await asyncio.to_thread(edge.ddata, {"Speed": 99.0})  # not applied

        async def dropped() -> bool:
            return host.tracker.counters.quarantined_messages >= 1

        await eventually(dropped)
        metrics = (await client.get("/metrics")).text
        assert "uns_host_quarantines_total 1.0" in metrics and "uns_host_quarantined_nodes 1.0" in metrics

        response = await client.post(RELEASE, headers=auth("operator"))
        assert response.status_code == 403 and response.json()["reason"]
        response = await client.post(RELEASE, headers=auth("supervisor"))
        assert response.status_code == 200
        assert response.json() == {"group_id": GROUP, "edge_node_id": EDGE, "released": True}
        response = await client.post(RELEASE, headers=auth("supervisor"))
        assert response.status_code == 404 and response.json()["reason"] == "not_quarantined"
        assert await quarantined() == []

        edge.commands.clear()
        await asyncio.to_thread(edge.ddata, {"Speed": 100.0})  # the node is back: a rebirth is requested

        async def rebirth_requested() -> bool:
            for topic, payload in list(edge.commands):
                if topic.endswith(f"/NCMD/{EDGE}"):
                    metrics = decode_payload(payload, MessageType.NCMD).metrics
                    return any(m.name == "Node Control/Rebirth" and m.value is True for m in metrics)
            return False

        await eventually(rebirth_requested)
        await asyncio.to_thread(edge.birth)
        await asyncio.to_thread(edge.ddata, {"Speed": 101.5})

        async def speed_good() -> bool:
            tags = (await client.get("/api/tags", params={"line": LINE}, headers=auth("viewer"))).json()
            return any(t["topic"] == f"{LINE}/{CELL}/Speed" and t["value"] == 101.5 and t["quality"] == "GOOD"
                       for t in tags)

        await eventually(speed_good)
    assert host.tracker.counters.quarantines == 1 and host.tracker.counters.quarantine_releases == 1
