"""Issue 21, object instances as live template tags, with every real part: the simulator's
``CellFaceplateType`` object per cell -> the edge node app (its member variables monitored) ->
Mosquitto -> the host -> the UNS mirror.

The oracle is the simulator's own scalar tags, which each faceplate member mirrors. Checked: the
NBIRTH defines ``CellFaceplateType`` (tck-id-payloads-template-definition-nbirth-only), the DBIRTH
carries the complete instance with ``template_ref`` (tck-id-payloads-template-instance-ref,
tck-id-payloads-template-instance-members-birth); a member change travels as DDATA with only the
changed members (tck-id-payloads-template-instance-members-data) and the UNS JSON equals the
faceplate; a Bad member is a null member of an UNCERTAIN instance (edge_node.object_instances).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulator.server import SimulatedLineServer
from simulator.structures import FACEPLATE_MEMBERS
from tests.edge_node.test_edge_app import running_app
from tests.host.conftest import latest_json, running_host, wait_for
from tests.host.test_templates_e2e import LINE, SIM_LINE, simulator_edge_config, sparkplug
from tests.simulator.structured import quiet_simulator
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.sparkplug.model import Template
from uns.sparkplug.topic import MessageType

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(120)]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


def faceplate(server: SimulatedLineServer, cell: str) -> dict[str, object]:
    """The faceplate as the simulator holds it: each member is its cell tag's published value."""
    return {member: server.model.sample(f"Line1/{cell}/{tag}").value for member, (_t, tag) in FACEPLATE_MEMBERS.items()}


async def test_an_object_instance_is_a_live_template_in_the_uns(
        mosquitto: BrokerEndpoint, sim: SimulatedLineServer, tmp_path: Path) -> None:
    ns = SIM_LINE
    config = simulator_edge_config(
        mosquitto, tmp_path / "edge", sim,
        [f'{{node_id: "{ns}/{cell}/Faceplate", metric: Faceplate, cell: {cell}, datatype: Template}}'
         for cell in ("Filler", "Capper")])
    topic = f"{LINE}/Filler/Faceplate"
    with Sniffer(mosquitto.host, mosquitto.port, ("#",)) as sniffer:
        async with running_host(mosquitto) as host, running_app(config) as app:
            expected = faceplate(sim, "Filler")
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["value"] == expected,
                           timeout=30)
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Capper/Faceplate", timeout=30)
            assert latest_json(sniffer, f"{LINE}/Capper/Faceplate")["value"] == faceplate(sim, "Capper")
            assert latest_json(sniffer, topic)["quality"] == "GOOD"

            wire = sparkplug(sniffer)
            (nbirth,) = [p for t, p in wire if t.message_type is MessageType.NBIRTH]
            definitions = {m.name: m.value for m in nbirth.metrics if isinstance(m.value, Template)}
            assert set(definitions) == {"_types_/CellFaceplateType"}  # one definition for both instances
            definition = definitions["_types_/CellFaceplateType"]
            assert definition.is_definition and [m.name for m in definition.metrics] == list(FACEPLATE_MEMBERS)
            births = {t.device_id: next(m.value for m in p.metrics if m.name == "Faceplate")
                      for t, p in wire if t.message_type is MessageType.DBIRTH}
            assert set(births) == {"Filler", "Capper"}
            for cell, instance in births.items():
                assert instance.template_ref == "CellFaceplateType" and not instance.is_definition
                assert instance.version == definition.version
                assert {m.name: m.value for m in instance.metrics} == faceplate(sim, cell)

            # one member changes on the server: the DDATA carries only the changed members
            before = faceplate(sim, "Filler")
            sim.model.write_tag("Line1/Filler/SpeedSetpoint", float(before["SpeedSetpoint"]) + 7.0)
            await sim.tick_now()
            after = faceplate(sim, "Filler")
            moved = {k for k in after if after[k] != before[k]}
            assert "SpeedSetpoint" in moved
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["value"] == after,
                           timeout=20)
            changes = [m.value for t, p in sparkplug(sniffer) if t.message_type is MessageType.DDATA
                       and t.device_id == "Filler" for m in p.metrics if m.name == "Faceplate"]
            assert changes and all(c.template_ref == "CellFaceplateType" for c in changes)
            assert set().union(*({m.name for m in c.metrics} for c in changes)) == moved
            assert all({m.name for m in c.metrics} <= moved for c in changes)

            # a Bad member: a null member, the instance UNCERTAIN, its other members still current
            sim.model.inject_fault("bad_status", "Line1/Filler/Temperature", 60.0)
            await sim.tick_now()
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["quality"] == "UNCERTAIN",
                           timeout=20)
            degraded = latest_json(sniffer, topic)
            assert degraded["value"] == {**faceplate(sim, "Filler"), "Temperature": None}
            assert latest_json(sniffer, f"{LINE}/Capper/Faceplate")["value"] == faceplate(sim, "Capper")
            assert host.tracker.counters.violations == {}
            source = app.sources[0]
            assert source.stats.structure_errors == 0 and source.stats.monitored_items == 2
