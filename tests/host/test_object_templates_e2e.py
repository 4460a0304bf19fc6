"""Issue 21, object instances as live template tags, with every real part: the simulator's
``CellFaceplateType`` object per cell -> the edge node app (its member variables monitored) ->
Mosquitto -> the host -> the UNS mirror.

The oracle is the simulator's own scalar tags, which each faceplate member mirrors. Checked: the
NBIRTH defines ``CellFaceplateType`` (tck-id-payloads-template-definition-nbirth-only), the DBIRTH
carries the complete instance with ``template_ref`` (tck-id-payloads-template-instance-ref,
tck-id-payloads-template-instance-members-birth); a member change travels as DDATA with only the
changed members (tck-id-payloads-template-instance-members-data) and the UNS JSON equals the
faceplate; a Bad member is a null member of an UNCERTAIN instance (edge_node.object_instances).

Then, on the same stack, the type changes while everything stays connected (the simulator's
``AddFaceplateMember`` hook, as a PLC download that extends a function block): the edge notices it at
its next type check (``type_check_interval_s``) and rebirths on the same MQTT and OPC UA sessions with
the new definition version, whose members are every member an instance uses
(tck-id-payloads-template-definition-members, tck-id-payloads-template-definition-nbirth-only); the
new DBIRTH carries complete instances of it (tck-id-payloads-template-definition-nbirth,
tck-id-payloads-template-instance-members-birth); the new member is monitored (a write by another OPC UA
client travels as DDATA with that member only) and the UNS shows the instance with the new member.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import Client, ua

from simulator.server import SimulatedLineServer
from simulator.structures import FACEPLATE_MEMBERS
from tests.edge_node.test_edge_app import running_app
from tests.host.conftest import latest_json, running_host, wait_for
from tests.host.test_templates_e2e import LINE, SIM_LINE, small_edge_config, sparkplug
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
    config = small_edge_config(
        mosquitto, tmp_path / "edge", f'{{url: "{sim.endpoint}", keepalive_interval_s: 0.5, '
        'publishing_interval_ms: 50, sampling_interval_ms: 0, type_check_interval_s: 0.2}',
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

            # the type changes while connected: a new NBIRTH with the new version, nothing dropped
            sim.model.clear_faults("Line1/Filler/Temperature")
            await sim.tick_now()
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["quality"] == "GOOD",
                           timeout=20)
            await sim.add_faceplate_member("Pressure")
            extended = {**faceplate(sim, "Filler"), "Pressure": 0.0}
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["value"] == extended,
                           timeout=20)
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Capper/Faceplate"
                           and json.loads(m.payload)["value"] == {**faceplate(sim, "Capper"), "Pressure": 0.0},
                           timeout=20)
            wire = sparkplug(sniffer)
            nbirths = [p for t, p in wire if t.message_type is MessageType.NBIRTH]
            assert len(nbirths) == 2
            new = next(m.value for m in nbirths[1].metrics if m.name == "_types_/CellFaceplateType")
            assert new.is_definition and [m.name for m in new.metrics] == [*FACEPLATE_MEMBERS, "Pressure"]
            assert new.version != definition.version
            bd_seq = [next(m.value for m in p.metrics if m.name == "bdSeq") for p in nbirths]
            assert bd_seq[0] == bd_seq[1]  # a rebirth on the same MQTT session
            rebirths = {t.device_id: next(m.value for m in p.metrics if m.name == "Faceplate")
                        for t, p in wire[wire.index(next(w for w in wire if w[1] is nbirths[1])):]
                        if t.message_type is MessageType.DBIRTH and not next(
                            m for m in p.metrics if m.name == "Faceplate").is_null}
            assert set(rebirths) == {"Filler", "Capper"}
            for cell, instance in rebirths.items():
                assert instance.version == new.version
                assert {m.name: m.value for m in instance.metrics} == {**faceplate(sim, cell), "Pressure": 0.0}
            assert not any(m.topic.startswith("spBv1.0/") and ("/DDEATH/" in m.topic or "/NDEATH/" in m.topic)
                           for m in sniffer.snapshot())
            assert source.stats.connects == 1 and source.stats.type_changes == 1
            assert source.stats.monitored_items == 2

            # the new member is monitored: another OPC UA client writes it, DDATA carries it alone
            mark = len(sparkplug(sniffer))
            async with Client(sim.endpoint, timeout=10) as client:
                await client.get_node(ua.NodeId("Line1/Filler/Faceplate.Pressure", sim.namespace_index)).write_value(
                    ua.Variant(2.5, ua.VariantType.Double))
            extended = {**faceplate(sim, "Filler"), "Pressure": 2.5}
            await wait_for(sniffer, lambda m: m.topic == topic and json.loads(m.payload)["value"] == extended,
                           timeout=20)
            ddata = [m.value for t, p in sparkplug(sniffer)[mark:] if t.message_type is MessageType.DDATA
                     for m in p.metrics if m.name == "Faceplate"]
            assert [{m.name: m.value for m in c.metrics} for c in ddata] == [{"Pressure": 2.5}]
            assert all(c.version == new.version for c in ddata)
            assert host.tracker.counters.violations == {}
