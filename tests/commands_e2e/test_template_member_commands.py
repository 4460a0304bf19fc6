"""A command to one member of a template instance, end to end (issue 21 item 4): a host DCMD carrying
the member in a Template value -> the edge's checks (allowlist by member path, signatures) -> the
simulator's faceplate member variable -> read back, audited -> DDATA -> the host's UNS.

The stack: the simulator (quiet, in-process), the edge app with a ``member:`` rule for
``Filler/Faceplate`` ``SpeedSetpoint``, Mosquitto, the uns-hub host mirroring the UNS, and the
command client sending signed DCMDs. The plant's value is read with a separate asyncua client.

Sparkplug: the DCMD's value is a partial instance naming its definition
(tck-id-payloads-template-instance-ref); the change comes back as DDATA carrying only the written
member (tck-id-payloads-template-instance-members-data), and the UNS shows the whole instance with it.
Refusals, each specific, audited, and leaving the plant unchanged: a member the allowlist does not
name (``not_allowlisted``), a member the instance does not have (``unknown_member``), a value of
the wrong type (``wrong_type``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from simulator.structures import FACEPLATE_MEMBERS
from tests.commands_e2e.rig import ALLOWLIST, NS, Rig, running_rig
from tests.host.conftest import running_host, wait_for
from tests.simulator.structured import quiet_config
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.audit.verify import verify
from uns.commands.model import Outcome, ReasonCode
from uns.commands.signing import sign_command
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Template
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_topic
from unshub.command_client import CommandClient, MetricTarget

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(120)]

RULES = ALLOWLIST + f"""      - device_id: Filler
        metric: Faceplate
        member: SpeedSetpoint
        datatype: Double
        min: 0
        max: 600
        tolerance: 0.001
        readback_timeout_s: 2
        write: {{node_id: "{NS}Line1/Filler/Faceplate"}}
"""
FACEPLATE_TAG = {"node_id": f"{NS}Line1/Filler/Faceplate", "metric": "Faceplate", "cell": "Filler",
                 "datatype": "Template"}


def faceplate(rig: Rig) -> dict[str, Any]:
    return {member: rig.sim.model.sample(f"Line1/Filler/{tag}").value
            for member, (_t, tag) in FACEPLATE_MEMBERS.items()}


def uns_faceplate(sniffer: Sniffer) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sniffer.snapshot(
        lambda m: m.topic.endswith("/Filler/Faceplate") and not m.topic.startswith("spBv1.0/"))]


def faceplate_ddata(sniffer: Sniffer) -> list[Template]:
    """The Faceplate instances of every Filler DDATA so far (aliases resolved from the births)."""
    catalog, out = EdgeNodeCatalog(), []
    for msg in sniffer.snapshot(lambda m: m.topic.startswith("spBv1.0/") and "/STATE/" not in m.topic):
        topic = parse_topic(msg.topic)
        if not isinstance(topic, SparkplugTopic) or topic.message_type in (MessageType.NDEATH, MessageType.NCMD,
                                                                            MessageType.DCMD):
            continue
        payload = catalog.decode(topic.message_type, msg.payload, topic.device_id)
        if topic.message_type is MessageType.DDATA and topic.device_id == "Filler":
            out += [m.value for m in payload.metrics if m.name == "Faceplate"]
    return out


async def test_a_member_written_by_a_host_dcmd_reaches_the_plant_and_comes_back_alone(
        mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    quiet = quiet_config().cells
    with Sniffer(mosquitto.host, mosquitto.port, ("#",)) as sniffer:
        async with running_host(mosquitto), running_rig(
                tmp_path, mosquitto.url, rules=RULES, sim_config={"cells": quiet}, extra_tags=[FACEPLATE_TAG]) as rig, \
                CommandClient(rig.broker_url) as client:
            await wait_for(sniffer, lambda m: m.topic.endswith("/Filler/Faceplate") and not m.topic.startswith(
                "spBv1.0/") and json.loads(m.payload)["value"] == faceplate(rig), timeout=30)
            before = faceplate(rig)
            mark = len(faceplate_ddata(sniffer))

            result = await rig.submit(client, "Filler", "Faceplate", {"SpeedSetpoint": before["SpeedSetpoint"] + 30})
            wanted = before["SpeedSetpoint"] + 30.0
            assert result.outcome is Outcome.CONFIRMED, result
            assert (result.old_value, result.readback_value) == (before["SpeedSetpoint"], wanted)
            assert result.requested_value == {"SpeedSetpoint": wanted}
            assert result.write_status_code == 0 and result.readback_status_code == 0
            records = rig.audit_events(result.command_id)
            assert [r["event"] for r in records] == ["written", "readback_ok"]
            assert records[0]["allowlist_rule_id"] == "packaging:Line1/Filler/Faceplate#SpeedSetpoint"
            # the plant, read by another OPC UA client: the member variable, then (the simulator takes a
            # client's write into its model at its next tick) the cell tag the member mirrors
            assert await rig.read("Line1/Filler/Faceplate.SpeedSetpoint") == wanted
            for _ in range(100):
                if await rig.read("Line1/Filler/SpeedSetpoint") == wanted:
                    break
                await asyncio.sleep(0.05)
            assert await rig.read("Line1/Filler/SpeedSetpoint") == wanted

            # back through the edge as DDATA with that member only; the UNS shows the whole instance
            after = {**before, "SpeedSetpoint": wanted}
            await wait_for(sniffer, lambda m: m.topic.endswith("/Filler/Faceplate") and not m.topic.startswith(
                "spBv1.0/") and json.loads(m.payload)["value"] == after, timeout=20)
            assert faceplate(rig) == after
            changes = faceplate_ddata(sniffer)[mark:]
            assert [{m.name: m.value for m in c.metrics} for c in changes] == [{"SpeedSetpoint": wanted}]
            assert changes[0].template_ref == "CellFaceplateType"
            assert uns_faceplate(sniffer)[-1]["quality"] == "GOOD"

            # refusals at the edge, whatever the host sent: each specific, audited, the plant unchanged
            target = await client.resolve("acme:plant1", "packaging:Line1", "Filler", "Faceplate")
            assert target.datatype is DataType.Template and target.template is not None

            async def refused(value: dict[str, Any], born: Template, reason: ReasonCode) -> str:
                request = client.build(group_id="acme:plant1", edge_node_id="packaging:Line1", device_id="Filler",
                                       metric="Faceplate", value=value, requested_by="alice", reason="e2e test",
                                       datatype=None)
                request = request.with_signature(sign_command(request, rig.keys["alice"], user_id="alice",
                                                              full_name="Alice Archer",
                                                              meaning=rig.signer("alice").meaning,
                                                              now_ms=request.created_at_ms))
                future = await client.dispatch(request, target=MetricTarget(DataType.Template, target.alias, born))
                answer = await future
                assert answer.outcome is Outcome.REFUSED and answer.reason is reason, answer
                assert [(r["event"], r["reason_code"]) for r in rig.audit_events(answer.command_id)] == [
                    ("refused", reason.value)]
                assert await rig.read("Line1/Filler/Faceplate.SpeedSetpoint") == wanted
                return answer.message

            born = target.template

            def with_member(name: str, value: Any, datatype: DataType) -> Template:
                members = [m for m in born.metrics if m.name != name] + [Metric(name, value, datatype)]
                return Template(metrics=members, version=born.version, template_ref=born.template_ref)

            message = await refused({"Speed": 1.0}, born, ReasonCode.NOT_ALLOWLISTED)
            assert "member 'Speed'" in message and "['SpeedSetpoint']" in message
            message = await refused({"Pressure": 1.0}, with_member("Pressure", 0.0, DataType.Double),
                                    ReasonCode.UNKNOWN_MEMBER)
            assert "has no member 'Pressure'" in message
            message = await refused({"SpeedSetpoint": "fast"}, with_member("SpeedSetpoint", "", DataType.String),
                                    ReasonCode.WRONG_TYPE)
            assert "Double needs a number" in message
            assert faceplate(rig) == after
    assert verify(rig.audit_db).ok
