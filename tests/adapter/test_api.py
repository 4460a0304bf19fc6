"""The adapter end to end over real HTTP and a real broker: tags, nodes, auth, batches, commands, metrics."""

from __future__ import annotations

import asyncio
import json

from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import auth

SPEED_TOPIC = f"{LINE}/{CELL}/Speed"


async def _start_edge(adapter: RunningAdapter) -> Edge:
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    await asyncio.to_thread(edge.birth)
    return edge


async def test_tags_nodes_and_live_values(adapter: RunningAdapter) -> None:
    edge = await _start_edge(adapter)
    try:
        client = adapter.client

        async def speed_tag() -> dict | None:
            tags = (await client.get("/api/tags", params={"line": LINE}, headers=auth("viewer"))).json()
            return next((t for t in tags if t["topic"] == SPEED_TOPIC), None)

        tag = await eventually(speed_tag)
        assert tag["value"] == 120.5 and tag["quality"] == "GOOD" and tag["unit"] == "m/min"
        assert tag["line"] == LINE and tag["cell"] == CELL
        await asyncio.to_thread(edge.ddata, {"Speed": 130.25})
        await eventually(lambda: _value_is(client, 130.25))
        edge.skip_seq()
        await asyncio.to_thread(edge.ddata, {"Speed": 131.0})

        async def node_with_gap() -> dict | None:
            nodes = (await client.get("/api/nodes", headers=auth("viewer"))).json()
            node = next((n for n in nodes if n["edge_node_id"] == EDGE), None)
            return node if node and node["seq_gaps"] >= 1 else None

        node = await eventually(node_with_gap)
        assert node["group_id"] == GROUP and node["line"] == LINE and node["nbirths"] >= 1
        assert node["rebirths_requested"].get("seq_gap", 0) >= 1
        assert node["devices"][0]["device_id"] == CELL and node["devices"][0]["dbirths"] >= 1
        lines = (await client.get("/api/lines", headers=auth("viewer"))).json()
        assert any(line["line"] == LINE and line["nodes_online"] == 1 for line in lines)
        state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
        assert state["tags_by_quality"]["GOOD"] >= 7 and state["nodes"][0]["state"] == "online"
        history = await eventually(lambda: _history(client))
        assert [p["value"] for p in history["points"]][:2] == [120.5, 130.25]
    finally:
        edge.__exit__()


async def _value_is(client, value: float) -> bool:  # type: ignore[no-untyped-def]
    tags = (await client.get("/api/tags", headers=auth("viewer"))).json()
    return any(t["topic"] == SPEED_TOPIC and t["value"] == value for t in tags)


async def _history(client) -> dict | None:  # type: ignore[no-untyped-def]
    response = await client.get("/api/tags/history", params={"topic": SPEED_TOPIC}, headers=auth("viewer"))
    body = response.json()
    return body if response.status_code == 200 and len(body["points"]) >= 3 else None


async def test_auth_refusals_name_the_reason(adapter: RunningAdapter) -> None:
    client = adapter.client
    response = await client.get("/api/tags")
    assert response.status_code == 401 and response.json()["reason"] == "missing_token"
    assert response.headers["www-authenticate"] == "Bearer"
    response = await client.get("/api/tags", headers={"Authorization": "Bearer nope-nope-nope"})
    assert response.status_code == 401 and response.json()["reason"] == "invalid_token"
    response = await client.get("/api/tags", headers={"Authorization": "Basic abc"})
    assert response.status_code == 401 and response.json()["reason"] == "bad_authorization_header"
    response = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": "B1"}, headers=auth("viewer"))
    assert response.status_code == 403
    assert "operator" in response.json()["detail"] and "viewer" in response.json()["detail"]
    response = await client.get("/api/audit/export", headers=auth("supervisor"))
    assert response.status_code == 403 and "engineer" in response.json()["detail"]
    response = await client.get("/api/lines/acme/plant1/nowhere/line9/state", headers=auth("viewer"))
    assert response.status_code == 404 and response.json()["reason"] == "unknown_line"
    response = await client.get("/api/lines/not-a-line/state", headers=auth("viewer"))
    assert response.status_code == 422 and "enterprise" in response.json()["detail"]


async def test_batch_start_phase_end_then_listed(adapter: RunningAdapter) -> None:
    edge = await _start_edge(adapter)
    try:
        client = adapter.client
        await eventually(lambda: _value_is(client, 120.5))
        response = await client.post(f"/api/lines/{LINE}/batch/start",
                                     json={"batch_id": "B-1", "work_order_id": "WO-1", "product_id": "SKU-12"},
                                     headers=auth("operator"))
        assert response.status_code == 201, response.text
        assert response.json()["batch"]["batch_id"] == "B-1" and response.json()["batch"]["running"]
        again = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": "B-2"}, headers=auth("operator"))
        assert again.status_code == 409 and again.json()["reason"] == "batch_running"
        await asyncio.to_thread(edge.ndata, {"GoodCount": 110, "RejectCount": 6})
        await asyncio.to_thread(edge.ddata, {"Speed": 125.0})
        phase = await client.post(f"/api/lines/{LINE}/batch/phase", json={"phase": "filling"},
                                  headers=auth("operator"))
        assert phase.status_code == 200 and phase.json()["assertion"]["phase"] == "filling"

        async def counted() -> dict | None:
            state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
            batch = state["current_batch"]
            return batch if batch and batch["good"] == 10 else None

        batch = await eventually(counted)
        assert batch["scrap"] == 1
        end = await client.post(f"/api/lines/{LINE}/batch/end", json={"batch_id": "B-1"}, headers=auth("operator"))
        assert end.status_code == 200 and end.json()["batch"]["running"] is False
        listed = (await client.get("/api/batches", params={"line": LINE}, headers=auth("viewer"))).json()
        assert listed[0]["batch_id"] == "B-1" and listed[0]["good"] == 10 and listed[0]["end_ms"] is not None
        records = (await client.get("/api/batches/B-1/records", headers=auth("viewer"))).json()
        assert any(r["metric"] == "Speed" and r["value"] == 125.0 and r["batch_id"] == "B-1"
                   for r in records["records"])
        # a line's records in a range, each bound to the batch of its source time (before the start: none)
        speed = (await client.get(f"/api/lines/{LINE}/records", params={"from_ms": 0, "to_ms": 2**62, "metric": "Speed",
                                                                        "cell": CELL}, headers=auth("viewer"))).json()
        assert [(r["value"], r["batch_id"], r["work_order_id"]) for r in speed["records"]] == [
            (120.5, None, None), (125.0, "B-1", "WO-1")] and not speed["truncated"]
        backwards = await client.get(f"/api/lines/{LINE}/records", params={"from_ms": 5, "to_ms": 4},
                                     headers=auth("viewer"))
        assert (backwards.status_code, backwards.json()["reason"]) == (422, "bad_range")

        async def confirmed() -> list | None:
            rows = (await client.get("/api/confirmations", params={"line": LINE}, headers=auth("viewer"))).json()
            return rows or None

        rows = await eventually(confirmed)
        assert rows[0]["batch_id"] == "B-1" and rows[0]["confirmation"]["produced"][0]["good"] == 10
        outbox = (await client.get("/api/outbox", headers=auth("viewer"))).json()
        assert sum(outbox["counts"].values()) >= 1
        oee = await client.get("/api/oee", params={"line": LINE, "batch": "B-1"}, headers=auth("viewer"))
        assert oee.status_code == 200 and oee.json()["good"] == 10
    finally:
        edge.__exit__()


async def test_refused_command_is_4xx_and_audited(adapter: RunningAdapter) -> None:
    edge = await _start_edge(adapter)
    try:
        client = adapter.client
        await eventually(lambda: _value_is(client, 120.5))
        response = await client.post("/api/commands", headers=auth("operator"), json={
            "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "SpeedSetpoint",
            "value": 900.0, "reason": "too fast on purpose"})
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["reason"] == "out_of_range" and "maximum" in body["detail"]
        command_id = body["command_id"]
        response = await client.post("/api/commands", headers=auth("operator"), json={
            "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "Speed",
            "value": 1.0, "reason": "not writable"})
        assert response.status_code == 422 and response.json()["reason"] == "not_allowlisted"
        status = (await client.get(f"/api/commands/{command_id}", headers=auth("viewer"))).json()
        assert status["status"] == "refused" and [a["event"] for a in status["audit"]] == ["requested", "refused"]
        export = await client.get("/api/audit/export", headers=auth("engineer"))
        assert export.status_code == 200
        document = export.json()
        assert document["verify"]["ok"] is True
        refused = [r for r in document["records"] if r["event"] == "refused"]
        assert {r["reason_code"] for r in refused} == {"out_of_range", "not_allowlisted"}
        assert refused[0]["actor_user_id"] == "alice"
    finally:
        edge.__exit__()


async def test_metrics_health_and_dashboard(adapter: RunningAdapter) -> None:
    client = adapter.client
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    await client.get("/api/tags", headers=auth("viewer"))
    text = (await client.get("/metrics")).text
    for name in ("uns_host_messages_in_total", "uns_host_births_total", "uns_host_deaths_total",
                 "uns_host_seq_gaps_total", "uns_host_invalid_payloads_total", "uns_host_mirror_lag_ms",
                 "uns_outbox_entries", "uns_adapter_http_requests_total", "uns_host_online 1.0",
                 "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"):
        assert name in text, name
    assert 'route="/api/tags"' in text
    page = await client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for script in ("/static/trends.js", "/static/app.js"):  # the trends' code first: app.js calls it
        assert f'<script src="{script}">' in page.text
        assert (await client.get(script)).status_code == 200
    assert page.text.index("/static/trends.js") < page.text.index("/static/app.js")
    assert (await client.get("/docs")).status_code == 200
    me = (await client.get("/api/me", headers=auth("supervisor"))).json()
    assert me == {"user_id": "bob", "full_name": "Bob Supervisor", "role": "supervisor", "batch_control": True,
                  "order_start": True, "order_cancel": True, "stop_reason": True, "disposition": False}
    rules = (await client.get("/api/allowlist", headers=auth("viewer"))).json()
    assert rules["version"] == "test-1" and {r["metric"] for r in rules["rules"]} == {"SpeedSetpoint", "Recipe",
                                                                                      "Faceplate"}
    member = next(r for r in rules["rules"] if r["metric"] == "Faceplate")  # a template member rule (issue 21)
    assert (member["member"], member["rule_id"]) == ("SpeedSetpoint", "packaging:line1/filler/Faceplate#SpeedSetpoint")


async def test_sse_delivers_snapshot_and_live_tag_changes(adapter: RunningAdapter) -> None:
    edge = await _start_edge(adapter)
    try:
        await eventually(lambda: _value_is(adapter.client, 120.5))
        events: list[tuple[str, dict]] = []

        async def read() -> None:
            async with adapter.client.stream("GET", "/api/events",
                                             params={"token": "test-viewer-token"}) as response:
                assert response.status_code == 200
                kind = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind:
                        events.append((kind, json.loads(line[6:])))
                        if kind == "tags" and any(t["value"] == 142.0 for t in events[-1][1]["tags"]):
                            return

        reader = asyncio.create_task(read())
        await eventually(lambda: _async_true(bool(events)))
        await asyncio.to_thread(edge.ddata, {"Speed": 142.0})
        await asyncio.wait_for(reader, 10)
        assert events[0][0] == "snapshot" and any(t["topic"] == SPEED_TOPIC for t in events[0][1]["tags"])
        unauthorized = await adapter.client.get("/api/events")
        assert unauthorized.status_code == 401
    finally:
        edge.__exit__()


async def _async_true(value: bool) -> bool:
    return value
