"""Issue 21 end to end with every real part: the simulator's OPC UA structures -> the edge node app
(types read from the server, Templates and a DataSet) -> Mosquitto -> the host -> the UNS mirror.

Checked against the simulator's own structures (``sim.structures``): the NBIRTH carries the template
definitions (tck-id-payloads-template-definition-nbirth-only), the DBIRTH complete instances with
``template_ref`` (tck-id-payloads-template-instance-ref, -instance-members-birth); a change of one
member travels as a DDATA with that member only (tck-id-payloads-template-instance-members-data) and
updates the UNS JSON; a Bad source tag makes the instance BAD in the UNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.common.structures104 import load_data_type_definitions, new_struct, new_struct_field

from edge_node.app import EdgeNodeApp
from edge_node.commands.opcua_writer import BAD_NO_MATCH, OpcUaWriter
from edge_node.config import EdgeConfig, OpcUaEndpointConfig, loads_edge_config
from simulator.config import NAMESPACE_URI
from simulator.server import SimulatedLineServer
from tests.edge_node.test_edge_app import running_app, wait_until
from tests.host.conftest import latest_json, running_host, wait_for
from tests.simulator.structured import quiet_simulator
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port
from tests.support.sniffer import Captured, Sniffer
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Template
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_topic

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(120)]

RECIPE, TABLE, STATUS = "Line1/ActiveRecipe", "Line1/QualityResults", "Line1/Filler/Status"
LINE = "acme/plant1/packaging/line1"


@contextlib.asynccontextmanager
async def edge_app(sim: SimulatedLineServer, broker: BrokerEndpoint, data_dir: Path) -> AsyncIterator[EdgeNodeApp]:
    ns = f"nsu={NAMESPACE_URI};s="
    config = loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo
data_dir: {data_dir}
sparkplug:
  brokers: [{broker.url}]
  publish_interval_ms: 50
opcua:
  - url: {sim.endpoint}
    keepalive_interval_s: 0.5
    publishing_interval_ms: 50
    sampling_interval_ms: 0
tags:
  - {{node_id: "{ns}{RECIPE}", metric: ActiveRecipe, cell: Filler, datatype: Template}}
  - {{node_id: "{ns}{STATUS}", metric: Status, cell: Filler, datatype: Template}}
  - {{node_id: "{ns}{TABLE}", metric: QualityResults, cell: Filler, datatype: DataSet}}
  - {{node_id: "{ns}Line1/Filler/Speed", metric: Speed, cell: Filler}}
""")
    async with running_app(config) as app:
        yield app


def small_edge_config(broker: BrokerEndpoint, data_dir: Path, endpoint: str, tags: list[str]) -> EdgeConfig:
    """An edge config of line1 publishing to ``broker``: one OPC UA endpoint (a YAML flow mapping)
    and its tags (one flow mapping each)."""
    lines = "".join(f"\n  - {tag}" for tag in tags)
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo
data_dir: {data_dir}
sparkplug: {{brokers: [{broker.url}], publish_interval_ms: 50}}
opcua:
  - {endpoint}
tags:{lines}
""")


#: the simulator's node ids below its line
SIM_LINE = f"nsu={NAMESPACE_URI};s=Line1"


def simulator_edge_config(broker: BrokerEndpoint, data_dir: Path, sim: SimulatedLineServer,
                          tags: list[str]) -> EdgeConfig:
    """:func:`small_edge_config` on the simulator, sampling every change, publishing every 50 ms."""
    return small_edge_config(broker, data_dir, f'{{url: "{sim.endpoint}", keepalive_interval_s: 0.5, '
                             'publishing_interval_ms: 50, sampling_interval_ms: 0}', tags)


def sparkplug(sniffer: Sniffer) -> list[tuple[SparkplugTopic, object]]:
    catalog = EdgeNodeCatalog()
    out = []
    for msg in sniffer.snapshot(lambda m: m.topic.startswith("spBv1.0/") and "/STATE/" not in m.topic):
        topic = parse_topic(msg.topic)
        if not isinstance(topic, SparkplugTopic) or topic.message_type in (MessageType.NDEATH, MessageType.NCMD):
            continue
        out.append((topic, catalog.decode(topic.message_type, msg.payload, topic.device_id)))
    return out


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


async def test_simulator_structures_reach_the_uns_through_the_edge(
        mosquitto: BrokerEndpoint, sim: SimulatedLineServer, tmp_path: Path) -> None:
    with Sniffer(mosquitto.host, mosquitto.port, ("#",)) as sniffer:
        async with running_host(mosquitto) as host, edge_app(sim, mosquitto, tmp_path / "edge"):
            def uns(topic: str) -> Captured | None:
                found = sniffer.snapshot(lambda m: m.topic == f"{LINE}/Filler/{topic}")
                return found[-1] if found else None

            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Filler/QualityResults", timeout=30)
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Filler/ActiveRecipe"
                           and json.loads(m.payload)["value"] == sim.structures[RECIPE], timeout=30)
            assert json.loads(uns("Status").payload)["value"] == sim.structures[STATUS]  # type: ignore[union-attr]
            assert latest_json(sniffer, f"{LINE}/Filler/QualityResults")["value"] == sim.structures[TABLE]

            wire = sparkplug(sniffer)
            # one NBIRTH: the first birth waited for the types (sparkplug.first_birth_wait_s)
            (nbirth,) = [p for t, p in wire if t.message_type is MessageType.NBIRTH]
            definitions = {m.name: m.value for m in nbirth.metrics if isinstance(m.value, Template)}
            assert set(definitions) == {"_types_/Recipe", "_types_/RecipeSetpoints", "_types_/CellStatus",
                                        "_types_/QualityResult"}
            assert all(d.is_definition and d.template_ref is None for d in definitions.values())
            (dbirth,) = [p for t, p in wire if t.message_type is MessageType.DBIRTH]
            recipe = next(m.value for m in dbirth.metrics if m.name == "ActiveRecipe")
            assert recipe.template_ref == "Recipe" and recipe.version == definitions["_types_/Recipe"].version
            assert [m.name for m in recipe.metrics] == [m.name for m in definitions["_types_/Recipe"].metrics]

            # one member changes on the server: DDATA carries it alone, the UNS shows the whole structure
            before = dict(sim.structures[RECIPE])
            sim.model.write_tag("Line1/Recipe", "SKU-" + before["Name"])
            await sim.tick_now()
            expected = sim.structures[RECIPE]
            assert {k for k in expected if expected[k] != before[k]} == {"Name"}
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Filler/ActiveRecipe"
                           and json.loads(m.payload)["value"] == expected, timeout=20)
            changes = [m.value for t, p in sparkplug(sniffer) if t.message_type is MessageType.DDATA
                       for m in p.metrics if isinstance(m.value, Template) and m.value.template_ref == "Recipe"]
            assert [[m.name for m in c.metrics] for c in changes] == [["Name"]]

            # a Bad source tag of the cell status: the instance is BAD in the UNS, the others untouched
            sim.model.inject_fault("bad_status", "Line1/Filler/Temperature", 60.0)
            await sim.tick_now()
            await wait_for(sniffer, lambda m: m.topic == f"{LINE}/Filler/Status"
                           and json.loads(m.payload)["quality"] == "BAD", timeout=20)
            bad = latest_json(sniffer, f"{LINE}/Filler/Status")
            assert bad["value"] is None and bad["quality"] == "BAD"
            assert latest_json(sniffer, f"{LINE}/Filler/ActiveRecipe")["value"] == sim.structures[RECIPE]
            assert host.tracker.counters.violations == {}


class StructServer:
    """An asyncua server with one structured variable whose type we define, restartable on one port
    with a different definition: a PLC download that changed a UDT."""

    URI = "urn:uns-hub:test:types"

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"opc.tcp://127.0.0.1:{port}/types/"
        self.server: Server | None = None

    async def start(self, fields: list[tuple[str, int, Any]]) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(self.URI)
        await new_struct(server, idx, "Recipe", [new_struct_field(name, ua.NodeId(type_id)) for name, type_id, _v
                                                 in fields])
        if hasattr(ua, "Recipe"):  # this process generated the old class (asyncua keeps it by node id)
            delattr(ua, "Recipe")
        await load_data_type_definitions(server)
        value = ua.Recipe(**{name: v for name, _t, v in fields})  # type: ignore[attr-defined]
        await server.nodes.objects.add_variable(ua.NodeId("Recipe1", idx), "Recipe1", value,
                                                datatype=(await server.nodes.base_structure_type.get_child(
                                                    f"{idx}:Recipe")).nodeid)
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


async def test_a_type_changed_on_the_server_is_a_rebirth_with_the_new_version(
        mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """tck-id-payloads-template-version: the edge reads the types again at reconnect; a changed
    definition goes out in a new NBIRTH with a new version, and the instance follows in a DBIRTH."""
    plc = StructServer(free_port())
    await plc.start([("Name", ua.ObjectIds.String, "A")])
    config = small_edge_config(
        mosquitto, tmp_path / "edge",
        f'{{url: "{plc.url}", keepalive_interval_s: 0.2, reconnect_min_s: 0.1, reconnect_max_s: 0.5}}',
        [f'{{node_id: "nsu={StructServer.URI};s=Recipe1", metric: Recipe, cell: Filler, datatype: Template}}'])
    try:
        with Sniffer(mosquitto.host, mosquitto.port, ("spBv1.0/#",)) as sniffer:
            async with running_app(config) as app:
                def recipes(kind: MessageType) -> list[Template]:
                    return [m.value for t, p in sparkplug(sniffer) if t.message_type is kind
                            for m in p.metrics if isinstance(m.value, Template) and (
                                m.name == "_types_/Recipe" or m.name == "Recipe")]

                await wait_for(sniffer, lambda m: "/DBIRTH/" in m.topic, timeout=30)
                (v1,) = recipes(MessageType.NBIRTH)
                (first,) = recipes(MessageType.DBIRTH)
                assert [m.name for m in v1.metrics] == ["Name"] and first.version == v1.version
                assert [(m.name, m.value) for m in first.metrics] == [("Name", "A")]

                await plc.stop()
                await plc.start([("Name", ua.ObjectIds.String, "B"), ("Quantity", ua.ObjectIds.UInt32, 7)])
                await wait_for(sniffer, lambda m: "/NBIRTH/" in m.topic, count=2, timeout=30)
                # polled outside the sniffer's callback (a predicate must not read the sniffer itself)
                await wait_until(lambda: [r for r in recipes(MessageType.DBIRTH) if r.metrics
                                          and r.metrics[0].value == "B"], timeout=30)
                v2 = recipes(MessageType.NBIRTH)[-1]
                assert [m.name for m in v2.metrics] == ["Name", "Quantity"] and v2.version != v1.version
                latest = recipes(MessageType.DBIRTH)[-1]
                assert latest.version == v2.version
                assert [(m.name, m.value) for m in latest.metrics] == [("Name", "B"), ("Quantity", 7)]
                assert app.client.session.counters.template_rebirths == 1  # type: ignore[union-attr]
        await _write_one_field(plc, tmp_path)
    finally:
        await plc.stop()


async def _write_one_field(plc: StructServer, tmp_path: Path) -> None:
    """On the same server: a command's write to one member of a structured variable
    (edge_node.commands.opcua_writer) reads the structure, changes that field and writes the whole
    value back; the other field keeps its value, and a member the structure lacks is BadNoMatch
    (the executor's ``unknown_member``). Object instances: tests/commands_e2e/test_template_member_commands.py."""
    assert plc.server is not None
    idx = await plc.server.get_namespace_index(StructServer.URI)
    await plc.server.get_node(ua.NodeId("Recipe1", idx)).set_writable()
    writer = OpcUaWriter(OpcUaEndpointConfig(url=plc.url, timeout_s=5.0), tmp_path / "writer")
    task = asyncio.create_task(writer.run())
    node = f"nsu={StructServer.URI};s=Recipe1"
    try:
        await asyncio.wait_for(writer.connected.wait(), 20)
        before = await writer.read_member(node, "Quantity")
        assert (before.value, before.status_code) == (7, 0)
        assert await writer.write_member(node, "Quantity", DataType.UInt32, 9) == 0
        after = await writer.read_member(node, "Quantity")
        assert (after.value, after.status_code) == (9, 0)
        held = await plc.server.get_node(ua.NodeId("Recipe1", idx)).read_value()
        assert (held.Name, held.Quantity) == ("B", 9)  # the other field kept
        assert (await writer.read_member(node, "Missing")).status_code == BAD_NO_MATCH
        assert await writer.write_member(node, "Missing", DataType.UInt32, 1) == BAD_NO_MATCH
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
