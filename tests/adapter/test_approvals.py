"""Issue 18 item 1, approvals through the API: rules checked before signatures are asked for,
the approvals queue per role with the current value beside the requested one, cancel and reject."""

from __future__ import annotations

from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE
from tests.adapter.setup import USERS, auth
from tests.adapter.test_commands import _edge_ready, _signature
from uns.commands.model import CommandRequest, SignatureMeaning


async def _submit(adapter: RunningAdapter, metric: str, value: object) -> dict:
    response = await adapter.client.post("/api/commands", headers=auth("operator"), json={
        "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": metric, "value": value,
        "reason": "approvals test"})
    return {"status_code": response.status_code, **response.json()}


async def test_wrong_machine_state_is_refused_before_any_signature(adapter: RunningAdapter) -> None:
    edge = await _edge_ready(adapter)
    try:
        edge.ndata({"State": "Stopped"})  # SpeedSetpoint may only be written in Execute or Idle

        async def stopped() -> bool:
            tags = (await adapter.client.get(f"/api/tags?line={LINE}", headers=auth("viewer"))).json()
            return any(t["name"] == "State" and t["value"] == "Stopped" for t in tags)

        await eventually(stopped)
        refused = await _submit(adapter, "SpeedSetpoint", 130.0)
        assert refused["status_code"] == 409
        assert refused["reason"] == "wrong_machine_state"
        assert "machine is Stopped" in refused["detail"]
        listed = (await adapter.client.get("/api/commands", headers=auth("viewer"))).json()
        assert [(c["status"], c["signatures"]) for c in listed] == [("refused", [])]
        assert (await adapter.client.get("/api/approvals", headers=auth("operator"))).json() == []
    finally:
        edge.__exit__()


async def test_queue_shows_current_value_and_cancel_reject_close_commands(adapter: RunningAdapter) -> None:
    edge = await _edge_ready(adapter)
    try:
        client = adapter.client
        created = await _submit(adapter, "Recipe", "SKU-14")
        assert created["status_code"] == 201 and created["status"] == "awaiting_signature"
        request = CommandRequest.model_validate(created["request"])
        # the requester's own queue holds it; a supervisor's does not yet (one signature is missing)
        mine = (await client.get("/api/approvals", headers=auth("operator"))).json()
        assert [(a["command"]["command_id"], a["current_value"], a["current_quality"], a["requested_value"],
                 a["target"], a["sign_as"]) for a in mine] == [
            (str(request.command_id), "SKU-12", "GOOD", "SKU-14", f"{LINE}/{CELL}/Recipe", "authored")]
        assert (await client.get("/api/approvals", headers=auth("supervisor"))).json() == []
        signed = await client.post(f"/api/commands/{request.command_id}/sign", headers=auth("operator"),
                                   json=_signature(adapter, request, "operator", SignatureMeaning.AUTHORED))
        assert signed.json()["status"] == "awaiting_second_signature"
        assert (await client.get("/api/approvals", headers=auth("operator"))).json() == []
        theirs = (await client.get("/api/approvals", headers=auth("supervisor"))).json()
        assert [(a["requested_by"], a["critical"], a["sign_as"]) for a in theirs] == [
            (USERS["operator"][0], True, "approved")]

        # the requester cannot reject their own command; an operator cannot reject; a reason is required
        own = await client.post(f"/api/commands/{request.command_id}/reject", headers=auth("operator"),
                                json={"reason": "no"})
        assert (own.status_code, own.json()["reason"]) == (403, "role_required")
        blank = await client.post(f"/api/commands/{request.command_id}/reject", headers=auth("supervisor"),
                                  json={"reason": "   "})
        assert (blank.status_code, blank.json()["reason"]) == (422, "reason_required")
        rejected = await client.post(f"/api/commands/{request.command_id}/reject", headers=auth("supervisor"),
                                     json={"reason": "wrong SKU for this order"})
        assert rejected.status_code == 200
        supervisor = USERS["supervisor"][0]
        assert (rejected.json()["status"], rejected.json()["message"]) == (
            "rejected", f"rejected by {supervisor}: wrong SKU for this order")
        assert (await client.get("/api/approvals", headers=auth("supervisor"))).json() == []
        late = await client.post(f"/api/commands/{request.command_id}/sign", headers=auth("supervisor"),
                                 json=_signature(adapter, request, "supervisor", SignatureMeaning.APPROVED))
        assert (late.status_code, late.json()["reason"]) == (409, "not_open")
        trail = (await client.get(f"/api/commands/{request.command_id}", headers=auth("viewer"))).json()["audit"]
        assert [(e["event"], e.get("outcome"), e.get("actor_user_id")) for e in trail][-1] == (
            "refused", "rejected", supervisor)

        # the requester withdraws a second one
        second = await _submit(adapter, "Recipe", "SKU-14")
        cancelled = await client.post(f"/api/commands/{second['command_id']}/cancel", headers=auth("operator"),
                                      json={"reason": "changeover postponed"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await client.post(f"/api/commands/{second['command_id']}/cancel", headers=auth("operator"),
                                  json={"reason": "twice"})
        assert (again.status_code, again.json()["reason"]) == (409, "not_open")
        # nothing was sent for either
        listed = (await client.get("/api/commands", headers=auth("viewer"))).json()
        assert [(c["status"], c["dispatched_ms"]) for c in listed] == [("cancelled", None), ("rejected", None)]
    finally:
        edge.__exit__()
