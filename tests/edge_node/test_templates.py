"""OPC UA structures -> Sparkplug Templates and DataSets (edge_node.templates), on real definitions.

A real asyncua client reads the simulator's DataTypeDefinitions and its faceplate ObjectType, the
pure mapping turns them into template definitions, the structures' decoded values into instances
and a DataSet, and the project's codec encodes and decodes the NBIRTH: every member and value is
compared with the simulator's own truth.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from edge_node.config import OpcUaEndpointConfig, load_edge_config
from edge_node.opcua.browse import browse_to_file
from edge_node.opcua.source import type_signature
from edge_node.opcua.structures import StructureNode, StructureTypes, read_structure_types
from edge_node.templates import (
    DEFINITION_PREFIX,
    MemberShape,
    TemplateCatalog,
    TemplateMappingError,
    TypeShape,
    shape_from_object_type,
    shape_from_structure,
    structure_metric,
)
from simulator.config import NAMESPACE_URI
from simulator.server import SimulatedLineServer
from simulator.structures import FACEPLATE_MEMBERS, FACEPLATE_TYPE, STRUCTS, faceplate_member_path
from tests.simulator.structured import quiet_simulator
from uns.sparkplug.codec import decode_payload, encode_payload
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.errors import EncodeError
from uns.sparkplug.model import DataSet, Metric, Payload, Template
from uns.sparkplug.topic import MessageType

TS = 1_700_000_000_000
CELLS = ("Filler", "Capper", "Labeler")


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


async def read_shapes(client: Client, ns: int) -> list[TypeShape]:
    """What the edge will read from any server: browse name, namespace and definition of each type."""
    uri = (await client.get_namespace_array())[ns]
    shapes = []
    for spec in STRUCTS:
        node = client.get_node(ua.NodeId(spec.node_id, ns))
        shapes.append(shape_from_structure(node.nodeid, (await node.read_browse_name()).Name, uri,
                                           await node.read_data_type_definition()))
    object_type = client.get_node(ua.NodeId(f"Types/{FACEPLATE_TYPE}", ns))
    declarations = [((await c.read_browse_name()).Name, await c.read_data_type(), await c.read_value_rank())
                    for c in await object_type.get_children()]
    shapes.append(shape_from_object_type(object_type.nodeid, FACEPLATE_TYPE, uri, declarations))
    return shapes


async def _settled(client: Client, sim: SimulatedLineServer, ns: int) -> dict[str, Any]:
    """Decoded values of every structured variable, once they equal the simulator's truth."""
    deadline = time.monotonic() + 10
    while True:
        values = {p: await client.get_node(ua.NodeId(p, ns)).read_value() for p in sim.structures}
        if _as_dicts(values) == sim.structures or time.monotonic() > deadline:
            return values
        await asyncio.sleep(0.05)


def _as_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_dicts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_dicts(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _as_dicts(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _tid(ns: int, name: str) -> ua.NodeId:
    return ua.NodeId(f"Types/{name}", ns)


@dataclasses.dataclass
class SimulatorBirth:
    """An NBIRTH built from the simulator's structures, with what it was built from."""

    catalog: TemplateCatalog
    payload: Payload
    truth: dict[str, Any]  # the simulator's structures when read
    faceplates: dict[str, dict[str, Any]]  # cell -> faceplate member -> the cell tag's value
    versions: dict[str, str]


async def simulator_birth(sim: SimulatedLineServer) -> SimulatorBirth:
    """Read types and values from the simulator with a real client, map them, build the NBIRTH."""
    async with Client(sim.endpoint) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        catalog = TemplateCatalog(await read_shapes(client, ns))
        values = await _settled(client, sim, ns)
        truth = sim.structures
        assert _as_dicts(values) == truth
        faceplates = {cell: {m: await client.get_node(ua.NodeId(faceplate_member_path("Line1", cell, m), ns))
                             .read_value() for m in FACEPLATE_MEMBERS} for cell in CELLS}
    assert faceplates == {cell: {m: sim.model.sample(f"Line1/{cell}/{tag}").value
                                 for m, (_d, tag) in FACEPLATE_MEMBERS.items()} for cell in CELLS}
    versions = {name: catalog.version(_tid(ns, name)) for name in
                ("RecipeSetpoints", "Recipe", "CellStatus", "QualityResult", "CellCounter", FACEPLATE_TYPE)}
    assert all(len(v) == 16 for v in versions.values()) and len(set(versions.values())) == 6

    # NBIRTH: the definitions (nested type before its user) and one instance per variable
    metrics = catalog.definition_metrics(TS)
    assert [m.name for m in metrics] == [f"{DEFINITION_PREFIX}{n}" for n in (
        "RecipeSetpoints", "Recipe", "CellStatus", "QualityResult", "CellCounter", FACEPLATE_TYPE)]
    metrics.append(structure_metric(catalog, "Recipe", _tid(ns, "Recipe"), values["Line1/ActiveRecipe"],
                                    array=False, timestamp=TS))
    for cell in CELLS:
        metrics.append(structure_metric(catalog, f"{cell}/Status", _tid(ns, "CellStatus"),
                                        values[f"Line1/{cell}/Status"], array=False, timestamp=TS))
        metrics.append(structure_metric(catalog, f"{cell}/Faceplate", _tid(ns, FACEPLATE_TYPE), faceplates[cell],
                                        array=False, timestamp=TS))
    metrics.append(structure_metric(catalog, "QualityResults", _tid(ns, "QualityResult"),
                                    values["Line1/QualityResults"], array=True, timestamp=TS))
    metrics.append(structure_metric(catalog, "CellCounters", _tid(ns, "CellCounter"),
                                    values["Line1/CellCounters"], array=True, timestamp=TS))
    return SimulatorBirth(catalog, Payload(metrics, timestamp=TS, seq=0), truth, faceplates, versions)


async def test_simulator_structures_become_templates_and_a_dataset(sim: SimulatedLineServer) -> None:
    birth = await simulator_birth(sim)
    truth, versions = birth.truth, birth.versions
    decoded = decode_payload(encode_payload(birth.payload, MessageType.NBIRTH), MessageType.NBIRTH)
    got = {m.name: m for m in decoded.metrics}

    # definitions: is_definition, version, no template_ref, every member with its datatype, null values
    # (tck-id-payloads-template-definition-is-definition, tck-id-payloads-template-definition-ref,
    # tck-id-payloads-template-definition-members, tck-id-payloads-template-version)
    recipe_def = got["_types_/Recipe"].value
    assert recipe_def == Template(is_definition=True, version=versions["Recipe"], metrics=[
        Metric("Name", None, D.String, is_null=True),
        Metric("Product", None, D.String, is_null=True),
        Metric("Order", None, D.String, is_null=True),
        Metric("Quantity", None, D.UInt32, is_null=True),
        Metric("Setpoints", Template(template_ref="RecipeSetpoints", version=versions["RecipeSetpoints"], metrics=[
            Metric("LineSpeed", None, D.Double, is_null=True),
            Metric("FillTemperature", None, D.Double, is_null=True)]), D.Template),
        Metric("Cells", None, D.StringArray, is_null=True)])
    assert [(m.name, m.datatype) for m in got["_types_/CellStatus"].value.metrics] == [
        ("State", D.String), ("StateCode", D.Int32), ("GoodCount", D.UInt32), ("RejectCount", D.UInt32),
        ("Speed", D.Double), ("Temperature", D.Double), ("Running", D.Boolean)]
    assert [(m.name, m.datatype) for m in got[f"_types_/{FACEPLATE_TYPE}"].value.metrics] == [
        (name, D.String if datatype == "String" else D.Double) for name, (datatype, _t) in FACEPLATE_MEMBERS.items()]

    # instances: template_ref names the definition, every member present with the simulator's value
    # (tck-id-payloads-template-instance-ref, tck-id-payloads-template-instance-members-birth)
    recipe = truth["Line1/ActiveRecipe"]
    assert got["Recipe"].value == Template(template_ref="Recipe", version=versions["Recipe"], metrics=[
        Metric("Name", recipe["Name"], D.String), Metric("Product", recipe["Product"], D.String),
        Metric("Order", recipe["Order"], D.String), Metric("Quantity", recipe["Quantity"], D.UInt32),
        Metric("Setpoints", Template(template_ref="RecipeSetpoints", version=versions["RecipeSetpoints"], metrics=[
            Metric("LineSpeed", recipe["Setpoints"]["LineSpeed"], D.Double),
            Metric("FillTemperature", recipe["Setpoints"]["FillTemperature"], D.Double)]), D.Template),
        Metric("Cells", ["Filler", "Capper", "Labeler"], D.StringArray)])
    for cell in CELLS:
        status = got[f"{cell}/Status"].value
        assert status.template_ref == "CellStatus" and status.is_definition is False
        assert {m.name: m.value for m in status.metrics} == truth[f"Line1/{cell}/Status"]
        faceplate = got[f"{cell}/Faceplate"].value
        assert faceplate.template_ref == FACEPLATE_TYPE
        assert {m.name: m.value for m in faceplate.metrics} == birth.faceplates[cell]
    # the array of structures is a DataSet with typed columns, one row per cell
    assert got["QualityResults"].value == DataSet(
        ["Cell", "Good", "Reject", "Yield", "Passed"], [D.String, D.UInt32, D.UInt32, D.Double, D.Boolean],
        [[r["Cell"], r["Good"], r["Reject"], r["Yield"], r["Passed"]] for r in truth["Line1/QualityResults"]])
    assert got["CellCounters"].value == DataSet(
        ["Cell", "Good", "Reject", "Speed", "Temperature", "Running"],
        [D.String, D.Int64, D.Int64, D.Double, D.Float, D.Boolean],
        [list(r.values()) for r in truth["Line1/CellCounters"]])


async def test_a_changed_definition_changes_the_version(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        shapes = await read_shapes(client, ns)
        again = await read_shapes(client, ns)
    before, same = TemplateCatalog(shapes), TemplateCatalog(again)
    ids = before.type_ids
    # derived from the definition alone: a second read gives the same versions
    assert [before.version(t) for t in ids] == [same.version(t) for t in ids]
    assert before.versions == same.versions and len(before.versions) == 6

    def changed(type_name: str, member: str, **update: Any) -> TemplateCatalog:
        out = []
        for shape in shapes:
            if shape.name == type_name:
                members = tuple(dataclasses.replace(m, **update) if m.name == member else m for m in shape.members)
                shape = dataclasses.replace(shape, members=members)
            out.append(shape)
        return TemplateCatalog(out)

    # a member's type changes: that type's version changes, unrelated types keep theirs
    retyped = changed("CellStatus", "Speed", datatype=ua.NodeId(ua.ObjectIds.Float))
    assert retyped.version(_tid(ns, "CellStatus")) != before.version(_tid(ns, "CellStatus"))
    assert retyped.version(_tid(ns, "Recipe")) == before.version(_tid(ns, "Recipe"))
    assert {n for n, v in retyped.versions.items() if before.versions[n] != v} == {"CellStatus"}
    # a nested type changes: the outer type's version changes too (its instances embed the nested one)
    renamed = changed("RecipeSetpoints", "LineSpeed", name="LineRate")
    assert renamed.version(_tid(ns, "RecipeSetpoints")) != before.version(_tid(ns, "RecipeSetpoints"))
    assert renamed.version(_tid(ns, "Recipe")) != before.version(_tid(ns, "Recipe"))
    assert changed("Recipe", "Cells", array=False).version(_tid(ns, "Recipe")) != before.version(_tid(ns, "Recipe"))


def _shape(ns_uri: str, ns: int, name: str, *members: MemberShape) -> TypeShape:
    return TypeShape(ua.NodeId(f"Types/{name}", ns), name, ns_uri, tuple(members))


def _m(name: str, type_id: int | ua.NodeId, array: bool = False) -> MemberShape:
    return MemberShape(name, type_id if isinstance(type_id, ua.NodeId) else ua.NodeId(type_id), array)


def test_same_name_in_two_namespaces_gives_two_templates() -> None:
    ours = _shape("urn:uns-hub:simulator", 2, "CellStatus", _m("Speed", ua.ObjectIds.Double))
    vendor = _shape("urn:vendor:plc", 3, "CellStatus", _m("Speed", ua.ObjectIds.Float),
                    _m("Fault", ua.ObjectIds.Boolean))
    other = _shape("urn:vendor:plc", 3, "Motor", _m("Status", vendor.type_id))
    catalog = TemplateCatalog([ours, vendor, other])
    names = [catalog.name(s.type_id) for s in (ours, vendor, other)]
    assert names[0] != names[1] and names[0].startswith("CellStatus@") and names[1].startswith("CellStatus@")
    assert names[2] == "Motor"  # a unique name stays plain
    # the rule does not depend on the order the types were read
    assert [TemplateCatalog([other, vendor, ours]).name(s.type_id) for s in (ours, vendor, other)] == names
    # nor on the namespace index a server assigned this time (the URI and the identifier decide)
    moved = dataclasses.replace(vendor, type_id=ua.NodeId("Types/CellStatus", 5))
    assert TemplateCatalog([ours, moved]).name(moved.type_id) == names[1]
    # both definitions and instances travel in one NBIRTH and each instance names its own definition
    metrics = catalog.definition_metrics(TS)
    metrics.append(Metric("a", catalog.instance(ours.type_id, {"Speed": 1.5}), D.Template, timestamp=TS))
    metrics.append(Metric("m", catalog.instance(other.type_id, {"Status": {"Speed": 2.5, "Fault": True}}),
                          D.Template, timestamp=TS))
    decoded = decode_payload(encode_payload(Payload(metrics, timestamp=TS, seq=0), MessageType.NBIRTH),
                             MessageType.NBIRTH)
    got = {m.name: m.value for m in decoded.metrics}
    assert set(got) == {f"_types_/{names[0]}", f"_types_/{names[1]}", "_types_/Motor", "a", "m"}
    assert got["a"] == Template(template_ref=names[0], version=catalog.version(ours.type_id),
                                metrics=[Metric("Speed", 1.5, D.Double)])
    nested = got["m"].metrics[0].value
    assert nested.template_ref == names[1]
    assert [(m.name, m.value, m.datatype) for m in nested.metrics] == [("Speed", 2.5, D.Float),
                                                                       ("Fault", True, D.Boolean)]


def test_report_by_exception_inside_a_template() -> None:
    uri = "urn:t"
    setpoints = _shape(uri, 2, "Setpoints", _m("Speed", ua.ObjectIds.Double), _m("Temp", ua.ObjectIds.Double))
    recipe = _shape(uri, 2, "Recipe", _m("Name", ua.ObjectIds.String), _m("Set", setpoints.type_id),
                    _m("Cells", ua.ObjectIds.String, array=True))
    catalog = TemplateCatalog([setpoints, recipe])
    old = {"Name": "A", "Set": {"Speed": 1.0, "Temp": 20.0}, "Cells": ["x"]}
    assert catalog.delta(recipe.type_id, old, dict(old)) is None
    # one nested member moves: DATA carries the path to it and nothing else
    # (tck-id-payloads-template-instance-members-data)
    moved = {**old, "Set": {"Speed": 2.0, "Temp": 20.0}}
    delta = catalog.delta(recipe.type_id, old, moved)
    assert delta == Template(template_ref="Recipe", version=catalog.version(recipe.type_id), metrics=[
        Metric("Set", Template(template_ref="Setpoints", version=catalog.version(setpoints.type_id),
                               metrics=[Metric("Speed", 2.0, D.Double)]), D.Template)])
    # an array changes as a whole
    grown = catalog.delta(recipe.type_id, old, {**old, "Cells": ["x", "y"]})
    assert grown is not None and grown.metrics == [Metric("Cells", ["x", "y"], D.StringArray)]
    payload = Payload([Metric("Recipe", delta, D.Template, timestamp=TS)], timestamp=TS, seq=1)
    decoded = decode_payload(encode_payload(payload, MessageType.DDATA), MessageType.DDATA,
                             resolve=lambda name, alias: ("Recipe", D.Template))
    assert decoded.metrics[0].value == delta
    # a definition never travels outside NBIRTH (tck-id-payloads-template-definition-nbirth-only)
    with pytest.raises(EncodeError, match="nbirth-only"):
        encode_payload(Payload(catalog.definition_metrics(TS), timestamp=TS, seq=1), MessageType.DBIRTH)


def test_types_without_a_sparkplug_form_are_refused_by_name() -> None:
    uri = "urn:t"
    union = ua.StructureDefinition(StructureType=ua.StructureType.Union, Fields=[])
    with pytest.raises(TemplateMappingError, match="Choice: a union"):
        shape_from_structure(ua.NodeId("Types/Choice", 2), "Choice", uri, union)
    matrix = ua.StructureDefinition(Fields=[ua.StructureField(Name="Grid", DataType=ua.NodeId(ua.ObjectIds.Double),
                                                              ValueRank=2)])
    with pytest.raises(TemplateMappingError, match="Plate.Grid: value rank 2"):
        shape_from_structure(ua.NodeId("Types/Plate", 2), "Plate", uri, matrix)
    unknown = _shape(uri, 2, "Cell", _m("Mode", ua.NodeId("Types/Mode", 2)))
    with pytest.raises(TemplateMappingError, match="Cell.Mode: its type ns=2;s=Types/Mode is neither"):
        TemplateCatalog([unknown])
    loop = _shape(uri, 2, "Node", _m("Next", ua.NodeId("Types/Node", 2)))
    with pytest.raises(TemplateMappingError, match="Node contains itself"):
        TemplateCatalog([loop])
    with pytest.raises(TemplateMappingError, match="Ids.Keys: Sparkplug has no array of UUID"):
        TemplateCatalog([_shape(uri, 2, "Ids", _m("Keys", ua.ObjectIds.Guid, array=True))])
    row = _shape(uri, 2, "Row", _m("Blob", ua.ObjectIds.ByteString))
    table = _shape(uri, 2, "Table", _m("Rows", row.type_id, array=True))
    with pytest.raises(TemplateMappingError, match="Row.Blob: a Bytes cannot be a DataSet column"):
        TemplateCatalog([row, table])


def test_a_table_with_nested_rows_flattens_to_columns() -> None:
    uri = "urn:t"
    where = _shape(uri, 2, "Where", _m("Cell", ua.ObjectIds.String), _m("Slot", ua.ObjectIds.Int16))
    result = _shape(uri, 2, "Result", _m("Id", ua.ObjectIds.Guid), _m("At", where.type_id),
                    _m("Value", ua.ObjectIds.Float))
    catalog = TemplateCatalog([where, result])
    import uuid
    from datetime import UTC, datetime
    key = uuid.UUID(int=7)
    rows = [{"Id": key, "At": {"Cell": "Filler", "Slot": -2}, "Value": 0.5},
            {"Id": key, "At": None, "Value": None}]
    dataset = catalog.dataset(result.type_id, rows)
    assert dataset == DataSet(["Id", "At/Cell", "At/Slot", "Value"], [D.String, D.String, D.Int16, D.Float],
                              [[str(key), "Filler", -2, 0.5], [str(key), None, None, None]])
    payload = Payload([Metric("t", dataset, D.DataSet, timestamp=TS)], timestamp=TS, seq=0)
    assert decode_payload(encode_payload(payload, MessageType.NBIRTH), MessageType.NBIRTH).metrics[0].value == dataset
    stamp = _shape(uri, 2, "Stamp", _m("At", ua.ObjectIds.DateTime))
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert TemplateCatalog([stamp]).instance(stamp.type_id, {"At": at}).metrics == [
        Metric("At", int(at.timestamp() * 1000), D.DateTime)]


async def test_browse_of_the_simulator_skips_structures_by_name_without_templates(
        sim: SimulatedLineServer, tmp_path: Path) -> None:
    """Without ``--templates`` `uns edge browse` maps scalars only (what every Sparkplug consumer
    reads): each structured variable is listed as skipped, saying how to map it, and a faceplate's
    members are offered as ordinary scalar tags under ``Faceplate/``."""
    out = tmp_path / "browsed.yaml"
    result = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), out, data_dir=tmp_path)
    structured = sorted(s for s in result.skipped if "Alarm" not in s and "Jam" not in s
                        and "DoorOpen" not in s and "EStop" not in s)
    sim_ns = "nsu=urn:uns-hub:simulator"
    why = "structure (browse with --templates to map it as a Template or DataSet)"
    assert structured == sorted([
        "Simulation: excluded (pattern 'Simulation')",  # the test oracle, left out by default
        f"{sim_ns};s=Line1/ActiveRecipe (Line1/ActiveRecipe): {why}",
        f"{sim_ns};s=Line1/QualityResults (Line1/QualityResults): {why}",
        f"{sim_ns};s=Line1/CellCounters (Line1/CellCounters): {why}",
        *(f"{sim_ns};s=Line1/{c}/Status (Line1/{c}/Status): {why}" for c in CELLS)])
    browsed = load_edge_config(out)
    faceplate = sorted((t.cell, t.metric, t.datatype.name) for t in browsed.tags if t.metric.startswith("Faceplate/"))
    assert faceplate == sorted((c, f"Faceplate/{m}", d) for c in CELLS for m, (d, _t) in FACEPLATE_MEMBERS.items())


async def test_browse_with_templates_offers_structures_and_objects_as_template_entries(
        sim: SimulatedLineServer, tmp_path: Path) -> None:
    """``--templates``: a structured variable is a Template entry, the array of structures a DataSet,
    each faceplate object one Template entry instead of its four variables; the map loads, and the
    edge's own type reader describes every entry (the types the NBIRTH will define)."""
    from edge_node.opcua.browse import BrowseFilter

    out = tmp_path / "browsed.yaml"
    result = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), out, data_dir=tmp_path,
                                  filters=BrowseFilter(templates=True))
    assert not [s for s in result.skipped if "structure" in s or "array" in s or "unsupported" in s]
    browsed = load_edge_config(out)
    structured = sorted((t.cell or "", t.metric, t.datatype.name, t.node_id) for t in browsed.tags
                        if t.datatype in (D.Template, D.DataSet))
    ns = f"nsu={NAMESPACE_URI};s=Line1"
    assert structured == sorted([
        ("", "ActiveRecipe", "Template", f"{ns}/ActiveRecipe"),  # line-level (node) metrics
        ("", "QualityResults", "DataSet", f"{ns}/QualityResults"),
        ("", "CellCounters", "DataSet", f"{ns}/CellCounters"),
        *((c, "Status", "Template", f"{ns}/{c}/Status") for c in CELLS),
        *((c, "Faceplate", "Template", f"{ns}/{c}/Faceplate") for c in CELLS)])
    assert not [t for t in browsed.tags if t.metric.startswith("Faceplate/")]
    assert all(not t.writable and t.unit is None for t in browsed.tags if t.datatype in (D.Template, D.DataSet))
    async with Client(sim.endpoint) as client:
        uris = await client.get_namespace_array()
        ids = [ua.NodeId(node_id.split(";s=", 1)[1], uris.index(NAMESPACE_URI)) for *_r, node_id in structured]
        types = await read_structure_types(client, ids)
    assert {types.catalog.name(types.nodes[i].type_id) for i in ids} == {
        "Recipe", "QualityResult", "CellCounter", "CellStatus", FACEPLATE_TYPE}
    assert sorted(n.kind for n in types.nodes.values()) == ["object"] * 3 + ["structure"] * 6


def test_an_array_of_structures_inside_a_structure_is_a_dataset_member() -> None:
    uri = "urn:t"
    row = _shape(uri, 2, "Check", _m("Name", ua.ObjectIds.String), _m("Ok", ua.ObjectIds.Boolean))
    report = _shape(uri, 2, "Report", _m("Id", ua.ObjectIds.UInt64), _m("Checks", row.type_id, array=True))
    catalog = TemplateCatalog([row, report])
    definition = catalog.definition(report.type_id)
    assert [(m.name, m.datatype, m.is_null) for m in definition.metrics] == [("Id", D.UInt64, True),
                                                                              ("Checks", D.DataSet, True)]
    value = {"Id": 2**63 + 1, "Checks": [{"Name": "cap", "Ok": True}, {"Name": "label", "Ok": False}]}
    metrics = [*catalog.definition_metrics(TS), structure_metric(catalog, "r", report.type_id, value, array=False,
                                                                 timestamp=TS)]
    decoded = decode_payload(encode_payload(Payload(metrics, timestamp=TS, seq=0), MessageType.NBIRTH),
                             MessageType.NBIRTH)
    checks = DataSet(["Name", "Ok"], [D.String, D.Boolean], [["cap", True], ["label", False]])
    assert decoded.metrics[-1].value == Template(template_ref="Report", version=catalog.version(report.type_id),
                                                 metrics=[Metric("Id", 2**63 + 1, D.UInt64),
                                                          Metric("Checks", checks, D.DataSet)])


def test_the_type_signature_notices_a_new_member_and_a_retyped_node() -> None:
    """What the edge compares at each type check while connected (edge_node.opcua.source): a member
    added to an object type changes its version, a variable given another structure type changes
    its node's type; the same types read again are equal (no rebirth)."""
    uri, ns = "urn:test", 2
    faceplate = TypeShape(ua.NodeId("Types/Fp", ns), "Fp", uri, (_m("Speed", ua.ObjectIds.Double),), "object")
    other = _shape(uri, ns, "Other", _m("A", ua.ObjectIds.Int32))
    node, var = ua.NodeId("Line1/Fp", ns), ua.NodeId("Line1/Udt", ns)

    def types(*shapes: TypeShape, var_type: ua.NodeId = other.type_id) -> StructureTypes:
        return StructureTypes(TemplateCatalog(shapes), {
            node: StructureNode(node, faceplate.type_id, "object", False),
            var: StructureNode(var, var_type, "structure", False)})

    extended = dataclasses.replace(faceplate, members=(*faceplate.members, _m("Pressure", ua.ObjectIds.Double)))
    renamed = _shape(uri, ns, "Renamed", _m("A", ua.ObjectIds.Int32))
    assert type_signature(types(faceplate, other)) == type_signature(types(faceplate, other))
    assert type_signature(types(extended, other)) != type_signature(types(faceplate, other))
    assert type_signature(types(faceplate, other, renamed, var_type=renamed.type_id)) != \
        type_signature(types(faceplate, other, renamed))
