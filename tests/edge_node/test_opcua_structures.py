"""The edge reads structure and object types, and their values, from the real simulator
(edge_node.opcua.structures): the catalog it builds equals the one built from an independent read
of the DataTypeDefinitions, and the instances equal the simulator's own structures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, ua

from edge_node.opcua.structures import read_object_value, read_structure_types
from edge_node.templates import TemplateCatalog, TemplateMappingError
from simulator.config import NAMESPACE_URI
from simulator.server import SimulatedLineServer
from simulator.structures import FACEPLATE_MEMBERS, FACEPLATE_TYPE
from tests.edge_node.test_templates import _settled, read_shapes
from tests.simulator.structured import quiet_simulator
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.model import DataSet, Template

RECIPE, TABLE, STATUS, FACEPLATE = ("Line1/ActiveRecipe", "Line1/QualityResults", "Line1/Filler/Status",
                                    "Line1/Filler/Faceplate")


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


async def test_types_and_values_come_from_the_server_alone(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        ids = {path: ua.NodeId(path, ns) for path in (RECIPE, TABLE, STATUS, FACEPLATE)}
        types = await read_structure_types(client, list(ids.values()))
        reference = TemplateCatalog(await read_shapes(client, ns))
        # every type the tags use (RecipeSetpoints found through Recipe's field), same names and versions
        used = {name: version for name, version in reference.versions.items() if name != "CellCounter"}
        assert types.catalog.versions == used and len(types.catalog.versions) == 5
        assert {p: (n.type_id.Identifier, n.kind, n.array) for p, n in
                ((p, types.nodes[i]) for p, i in ids.items())} == {
            RECIPE: ("Types/Recipe", "structure", False), TABLE: ("Types/QualityResult", "structure", True),
            STATUS: ("Types/CellStatus", "structure", False), FACEPLATE: (f"Types/{FACEPLATE_TYPE}", "object", False)}

        values = await _settled(client, sim, ns)  # decoded: read_structure_types loaded the definitions
        recipe = types.catalog.instance(types.nodes[ids[RECIPE]].type_id, values[RECIPE])
        assert recipe.template_ref == "Recipe" and plain_members(recipe) == sim.structures[RECIPE]
        table = types.catalog.dataset(types.nodes[ids[TABLE]].type_id, values[TABLE])
        assert table == DataSet(["Cell", "Good", "Reject", "Yield", "Passed"],
                                [D.String, D.UInt32, D.UInt32, D.Double, D.Boolean],
                                [list(row.values()) for row in sim.structures[TABLE]])

        faceplate, status = await read_object_value(client, ids[FACEPLATE])
        truth = {m: sim.model.sample(f"Line1/Filler/{tag}").value for m, (_d, tag) in FACEPLATE_MEMBERS.items()}
        assert status == 0 and faceplate == truth
        instance = types.catalog.instance(types.nodes[ids[FACEPLATE]].type_id, faceplate)
        assert instance.template_ref == FACEPLATE_TYPE and plain_members(instance) == truth


async def test_a_bad_member_source_is_a_null_member_and_a_bad_status(sim: SimulatedLineServer) -> None:
    tag = next(t for _m, (_d, t) in FACEPLATE_MEMBERS.items() if t == "Temperature")
    member = next(m for m, (_d, t) in FACEPLATE_MEMBERS.items() if t == tag)
    sim.model.inject_fault("bad_status", f"Line1/Filler/{tag}", 60.0)
    await sim.tick_now()
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        values, status = await read_object_value(client, ua.NodeId(FACEPLATE, ns))
    assert status & 0x80000000 and values[member] is None
    assert {m: v for m, v in values.items() if m != member} == {
        m: sim.model.sample(f"Line1/Filler/{t}").value for m, (_d, t) in FACEPLATE_MEMBERS.items() if m != member}


async def test_nodes_that_are_not_structures_are_refused_by_name(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        with pytest.raises(TemplateMappingError, match=r"Line1/Filler/Speed: its DataType i=11 is a builtin"):
            await read_structure_types(client, [ua.NodeId("Line1/Filler/Speed", ns)])
        with pytest.raises(TemplateMappingError, match="is a Method"):
            await read_structure_types(client, [await _a_method(client)])
        # a described structure still maps after a refused one: each call stands alone
        ok = await read_structure_types(client, [ua.NodeId(STATUS, ns)])
        assert list(ok.catalog.versions) == ["CellStatus"]


async def _a_method(client: Client) -> ua.NodeId:
    """Any method node of the server (the standard GetMonitoredItems of the Server object)."""
    return ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems)


def plain_members(template: Template) -> dict[str, Any]:
    """An instance's members as {name: value}, nested instances nested."""
    return {str(m.name): plain_members(m.value) if isinstance(m.value, Template) else m.value
            for m in template.metrics}

