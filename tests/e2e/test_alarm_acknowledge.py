"""Issue 15 item 5 end to end: an OPC UA condition acknowledged (and confirmed) from the MES REST API.

The stack `uns init` generates (simulator → edge → broker → adapter, real processes; the embedded
broker and Mosquitto with the generated config): the simulator raises the Filler's Jam (its
``RaiseAlarm`` hook, what `uns sim fault alarm` calls); the
acknowledgement is posted to ``/api/alarms/acknowledge``, signed with the demo operator's Ed25519
key on the ordinary ``/api/commands/{id}/sign`` path, and the edge calls Acknowledge (``i=9111``) on
the condition with the EventId it last received. Asserted: the simulator's own condition node
(AckedState/Id, ConfirmedState/Id read with a separate asyncua client), the retained ``_alarms``
message, the command's result and audit trail, the refusal of a second acknowledgement
(BadConditionBranchAlreadyAcked → ``already_acked``), and the refusals that never reach the edge
(unsigned, a viewer, a forged signature, a condition the allowlist does not name).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from asyncua import Client, ua

from simulator.client import boolean, call_simulation, string
from simulator.config import NAMESPACE_URI
from tests.e2e.stack import Stack, running_stack, wait_until
from tests.support.brokers import broker_variants
from uns.commands.model import CommandRequest, SignatureMeaning
from uns.commands.signing import generate_private_key, load_private_key, sign_command
from uns.mqtt_url import parse_broker_url
from uns.sparkplug.model import now_ms

pytestmark = pytest.mark.timeout(240)

JAM = "Line1/Filler/Jam"


class Retained:
    """The last message of ``<line>/_alarms/Filler/_conditions/Jam`` (as the adapter's broker user)."""

    def __init__(self, stack: Stack) -> None:
        adapter = yaml.safe_load((stack.folder / "adapter.yaml").read_text())
        url = parse_broker_url(adapter["host"]["broker_url"])
        self.topic = f"{stack.line}/_alarms/Filler/_conditions/Jam"
        self.last: dict[str, Any] | None = None
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="alarm-ack-reader")
        self.client.username_pw_set(url.username, url.password)
        self.client.on_connect = lambda c, *_: (c.subscribe(self.topic, 1), ready.set())
        self.client.on_message = lambda c, u, m: setattr(self, "last", json.loads(m.payload))
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        assert ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _sign(stack: Stack, command: dict, key: Any = None) -> dict:
    """The operator's own signature (the demo key `uns init` wrote, unless another ``key`` is given)."""
    summary = yaml.safe_load((stack.folder / "stack.yaml").read_text())
    key = key or load_private_key(Path(summary["signing_keys"]["demo-operator"]))
    request = CommandRequest.model_validate(command["request"])
    return sign_command(request, key, user_id="demo-operator", full_name="Demo operator",
                        meaning=SignatureMeaning.AUTHORED, now_ms=now_ms()).model_dump(mode="json")


async def _condition_states(endpoint: str) -> tuple[bool, bool, int]:
    """AckedState/Id and ConfirmedState/Id of the simulator's Jam condition node, and the simulator's
    own count of conditions waiting for an acknowledgement (``Simulation/Truth/UnackedAlarms``)."""
    async with Client(endpoint, timeout=10) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(ua.NodeId(JAM, ns))
        acked = await (await node.get_child(["0:AckedState", "0:Id"])).read_value()
        confirmed = await (await node.get_child(["0:ConfirmedState", "0:Id"])).read_value()
        unacked = await client.get_node(ua.NodeId("Simulation/Truth/UnackedAlarms", ns)).read_value()
        return acked, confirmed, int(unacked)


def _edge_audit(stack: Stack, command_id: str) -> list[str]:
    """The events the edge's own audit chain holds for a command (read-only; the edge writes it)."""
    plant = yaml.safe_load((stack.folder / "plant.yaml").read_text())
    db = sqlite3.connect(f"file:{Path(plant['data_dir']) / 'audit' / 'commands.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT body FROM audit_record WHERE command_id=? ORDER BY seq", (command_id,)).fetchall()
    finally:
        db.close()
    return [json.loads(body)["event"] for (body,) in rows]


def _run_signed(stack: Stack, path: str, body: dict) -> dict:
    """POST the acknowledgement, sign it as its requester, wait for the edge's final result."""
    status, command = stack.api("POST", path, body)
    assert status == 201 and command["status"] == "awaiting_signature", command
    command_id = command["request"]["command_id"]
    status, signed = stack.api("POST", f"/api/commands/{command_id}/sign", _sign(stack, command))
    assert status == 200 and signed["status"] in ("dispatched", "confirmed", "refused"), signed

    def final() -> dict | None:
        _, found = stack.api("GET", f"/api/commands/{command_id}", role="viewer")
        return found if found["result"] is not None else None

    return wait_until(final, 30, f"result of {path}")


# on embedded too: tests/e2e/test_dashboard_alarm_ack.py acknowledges through the default stack
@pytest.mark.parametrize("broker", broker_variants("mosquitto"))
def test_acknowledge_and_confirm_from_the_api_reach_the_condition_and_the_audit_chain(tmp_path: Path,
                                                                                      broker: str) -> None:
    with running_stack(tmp_path, broker=broker, alarms=True) as stack:
        reader = Retained(stack)
        try:
            body = {"line": stack.line, "cell": "Filler", "condition": "Jam", "comment": "jam cleared at infeed"}
            # born as never raised; the edge has no event of it, so there is nothing to acknowledge
            wait_until(lambda: reader.last is not None, 30, "Jam on _alarms")
            assert (reader.last["active"], reader.last["acked"], reader.last["event_id"]) == (False, True, "")
            never = _run_signed(stack, "/api/alarms/acknowledge", body)
            assert (never["status"], never["result"]["reason"]) == ("refused", "unknown_condition"), never

            asyncio.run(call_simulation(stack.opcua, "RaiseAlarm", string("Filler"), string("Jam"), boolean(True)))
            raised = wait_until(lambda: reader.last if reader.last["active"] else None, 30, "Jam active")
            assert (raised["acked"], raised["confirmed"], raised["retain"]) == (False, True, True)
            assert asyncio.run(_condition_states(stack.opcua)) == (False, True, 1)

            # -- refused before the edge: unsigned, not an operator, a forged signature, not allowlisted
            status, unsigned = stack.api("POST", "/api/alarms/acknowledge", body)
            assert (status, unsigned["status"]) == (201, "awaiting_signature"), unsigned
            status, denied = stack.api("POST", "/api/alarms/acknowledge", body, role="viewer")
            assert (status, denied["reason"]) == (403, "role_required"), denied
            forged = _sign(stack, unsigned, key=generate_private_key())
            status, bad = stack.api("POST", f"/api/commands/{unsigned['request']['command_id']}/sign", forged)
            assert (status, bad["reason"]) == (422, "signature_invalid"), bad
            status, other = stack.api("POST", "/api/alarms/acknowledge", {**body, "condition": "Overheat"})
            assert (status, other["reason"]) == (422, "not_allowlisted"), other
            _, still = stack.api("GET", f"/api/commands/{unsigned['request']['command_id']}", role="viewer")
            assert (still["status"], still["dispatched_ms"], still["result"]) == ("awaiting_signature", None, None)
            assert asyncio.run(_condition_states(stack.opcua)) == (False, True, 1)

            # -- acknowledged: the edge called Acknowledge with the EventId it last saw, AckedState reads true
            acked = _run_signed(stack, "/api/alarms/acknowledge", body)
            result = acked["result"]
            assert (acked["status"], result["outcome"], result["reason"]) == ("confirmed", "confirmed", None), acked
            assert (result["metric"], result["device_id"], result["requested_value"]) == (
                "Alarms/Jam/Acknowledge", "Filler", "jam cleared at infeed")
            assert (result["old_value"], result["readback_value"], result["write_status_code"]) == (False, True, 0)
            assert raised["event_id"] in result["message"]
            assert asyncio.run(_condition_states(stack.opcua)) == (True, False, 0)
            on_uns = wait_until(lambda: reader.last if reader.last["acked"] else None, 30, "Jam acked on _alarms")
            assert (on_uns["active"], on_uns["acked"], on_uns["confirmed"], on_uns["retain"]) == (
                True, True, False, True)
            assert on_uns["event_id"] != raised["event_id"]
            trail = [(a["event"], a.get("outcome")) for a in acked["audit"]]
            assert [event for event, _ in trail] == ["requested", "signed", "dispatched", "readback_ok"], trail
            assert _edge_audit(stack, acked["command_id"]) == ["written", "readback_ok"]

            # -- a second acknowledgement: the server refuses it, the reason says why
            again = _run_signed(stack, "/api/alarms/acknowledge", body)
            assert (again["status"], again["result"]["reason"]) == ("refused", "already_acked"), again
            assert "BadConditionBranchAlreadyAcked" in again["result"]["message"]
            assert [a["event"] for a in again["audit"]][-1] == "refused"
            assert _edge_audit(stack, again["command_id"]) == ["written", "refused"]
            assert _edge_audit(stack, unsigned["request"]["command_id"]) == []  # never sent

            # -- confirmed: ConfirmedState reads true, and the cleared condition is no longer retained
            asyncio.run(call_simulation(stack.opcua, "RaiseAlarm", string("Filler"), string("Jam"), boolean(False)))
            wait_until(lambda: reader.last if not reader.last["active"] else None, 30, "Jam inactive")
            confirmed = _run_signed(stack, "/api/alarms/confirm", {**body, "comment": "checked by maintenance"})
            assert (confirmed["status"], confirmed["result"]["readback_value"]) == ("confirmed", True), confirmed
            assert confirmed["request"]["metric"] == "Alarms/Jam/Confirm"
            assert asyncio.run(_condition_states(stack.opcua)) == (True, True, 0)
            done = wait_until(lambda: reader.last if reader.last["confirmed"] else None, 30, "Jam confirmed")
            assert (done["active"], done["acked"], done["retain"]) == (False, True, False)
        finally:
            reader.close()
