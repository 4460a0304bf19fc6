"""Commands through the API: sign, two-person rule, dispatch as DCMD with the envelope, result from the edge."""

from __future__ import annotations

import asyncio

from tests.adapter.conftest import RunningAdapter, eventually
from tests.adapter.edge import CELL, EDGE, GROUP, LINE, Edge
from tests.adapter.setup import USERS, auth
from uns.commands.model import CommandRequest, CommandResult, Outcome, ReasonCode, SignatureMeaning
from uns.commands.signing import sign_command
from uns.commands.wire import decode_command
from uns.conventions import BDSEQ
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, Template, now_ms
from uns.sparkplug.topic import MessageType, node_topic


def _signature(adapter: RunningAdapter, request: CommandRequest, role: str, meaning: SignatureMeaning) -> dict:
    user_id, name = USERS[role]
    signature = sign_command(request, adapter.files.keys[role], user_id=user_id, full_name=name, meaning=meaning,
                             now_ms=now_ms())
    return signature.model_dump(mode="json")


async def _edge_ready(adapter: RunningAdapter) -> Edge:
    edge = Edge(adapter.broker.host, adapter.broker.port).__enter__()
    await asyncio.to_thread(edge.birth)

    async def born() -> bool:
        tags = (await adapter.client.get("/api/tags", headers=auth("viewer"))).json()
        return len(tags) >= 7

    await eventually(born)
    return edge


async def test_signed_command_is_dispatched_and_result_audited(adapter: RunningAdapter) -> None:
    edge = await _edge_ready(adapter)
    try:
        client = adapter.client
        created = await client.post("/api/commands", headers=auth("operator"), json={
            "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "SpeedSetpoint", "value": 150.5,
            "reason": "new product"})
        assert created.status_code == 201, created.text
        view = created.json()
        assert view["status"] == "awaiting_signature"
        request = CommandRequest.model_validate(view["request"])
        # someone else's signature under my token is refused
        wrong = await client.post(f"/api/commands/{request.command_id}/sign", headers=auth("operator"),
                                  json=_signature(adapter, request, "supervisor", SignatureMeaning.APPROVED))
        assert wrong.status_code == 403 and wrong.json()["reason"] == "not_your_signature"
        signed = await client.post(f"/api/commands/{request.command_id}/sign", headers=auth("operator"),
                                   json=_signature(adapter, request, "operator", SignatureMeaning.AUTHORED))
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "dispatched"

        async def received() -> list | None:
            return list(edge.commands) or None

        topic, data = (await eventually(received))[0]
        commands = decode_command(topic, data, lambda name, alias: ("SpeedSetpoint", DataType.Double))
        wire = commands[0]
        assert wire.request.command_hash() == request.command_hash() and wire.request.value == 150.5
        result = CommandResult(command_id=request.command_id, outcome=Outcome.CONFIRMED,
                               command_hash=request.command_hash(), group_id=GROUP, edge_node_id=EDGE,
                               device_id=CELL, metric="SpeedSetpoint", old_value=120.0, requested_value=150.5,
                               readback_value=150.5, received_at_ms=now_ms(), completed_at_ms=now_ms())
        edge.client.publish(f"{LINE}/_cmd/result/{request.command_id}", result.to_bytes(), qos=1, retain=True)

        async def confirmed() -> dict | None:
            body = (await client.get(f"/api/commands/{request.command_id}", headers=auth("viewer"))).json()
            return body if body["status"] == "confirmed" else None

        body = await eventually(confirmed)
        assert [a["event"] for a in body["audit"]] == ["requested", "signed", "dispatched", "readback_ok"]
        metrics = (await client.get("/metrics")).text
        assert 'uns_adapter_command_outcomes_total{outcome="confirmed"' in metrics

        # someone replays the captured DCMD; the edge refuses it ("replayed") on the same result topic:
        # the command ran once and was confirmed, and the MES must keep saying so
        replay = result.model_copy(update={"outcome": Outcome.REFUSED, "reason": ReasonCode.REPLAYED,
                                           "message": "command id seen before", "readback_value": None})
        edge.client.publish(f"{LINE}/_cmd/result/{request.command_id}", replay.to_bytes(), qos=1, retain=True)

        async def noticed() -> bool:
            return "uns_adapter_command_results_after_final_total 1.0" in (await client.get("/metrics")).text

        await eventually(noticed)
        body = (await client.get(f"/api/commands/{request.command_id}", headers=auth("viewer"))).json()
        assert body["status"] == "confirmed"
        assert [a["event"] for a in body["audit"]] == ["requested", "signed", "dispatched", "readback_ok"]
    finally:
        edge.__exit__()


async def test_critical_command_needs_a_supervisor_approval(adapter: RunningAdapter) -> None:
    edge = await _edge_ready(adapter)
    try:
        client = adapter.client
        created = (await client.post("/api/commands", headers=auth("operator"), json={
            "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "Recipe", "value": "SKU-14",
            "reason": "changeover"})).json()
        request = CommandRequest.model_validate(created["request"])
        url = f"/api/commands/{request.command_id}/sign"
        first = await client.post(url, headers=auth("operator"),
                                  json=_signature(adapter, request, "operator", SignatureMeaning.AUTHORED))
        assert first.json()["status"] == "awaiting_second_signature"
        approve = await client.post(url, headers=auth("supervisor"),
                                    json=_signature(adapter, request, "supervisor", SignatureMeaning.APPROVED))
        assert approve.status_code == 200 and approve.json()["status"] == "dispatched"
        again = await client.post(url, headers=auth("supervisor"),
                                  json=_signature(adapter, request, "supervisor", SignatureMeaning.APPROVED))
        assert again.status_code == 409 and again.json()["reason"] == "not_open"
    finally:
        edge.__exit__()


async def test_a_template_member_command_is_checked_against_the_born_instance_and_sent_as_a_template(
        adapter: RunningAdapter) -> None:
    """Issue 21 item 4 on the MES side: the adapter checks a member write against the instance the edge
    born (``unknown_member`` / ``not_allowlisted`` naming the member, 422, before any signature) and
    dispatches an allowed one as a DCMD whose value is a partial instance of the born template
    (tck-id-payloads-template-instance-ref, tck-id-payloads-template-instance-members-data)."""
    edge = await _edge_ready(adapter)
    try:
        ts = now_ms()
        members = [Metric("Speed", 118.0, DataType.Double), Metric("SpeedSetpoint", 120.0, DataType.Double)]
        definition = Template(metrics=[Metric(m.name, None, m.datatype, is_null=True) for m in members],
                              version="v1", is_definition=True)
        instance = Template(metrics=members, version="v1", template_ref="CellFaceplateType")
        edge.bd_seq += 1
        edge.seq = 0
        edge._send(node_topic(GROUP, MessageType.NBIRTH, EDGE), encode_payload(Payload([
            Metric(BDSEQ, edge.bd_seq, DataType.Int64, timestamp=ts),
            Metric("_types_/CellFaceplateType", definition, DataType.Template, timestamp=ts)],
            timestamp=ts, seq=0), MessageType.NBIRTH))
        edge._send(node_topic(GROUP, MessageType.DBIRTH, EDGE, CELL), encode_payload(Payload([
            Metric("Faceplate", instance, DataType.Template, alias=20, timestamp=ts)], timestamp=ts, seq=1),
            MessageType.DBIRTH))
        client = adapter.client

        async def born() -> bool:
            tags = (await client.get("/api/tags", headers=auth("viewer"))).json()
            return any(t["name"] == "Faceplate" for t in tags)

        await eventually(born)

        async def post(value: object) -> dict:
            response = await client.post("/api/commands", headers=auth("operator"), json={
                "group_id": GROUP, "edge_node_id": EDGE, "device_id": CELL, "metric": "Faceplate", "value": value,
                "reason": "faceplate setpoint"})
            return {**response.json(), "http": response.status_code}

        unknown = await post({"Pressure": 1.0})
        assert (unknown["http"], unknown["reason"]) == (422, "unknown_member"), unknown
        assert "has no member 'Pressure'" in unknown["detail"]
        hidden = await post({"Speed": 1.0})
        assert (hidden["http"], hidden["reason"]) == (422, "not_allowlisted"), hidden
        assert "member 'Speed'" in hidden["detail"] and "['SpeedSetpoint']" in hidden["detail"]
        created = await post({"SpeedSetpoint": 150})
        assert (created["http"], created["status"]) == (201, "awaiting_signature"), created
        request = CommandRequest.model_validate(created["request"])
        assert request.value == {"SpeedSetpoint": 150.0}
        signed = await client.post(f"/api/commands/{request.command_id}/sign", headers=auth("operator"),
                                   json=_signature(adapter, request, "operator", SignatureMeaning.AUTHORED))
        assert signed.json()["status"] == "dispatched", signed.text

        async def received() -> list | None:
            return [c for c in edge.commands if "/DCMD/" in c[0]] or None

        topic, data = (await eventually(received))[-1]
        (wire,) = decode_command(topic, data, lambda name, alias: ("Faceplate", DataType.Template))
        assert wire.request.command_hash() == request.command_hash()
        sent = wire.metric.value
        assert (sent.template_ref, sent.version, sent.is_definition) == ("CellFaceplateType", "v1", False)
        assert [(m.name, m.value) for m in sent.metrics] == [("SpeedSetpoint", 150.0)]
    finally:
        edge.__exit__()
