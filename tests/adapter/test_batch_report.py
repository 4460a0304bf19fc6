"""``GET /api/lines/{line}/batches/{batch_id}/report`` over real HTTP and a real broker (issue 18 item 2).

A batch runs with a phase change, counter values and a refused command; once it has ended, the
report's parts equal what their own endpoints say (batch row, OEE, confirmations) and list exactly
what happened in the batch window: the two context steps with who asserted them, the command with
its ISA-95 target and status, the final confirmation with its delivery state.
"""

from __future__ import annotations

import asyncio

from mes_adapter.downtime.config import DEFAULT_REASONS
from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import auth


async def test_report_of_an_ended_batch_equals_the_parts_endpoints(adapter: RunningAdapter) -> None:
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    try:
        await asyncio.to_thread(edge.birth)
        client = adapter.client
        missing = await client.get(f"/api/lines/{LINE}/batches/B-R0/report", headers=auth("viewer"))
        assert missing.status_code == 404 and missing.json()["reason"] == "unknown_batch"

        async def born() -> bool:
            tags = (await client.get("/api/tags", params={"line": LINE}, headers=auth("viewer"))).json()
            return any(t["name"] == "GoodCount" for t in tags)

        await eventually(born)
        start = await client.post(f"/api/lines/{LINE}/batch/start", headers=auth("operator"),
                                  json={"batch_id": "B-R1", "work_order_id": "WO-R", "product_id": "SKU-12",
                                        "target_quantity": 50, "uom": "pcs"})
        assert start.status_code == 201, start.text
        await asyncio.to_thread(edge.ndata, {"GoodCount": 110, "RejectCount": 6})
        phase = await client.post(f"/api/lines/{LINE}/batch/phase", json={"phase": "filling"}, headers=auth("operator"))
        assert phase.status_code == 200, phase.text
        refused = await client.post("/api/commands", headers=auth("operator"), json={
            "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "SpeedSetpoint",
            "value": 900.0, "reason": "too fast on purpose"})
        assert refused.status_code == 422, refused.text

        async def counted() -> bool:
            state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
            return bool(state["current_batch"] and state["current_batch"]["good"] == 10)

        await eventually(counted)
        running = (await client.get(f"/api/lines/{LINE}/batches/B-R1/report", headers=auth("viewer"))).json()
        assert running["batch"]["running"] is True and running["confirmations"] == []
        end = await client.post(f"/api/lines/{LINE}/batch/end", json={"batch_id": "B-R1"}, headers=auth("operator"))
        assert end.status_code == 200, end.text

        async def confirmed() -> dict | None:
            report = (await client.get(f"/api/lines/{LINE}/batches/B-R1/report", headers=auth("viewer"))).json()
            return report if report["confirmations"] else None

        report = await eventually(confirmed)
        listed = (await client.get("/api/batches", params={"line": LINE}, headers=auth("viewer"))).json()
        assert report["batch"] == listed[0]
        assert (report["batch"]["good"], report["batch"]["scrap"], report["batch"]["running"]) == (10, 1, False)
        oee = (await client.get("/api/oee", params={"line": LINE, "batch": "B-R1"}, headers=auth("viewer"))).json()
        assert report["oee"] == oee and report["oee_unavailable"] is None
        assert (oee["good"], oee["scrap"]) == (10, 1) and {"breakdowns", "unexplained"} <= set(oee["losses"])
        stops = (await client.get("/api/stops", params={"line": LINE, "batch": "B-R1"}, headers=auth("viewer"))).json()
        assert report["stops"] == stops["stops"]
        confirmations = (await client.get("/api/confirmations", params={"line": LINE, "batch_id": "B-R1"},
                                          headers=auth("viewer"))).json()
        assert report["confirmations"] == list(reversed(confirmations))
        final = report["confirmations"][-1]
        assert (final["kind"], final["confirmation"]["produced"][0]["good"]) == ("final", 10)
        assert final["status"] == "not_configured"  # the test adapter has no webhook: nothing will send it

        assert [(c["phase"], c["work_order_id"], c["product_id"], c["target_quantity"], c["uom"], c["asserted_by"])
                for c in report["context"]] == [(None, "WO-R", "SKU-12", 50, "pcs", "alice"),
                                                 ("filling", "WO-R", "SKU-12", 50, "pcs", "alice")]
        assert report["context"][0]["until_ms"] == report["context"][1]["since_ms"]
        assert report["context"][1]["until_ms"] == report["batch"]["end_ms"]
        assert [(c["command_id"], c["target"], c["value"], c["requested_by"], c["status"])
                for c in report["commands"]] == [(refused.json()["command_id"], f"{LINE}/{CELL}/SpeedSetpoint",
                                                  900.0, "alice", "refused")]
        assert (report["alarms"], report["exceptions"], report["holds"], report["truncated"]) == ([], [], [], [])
        assert (await client.get(f"/api/lines/{LINE}/batches/B-R1/report")).status_code == 401
    finally:
        edge.__exit__()


async def test_me_says_who_may_control_batches_and_the_api_refuses_a_viewer(adapter: RunningAdapter) -> None:
    client = adapter.client
    may = {role: (await client.get("/api/me", headers=auth(role))).json()["batch_control"]
           for role in ("viewer", "operator", "supervisor", "engineer")}
    assert may == {"viewer": False, "operator": True, "supervisor": True, "engineer": True}
    refused = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": "B-V"}, headers=auth("viewer"))
    assert refused.status_code == 403 and refused.json()["reason"] == "role_required"


async def test_me_says_which_mes_controls_a_role_gets_and_the_reason_list_is_the_configured_one(
        adapter: RunningAdapter) -> None:
    """What the dashboard's orders, stops and QA panel (mes.js) shows: from the roles the routes require."""
    client = adapter.client
    flags = ("order_start", "order_cancel", "stop_reason", "disposition")
    may = {}
    for role in ("viewer", "operator", "supervisor", "engineer"):
        me = (await client.get("/api/me", headers=auth(role))).json()
        may[role] = tuple(me[f] for f in flags)
    assert may == {"viewer": (False, False, False, False), "operator": (True, False, True, False),
                   "supervisor": (True, True, True, False), "engineer": (True, True, True, False)}
    reasons = (await client.get("/api/stops/reasons", headers=auth("viewer"))).json()
    assert reasons == [{"code": code, "bucket": bucket, "category": category, "description": text}
                       for bucket, categories in DEFAULT_REASONS.items()
                       for category, codes in categories.items() for code, text in codes.items()]
    assert (await client.get("/api/stops/reasons")).status_code == 401


async def test_report_of_a_line_without_mes_configuration_says_why_it_has_no_oee(adapter: RunningAdapter) -> None:
    client = adapter.client
    other = "acme/plant1/packaging/line9"  # batch context, but no counters or state configured
    start = await client.post(f"/api/lines/{other}/batch/start", json={"batch_id": "B-N"}, headers=auth("operator"))
    assert start.status_code == 201, start.text
    report = (await client.get(f"/api/lines/{other}/batches/B-N/report", headers=auth("viewer"))).json()
    assert (report["oee"], report["stops"]) == (None, [])
    assert report["oee_unavailable"] == (f"line {other!r} has no MES configuration (counters, state): "
                                         "no OEE and no stops")
    assert (report["batch"]["batch_id"], report["batch"]["running"]) == ("B-N", True)
    assert [c["seq"] for c in report["context"]] == [0]
    assert (await client.get("/static/batches.js")).status_code == 200
