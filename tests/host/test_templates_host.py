"""Templates and DataSets from the simulator's structures through a real Mosquitto to the host and
its UNS mirror; and the host's template rules on malformed instances.

The publishing side reads the real simulator with a real asyncua client and maps what it reads with
the edge's own mapping (``edge_node.templates``): the NBIRTH carries the definitions, the DBIRTH the
instances, a DDATA only the members that changed. The mirror's JSON is compared with the
simulator's own structures (``sim.structures``), never with constants.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asyncua import Client, ua

from edge_node.templates import TemplateCatalog, structure_metric
from mes_adapter.host.live_model import LiveModel
from mes_adapter.host.template_json import uns_value
from mes_adapter.host.tracker import EdgeTracker, MetricsChanged, ProtocolViolation, RebirthNeeded
from simulator.config import NAMESPACE_URI
from simulator.server import SimulatedLineServer
from tests.edge_node.test_templates import _as_dicts, _settled, read_shapes
from tests.host.conftest import LINE, latest_json, rebirth_requests, running_host, wait_for
from tests.host.edge import CELL, EDGE, GROUP, PahoEdge
from tests.simulator.structured import quiet_simulator
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.conventions import BDSEQ, NODE_REBIRTH
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.model import (
    QUALITY_BAD,
    QUALITY_KEY,
    DataSet,
    Metric,
    Payload,
    PropertyValue,
    Template,
    now_ms,
)
from uns.sparkplug.topic import MessageType, node_topic

RECIPE, TABLE, STATUS = "Line1/ActiveRecipe", "Line1/QualityResults", "Line1/Filler/Status"
#: device metric name, alias, simulator variable, type browse name, array of structures
INSTANCES = [("ActiveRecipe", 1, RECIPE, "Recipe", False), ("QualityResults", 2, TABLE, "QualityResult", True),
             ("Status", 3, STATUS, "CellStatus", False)]


@dataclass
class StructureEdge:
    """The Sparkplug messages an edge makes of the simulator's structures (seq and bdSeq kept)."""

    catalog: TemplateCatalog
    ns: int
    values: dict[str, Any]
    seq: int = 0

    def type_id(self, name: str) -> ua.NodeId:
        return ua.NodeId(f"Types/{name}", self.ns)

    def _next(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def nbirth(self) -> tuple[str, bytes]:
        ts = now_ms()
        self.seq = 0
        metrics = [Metric(BDSEQ, 0, D.Int64, timestamp=ts), Metric(NODE_REBIRTH, False, D.Boolean, timestamp=ts),
                   *self.catalog.definition_metrics(ts)]
        return node_topic(GROUP, MessageType.NBIRTH, EDGE), encode_payload(Payload(metrics, ts, 0), MessageType.NBIRTH)

    def dbirth(self) -> tuple[str, bytes]:
        ts = now_ms()
        metrics = []
        for name, alias, path, type_name, array in INSTANCES:
            metric = structure_metric(self.catalog, name, self.type_id(type_name), self.values[path], array=array,
                                      timestamp=ts)
            metric.alias = alias
            metrics.append(metric)
        return self.ddevice(MessageType.DBIRTH, metrics, ts)

    def ddevice(self, kind: MessageType, metrics: list[Metric], ts: int | None = None) -> tuple[str, bytes]:
        payload = Payload(metrics, ts or now_ms(), self._next())
        return node_topic(GROUP, kind, EDGE, CELL), encode_payload(payload, kind)


async def read_values(client: Client, sim: SimulatedLineServer, ns: int) -> dict[str, Any]:
    values = await _settled(client, sim, ns)
    assert _as_dicts(values) == sim.structures
    return values


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


def instance_of(data: bytes, kind: MessageType, name: str) -> Template:
    """The Template value a (device) message carries for ``name``, decoded from the wire."""
    def resolve(n: str | None, alias: int | None) -> tuple[str, D]:
        by_alias = {a: n for n, a, *_ in INSTANCES}
        return by_alias[alias], D.Template  # type: ignore[index]
    payload = decode_payload(data, kind, None if kind is MessageType.DBIRTH else resolve)
    (metric,) = [m for m in payload.metrics if (m.name or resolve(None, m.alias)[0]) == name]
    assert isinstance(metric.value, Template)
    return metric.value


async def test_structures_reach_the_uns_as_json_and_a_member_change_travels_alone(
        mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge, sim: SimulatedLineServer) -> None:
    """tck-id-payloads-template-definition-nbirth-only, -definition-nbirth (every instance's definition in
    the NBIRTH), tck-id-payloads-template-instance-members-birth (complete instances in DBIRTH),
    tck-id-payloads-template-instance-members-data (DDATA carries the changed member only; the host
    applies it on top of the last instance)."""
    async with Client(sim.endpoint) as client, running_host(mosquitto) as host:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        shapes = await read_shapes(client, ns)
        structures = StructureEdge(TemplateCatalog(shapes), ns, await read_values(client, sim, ns))
        edge.send(structures.nbirth())
        edge.send(structures.dbirth())

        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/Status")
        recipe = latest_json(sniffer, f"{LINE}/{CELL}/ActiveRecipe")
        assert recipe["value"] == sim.structures[RECIPE]
        assert recipe["quality"] == "GOOD" and recipe["datatype"] == "Template"
        assert latest_json(sniffer, f"{LINE}/{CELL}/Status")["value"] == sim.structures[STATUS]
        table = latest_json(sniffer, f"{LINE}/{CELL}/QualityResults")
        assert table["value"] == sim.structures[TABLE] and table["datatype"] == "DataSet"
        meta = latest_json(sniffer, f"{LINE}/{CELL}/ActiveRecipe/_meta")
        version = structures.catalog.versions
        assert meta["template"] == {
            "name": "Recipe", "version": version["Recipe"],
            "members": {"Name": "String", "Product": "String", "Order": "String", "Quantity": "UInt32",
                        "Setpoints": {"name": "RecipeSetpoints", "version": version["RecipeSetpoints"],
                                      "members": {"LineSpeed": "Double", "FillTemperature": "Double"}},
                        "Cells": "StringArray"}}
        assert latest_json(sniffer, f"{LINE}/{CELL}/QualityResults/_meta")["columns"] == [
            {"name": "Cell", "datatype": "String"}, {"name": "Good", "datatype": "UInt32"},
            {"name": "Reject", "datatype": "UInt32"}, {"name": "Yield", "datatype": "Double"},
            {"name": "Passed", "datatype": "Boolean"}]
        # the definitions are types, not tags: no UNS topic, no violation
        assert sniffer.snapshot(lambda m: "_types_" in m.topic) == []
        assert host.tracker.counters.template_definitions == 6  # every simulator type, CellCounter too
        assert host.tracker.counters.violations == {} and rebirth_requests(sniffer, GROUP, EDGE) == []

        # a recipe is selected on the line: one member of the structure changes, and only it travels
        before = structures.values[RECIPE]
        sim.model.write_tag("Line1/Recipe", "SKU-" + sim.structures[RECIPE]["Name"])
        await sim.tick_now()
        structures.values = await read_values(client, sim, ns)
        delta = structures.catalog.delta(structures.type_id("Recipe"), before, structures.values[RECIPE])
        assert delta is not None
        topic, data = structures.ddevice(MessageType.DDATA, [Metric(alias=1, value=delta, datatype=D.Template,
                                                                    timestamp=now_ms())])
        assert [m.name for m in instance_of(data, MessageType.DDATA, "ActiveRecipe").metrics] == ["Name"]
        edge.send((topic, data))
        expected = sim.structures[RECIPE]
        assert expected != _as_dicts(before)
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/ActiveRecipe"
                       and json.loads(m.payload)["value"] == expected)
        model_value = host.model.metric(GROUP, EDGE, CELL, "ActiveRecipe")
        assert model_value is not None and [m.name for m in model_value.value.metrics] == list(expected)
        assert host.tracker.counters.violations == {}


async def test_a_bad_source_makes_the_instance_bad_until_a_complete_instance_returns(
        mosquitto: BrokerEndpoint, sniffer: Sniffer, edge: PahoEdge, sim: SimulatedLineServer) -> None:
    """A Bad source tag of a structure: the server reports the structure Bad (no value); the edge sends
    the instance null with Quality Bad, and the UNS shows it BAD with a null value. When the source
    recovers the next instance is complete (there is no last value to apply a part to)."""
    async with Client(sim.endpoint) as client, running_host(mosquitto) as host:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        structures = StructureEdge(TemplateCatalog(await read_shapes(client, ns)), ns,
                                   await read_values(client, sim, ns))
        edge.send(structures.nbirth())
        edge.send(structures.dbirth())
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/Status")

        sim.model.inject_fault("bad_status", "Line1/Filler/Temperature", 60.0)
        await sim.tick_now()
        node = client.get_node(ua.NodeId(STATUS, ns))
        bad = await node.read_data_value(raise_on_bad_status=False)
        assert bad.StatusCode.is_bad() and bad.Value.Value is None and sim.structures[STATUS] is None
        edge.send(structures.ddevice(MessageType.DDATA, [Metric(
            alias=3, value=None, datatype=D.Template, is_null=True, timestamp=now_ms(),
            properties={QUALITY_KEY: PropertyValue(D.Int32, QUALITY_BAD)})]))
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/Status"
                       and json.loads(m.payload)["quality"] == "BAD")
        status = latest_json(sniffer, f"{LINE}/{CELL}/Status")
        assert status["value"] is None and status["quality"] == "BAD"
        # the structures that do not use the failed tag keep their value and quality
        assert latest_json(sniffer, f"{LINE}/{CELL}/ActiveRecipe")["value"] == sim.structures[RECIPE]

        assert sim.model.clear_faults() == 1
        await sim.tick_now()
        structures.values = await read_values(client, sim, ns)
        complete = structures.catalog.instance(structures.type_id("CellStatus"), structures.values[STATUS])
        edge.send(structures.ddevice(MessageType.DDATA, [Metric(alias=3, value=complete, datatype=D.Template,
                                                                timestamp=now_ms())]))
        await wait_for(sniffer, lambda m: m.topic == f"{LINE}/{CELL}/Status"
                       and json.loads(m.payload)["quality"] == "GOOD", count=2)  # the birth's, the recovery's
        recovered = latest_json(sniffer, f"{LINE}/{CELL}/Status")
        assert recovered["value"] == sim.structures[STATUS]
        assert recovered["value"]["Temperature"] == sim.model.sample("Line1/Filler/Temperature").value
        assert host.tracker.counters.violations == {}


# ---------------------------------------------------------------------------------------------
# the host's template rules, without a network (pure tracker + model)

SETPOINTS = Template([Metric("LineSpeed", None, D.Double, is_null=True)], version="v1", is_definition=True)
RECIPE_DEF = Template([Metric("Name", None, D.String, is_null=True),
                       Metric("Setpoints", Template([Metric("LineSpeed", None, D.Double, is_null=True)],
                                                    version="v1", template_ref="Setpoints"), D.Template)],
                      version="v2", is_definition=True)


def _recipe(name: str | None = "A", speed: float | None = 10.0, ref: str = "Recipe",
            extra: list[Metric] | None = None) -> Template:
    members = []
    if name is not None:
        members.append(Metric("Name", name, D.String))
    if speed is not None:
        members.append(Metric("Setpoints", Template([Metric("LineSpeed", speed, D.Double)], version="v1",
                                                    template_ref="Setpoints"), D.Template))
    return Template(members + (extra or []), version="v2", template_ref=ref)


def _messages(dbirth_value: Template, *, definitions: bool = True) -> list[tuple[str, bytes]]:
    ts = 1_700_000_000_000
    node = [Metric(BDSEQ, 0, D.Int64, timestamp=ts), Metric(NODE_REBIRTH, False, D.Boolean, timestamp=ts),
            Metric("Line/State", "RUNNING", D.String, alias=5, timestamp=ts)]
    if definitions:
        node += [Metric("_types_/Setpoints", SETPOINTS, D.Template, timestamp=ts),
                 Metric("_types_/Recipe", RECIPE_DEF, D.Template, timestamp=ts)]
    return [(node_topic(GROUP, MessageType.NBIRTH, EDGE), encode_payload(Payload(node, ts, 0), MessageType.NBIRTH)),
            (node_topic(GROUP, MessageType.DBIRTH, EDGE, CELL),
             encode_payload(Payload([Metric("Recipe", dbirth_value, D.Template, alias=1, timestamp=ts)], ts, 1),
                            MessageType.DBIRTH))]


def _ddata(value: Template, seq: int = 2) -> tuple[str, bytes]:
    payload = Payload([Metric(alias=1, value=value, datatype=D.Template, timestamp=1_700_000_000_500)],
                      1_700_000_000_500, seq)
    return node_topic(GROUP, MessageType.DDATA, EDGE, CELL), encode_payload(payload, MessageType.DDATA)


def test_partial_data_applies_on_top_of_the_birth_instance_recursively() -> None:
    """tck-id-payloads-template-instance-members-data: a nested member alone updates only itself."""
    tracker, model = EdgeTracker(), LiveModel()
    for topic, data in _messages(_recipe()):
        for event in tracker.handle(topic, data, 1_700_000_000_000):
            model.apply(event)
    for event in tracker.handle(*_ddata(_recipe(name=None, speed=12.5)), 1_700_000_000_600):
        model.apply(event)
    state = model.metric(GROUP, EDGE, CELL, "Recipe")
    assert state is not None
    assert uns_value(state.value) == {"Name": "A", "Setpoints": {"LineSpeed": 12.5}}
    assert state.value.version == "v2" and state.value.template_ref == "Recipe"
    assert tracker.counters.violations == {}


@pytest.mark.parametrize(("case", "messages", "detail"), [
    ("unknown definition", _messages(_recipe(ref="Nope")), "tck-id-payloads-template-definition-nbirth"),
    ("no definitions at all", _messages(_recipe(), definitions=False), "tck-id-payloads-template-definition-nbirth"),
    ("member missing in a birth", _messages(_recipe(speed=None)), "tck-id-payloads-template-instance-members-birth"),
    ("member not in the definition", _messages(_recipe(extra=[Metric("Colour", "red", D.String)])),
     "tck-id-payloads-template-instance-members"),
    ("member not in the definition, in DATA", [*_messages(_recipe()), _ddata(_recipe(name=None, speed=None,
                                                extra=[Metric("Colour", "red", D.String)]))],
     "tck-id-payloads-template-instance-members"),
])
def test_an_instance_its_definitions_do_not_describe_is_a_violation_and_a_rebirth(
        case: str, messages: list[tuple[str, bytes]], detail: str) -> None:
    """The host counts a ``template_instance`` violation naming the tck-id, requests one rebirth and
    mirrors nothing of the bad message; the node's other metrics stay as they were."""
    tracker, model = EdgeTracker(), LiveModel()
    events = []
    for topic, data in messages:
        for event in tracker.handle(topic, data, 1_700_000_000_000):
            events.append(event)
            model.apply(event)
    (violation,) = [e for e in events if isinstance(e, ProtocolViolation)]
    assert violation.kind == "template_instance" and detail in violation.detail, case
    assert len([e for e in events if isinstance(e, RebirthNeeded)]) == 1
    assert tracker.counters.violations == {"template_instance": 1}
    assert not any(isinstance(e, MetricsChanged) and e.device_id == CELL and not e.birth for e in events)
    state = model.metric(GROUP, EDGE, None, "Line/State")
    assert state is not None and state.value == "RUNNING"


# ---------------------------------------------------------------------------------------------
# a DataSet whose rows do not match its columns: a counted ``dataset`` violation, never a crash

TABLE_TS = 1_700_000_000_000
GOOD_TABLE = DataSet(["Cell", "Good", "Yield"], [D.String, D.Int64, D.Double],
                     [["Filler", 10, 0.9], ["Capper", 9, 1.0]])


def _device(kind: MessageType, seq: int, metrics: list[Metric]) -> tuple[str, bytes]:
    return node_topic(GROUP, kind, EDGE, CELL), encode_payload(Payload(metrics, TABLE_TS + seq, seq), kind)


def _short_row(message: tuple[str, bytes], row: int) -> tuple[str, bytes]:
    """``message`` with the last value of DataSet row ``row`` removed (our encoder refuses to build it)."""
    topic, data = message
    raw = pb.Payload.FromString(data)
    table = next(m for m in raw.metrics if m.HasField("dataset_value")).dataset_value
    del table.rows[row].elements[-1]
    return topic, raw.SerializeToString()


def _table_node() -> list[tuple[str, bytes]]:
    node = [Metric(BDSEQ, 0, D.Int64, timestamp=TABLE_TS), Metric(NODE_REBIRTH, False, D.Boolean, timestamp=TABLE_TS),
            Metric("Line/State", "RUNNING", D.String, alias=5, timestamp=TABLE_TS)]
    return [(node_topic(GROUP, MessageType.NBIRTH, EDGE),
             encode_payload(Payload(node, TABLE_TS, 0), MessageType.NBIRTH))]


def _ndata(seq: int, state: str) -> tuple[str, bytes]:
    payload = Payload([Metric(alias=5, value=state, datatype=D.String, timestamp=TABLE_TS + seq)], TABLE_TS + seq, seq)
    return node_topic(GROUP, MessageType.NDATA, EDGE), encode_payload(payload, MessageType.NDATA)


def _run(messages: list[tuple[str, bytes]]) -> tuple[EdgeTracker, LiveModel, list[Any]]:
    tracker, model, events = EdgeTracker(), LiveModel(), []
    for topic, data in messages:
        for event in tracker.handle(topic, data, TABLE_TS):
            events.append(event)
            model.apply(event)
    return tracker, model, events


def test_a_dataset_row_that_does_not_match_its_columns_is_a_dataset_violation_in_data() -> None:
    """DDATA whose table has a short row: a ``dataset`` violation naming the metric and the row, one
    rebirth request, nothing of that message applied (the table and the count keep their last values);
    the node's next messages are applied as usual."""
    dbirth = _device(MessageType.DBIRTH, 1, [Metric("Results", GOOD_TABLE, D.DataSet, alias=2, timestamp=TABLE_TS),
                                             Metric("Count", 1, D.Int32, alias=3, timestamp=TABLE_TS)])
    changed = DataSet(GOOD_TABLE.columns, GOOD_TABLE.types, [["Filler", 11, 0.91], ["Capper", 10, 1.0]])
    bad = _short_row(_device(MessageType.DDATA, 2, [
        Metric(alias=2, value=changed, datatype=D.DataSet, timestamp=TABLE_TS + 2),
        Metric(alias=3, value=2, datatype=D.Int32, timestamp=TABLE_TS + 2)]), row=1)
    later = _device(MessageType.DDATA, 3, [Metric(alias=3, value=3, datatype=D.Int32, timestamp=TABLE_TS + 3)])
    tracker, model, events = _run([*_table_node(), dbirth, bad, later, _ndata(4, "HELD")])

    (violation,) = [e for e in events if isinstance(e, ProtocolViolation)]
    assert violation.kind == "dataset"
    assert "metric 'Results'" in violation.detail and "row 1 has 2 values for 3 columns" in violation.detail
    assert tracker.counters.violations == {"dataset": 1}
    assert len([e for e in events if isinstance(e, RebirthNeeded)]) == 1
    table = model.metric(GROUP, EDGE, CELL, "Results")
    assert table is not None and table.value == GOOD_TABLE  # the birth's table, not a half-read one
    count = model.metric(GROUP, EDGE, CELL, "Count")
    assert count is not None and count.value == 3  # the bad message's 2 never applied, the next one's 3 is
    state = model.metric(GROUP, EDGE, None, "Line/State")
    assert state is not None and state.value == "HELD"


def test_a_dataset_row_that_does_not_match_its_columns_in_a_dbirth_leaves_the_node_flowing() -> None:
    """The same fault in a DBIRTH: that device is not born (a ``dataset`` violation and a rebirth
    request), its DATA is not applied, and the node's own metrics keep flowing."""
    dbirth = _short_row(_device(MessageType.DBIRTH, 1, [
        Metric("Results", GOOD_TABLE, D.DataSet, alias=2, timestamp=TABLE_TS)]), row=0)
    tracker, model, events = _run([*_table_node(), dbirth, _ndata(2, "HELD")])
    (violation,) = [e for e in events if isinstance(e, ProtocolViolation)]
    assert violation.kind == "dataset" and "row 0 has 2 values for 3 columns" in violation.detail
    assert tracker.counters.violations == {"dataset": 1}
    assert len([e for e in events if isinstance(e, RebirthNeeded)]) == 1
    assert model.metric(GROUP, EDGE, CELL, "Results") is None
    state = model.metric(GROUP, EDGE, None, "Line/State")
    assert state is not None and state.value == "HELD"


def test_a_template_ref_that_is_not_text_is_a_violation_not_a_crash() -> None:
    """tck-id-payloads-template-ref-instance: a DBIRTH whose instance's template_ref is invalid UTF-8
    (upb hands it back as bytes) is a counted ``malformed`` violation and a rebirth request; before,
    the host's definition lookup raised TypeError out of the tracker."""
    topic, data = _messages(_recipe(ref="R"))[1]
    assert data.count(b"\x22\x01R") == 1  # Template.template_ref (field 4), one byte long
    messages = [_messages(_recipe())[0], (topic, data.replace(b"\x22\x01R", b"\x22\x01\xff")), _ndata(2, "HELD")]
    tracker, model, events = _run(messages)
    (violation,) = [e for e in events if isinstance(e, ProtocolViolation)]
    assert violation.kind == "malformed" and "template_ref" in violation.detail and "'Recipe'" in violation.detail
    assert len([e for e in events if isinstance(e, RebirthNeeded)]) == 1
    state = model.metric(GROUP, EDGE, None, "Line/State")
    assert state is not None and state.value == "HELD"
