"""Structured data on the simulator, read by a real asyncua client.

The client learns the types from the server alone (``load_data_type_definitions``), reads the
DataTypeDefinition attribute, decodes the structures and the array of structures, and sees them
follow the process: every value compared with the simulator's own samples, not "something arrived".
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asyncua import Client, ua

from simulator.client import string, uint32
from simulator.config import NAMESPACE_URI
from simulator.faults import BAD_SENSOR_FAILURE, GOOD, UNCERTAIN_LAST_USABLE_VALUE
from simulator.server import SimulatedLineServer
from simulator.structures import (
    CELL_STATUS,
    FACEPLATE_MEMBERS,
    FACEPLATE_TYPE,
    RECIPE,
    STRUCTS,
    YIELD_PASS,
    faceplate_member_path,
    structure_values,
)
from tests.simulator.structured import plain, quiet_simulator

_BUILTIN_IDS = {"Boolean": 1, "Int32": 6, "UInt32": 7, "Int64": 8, "Float": 10, "Double": 11, "String": 12,
                "DateTime": 13}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


async def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


async def test_definitions_are_readable_and_describe_every_field(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        for spec in STRUCTS:
            node = client.get_node(ua.NodeId(spec.node_id, ns))
            assert (await node.read_browse_name()).Name == spec.name
            definition = await node.read_data_type_definition()
            assert isinstance(definition, ua.StructureDefinition)
            assert definition.StructureType == ua.StructureType.Structure
            assert definition.DefaultEncodingId == ua.NodeId(f"{spec.node_id}/Binary", ns)
            got = [(f.Name, f.DataType, f.ValueRank) for f in definition.Fields]
            expected = [(f.name, ua.NodeId(_BUILTIN_IDS[f.datatype]) if f.datatype in _BUILTIN_IDS
                         else ua.NodeId(f"Types/{f.datatype}", ns), 1 if f.array else -1) for f in spec.fields]
            assert got == expected, spec.name
        # the variables declare their structure type; the table is a one-dimensional array
        status = client.get_node(ua.NodeId("Line1/Filler/Status", ns))
        assert await status.read_data_type() == ua.NodeId(CELL_STATUS.node_id, ns)
        table = client.get_node(ua.NodeId("Line1/QualityResults", ns))
        assert await table.read_value_rank() == ua.ValueRank.OneDimension
        recipe = client.get_node(ua.NodeId("Line1/ActiveRecipe", ns))
        assert await recipe.read_data_type() == ua.NodeId(RECIPE.node_id, ns)


async def test_structures_decode_and_follow_a_batch(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        paths = list(structure_values(sim.config, sim.model.samples()))
        assert paths == ["Line1/ActiveRecipe", "Line1/Filler/Status", "Line1/Capper/Status",
                         "Line1/Labeler/Status", "Line1/QualityResults", "Line1/CellCounters"]

        async def read_all() -> dict[str, Any]:
            return {p: plain(await client.get_node(ua.NodeId(p, ns)).read_value()) for p in paths}

        async def settled() -> bool:
            return await read_all() == structure_values(sim.config, sim.model.samples())

        # at rest (Idle, no noise) the server holds exactly the model's truth
        await _wait(settled)
        idle = await read_all()
        assert idle == sim.structures
        assert idle["Line1/ActiveRecipe"] == {
            "Name": "Default", "Product": "", "Order": "", "Quantity": 0,
            "Setpoints": {"LineSpeed": 1200.0, "FillTemperature": 20.0},
            "Cells": ["Filler", "Capper", "Labeler"]}
        assert idle["Line1/Filler/Status"] == {"State": "Idle", "StateCode": 4, "GoodCount": 0, "RejectCount": 0,
                                               "Speed": 0.0, "Temperature": 20.0, "Running": False}
        assert idle["Line1/QualityResults"] == [
            {"Cell": c, "Good": 0, "Reject": 0, "Yield": 1.0, "Passed": True} for c in ("Filler", "Capper", "Labeler")]
        # the counters table: Int64 counters and a Float temperature (the value a client reads, float32)
        assert idle["Line1/CellCounters"] == [
            {"Cell": c, "Good": 0, "Reject": 0, "Speed": 0.0, "Running": False,
             "Temperature": idle[f"Line1/{c}/Status"]["Temperature"]} for c in ("Filler", "Capper", "Labeler")]

        # the process moves the structures: a batch runs to Complete
        line = client.get_node(ua.NodeId("Line1", ns))
        await line.call_method(f"{ns}:StartBatch", string("WO-7"), string("Cola"), uint32(40))
        await _wait(lambda: _equals(client.get_node(ua.NodeId("Line1/State", ns)), "Complete"))
        await _wait(settled)
        done = await read_all()
        window = sim.model.batches[-1]
        assert window.good == 40
        assert done["Line1/ActiveRecipe"]["Order"] == "" and done["Line1/ActiveRecipe"]["Quantity"] == 0
        rows = done["Line1/QualityResults"]
        for cell, row in zip(sim.config.cells, rows, strict=True):
            model_cell = sim.model.cell(cell.name)
            status = done[f"Line1/{cell.name}/Status"]
            assert (status["GoodCount"], status["RejectCount"]) == (model_cell.good, model_cell.reject)
            assert status["State"] == "Complete" and status["Running"] is False
            total = model_cell.good + model_cell.reject
            assert row == {"Cell": cell.name, "Good": model_cell.good, "Reject": model_cell.reject,
                           "Yield": round(model_cell.good / total, 6),
                           "Passed": model_cell.good / total >= YIELD_PASS}
        assert rows[-1]["Good"] == 40  # parts out of the last cell are the line's good parts
        counters = done["Line1/CellCounters"]
        assert [(c["Cell"], c["Good"], c["Reject"], c["Running"]) for c in counters] == [
            (r["Cell"], r["Good"], r["Reject"], False) for r in rows]
        assert [c["Temperature"] for c in counters] == [
            struct.unpack("<f", struct.pack("<f", sim.model.sample(f"Line1/{c['Cell']}/Temperature").value))[0]
            for c in counters]
        assert sum(row["Reject"] for row in rows) == window.reject


async def test_a_structure_change_is_a_data_change_notification(sim: SimulatedLineServer) -> None:
    class Collector:
        def __init__(self) -> None:
            self.values: list[Any] = []

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.values.append(plain(val))

    async with Client(sim.endpoint) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        collector = Collector()
        subscription = await client.create_subscription(20, collector)
        await subscription.subscribe_data_change(client.get_node(ua.NodeId("Line1/ActiveRecipe", ns)))
        await _wait(lambda: _true(len(collector.values) >= 1))
        await client.get_node(ua.NodeId("Line1/Recipe", ns)).write_value(ua.Variant("Cola-2L", ua.VariantType.String))
        await _wait(lambda: _true(collector.values[-1]["Name"] == "Cola-2L"))
        assert collector.values[-1] == sim.structures["Line1/ActiveRecipe"]
        await subscription.delete()


async def test_faceplates_are_instances_of_one_object_type(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        type_id = ua.NodeId(f"Types/{FACEPLATE_TYPE}", ns)
        declared = {(await c.read_browse_name()).Name for c in await client.get_node(type_id).get_children()}
        assert declared == set(FACEPLATE_MEMBERS)
        for cell in sim.config.cells:
            faceplate = await client.nodes.objects.get_child([f"{ns}:Line1", f"{ns}:{cell.name}", f"{ns}:Faceplate"])
            assert await faceplate.read_type_definition() == type_id
            names = {(await c.read_browse_name()).Name for c in await faceplate.get_children()}
            assert names == set(FACEPLATE_MEMBERS)

            async def mirrors(name: str = cell.name) -> bool:
                for member, (_datatype, tag) in FACEPLATE_MEMBERS.items():
                    node = client.get_node(ua.NodeId(faceplate_member_path("Line1", name, member), ns))
                    got = await node.read_value()
                    if got != sim.model.sample(f"Line1/{name}/{tag}").value:
                        return False
                return True

            await _wait(mirrors)

        # the live type change hook (a PLC download extending the function block): the type and every
        # faceplate gain a Double member at once; a name already used is refused
        sim_object = client.get_node(ua.NodeId("Simulation", ns))
        await sim_object.call_method(ua.NodeId("Simulation/AddFaceplateMember", ns), ua.Variant("Pressure"))
        with pytest.raises(ua.uaerrors.BadInvalidArgument):
            await sim_object.call_method(ua.NodeId("Simulation/AddFaceplateMember", ns), ua.Variant("Speed"))
        declared = {(await c.read_browse_name()).Name for c in await client.get_node(type_id).get_children()}
        assert declared == {*FACEPLATE_MEMBERS, "Pressure"}
        for cell in sim.config.cells:
            node = client.get_node(ua.NodeId(faceplate_member_path("Line1", cell.name, "Pressure"), ns))
            assert await node.read_value() == 0.0
    assert sim.added_faceplate_members == ["Pressure"]


async def _equals(node: Any, expected: Any) -> bool:
    return await node.read_value() == expected


async def _true(value: bool) -> bool:
    return value


async def test_a_structure_built_from_a_failed_sensor_is_bad_not_a_valid_zero(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        filler = client.get_node(ua.NodeId("Line1/Filler/Status", ns))
        capper = client.get_node(ua.NodeId("Line1/Capper/Status", ns))
        table = client.get_node(ua.NodeId("Line1/QualityResults", ns))
        sim.model.inject_fault("bad_status", "Line1/Filler/Temperature", 30.0)
        sim.model.inject_fault("uncertain", "Line1/Capper/Speed", 30.0)
        await sim.tick_now()

        bad = await filler.read_data_value(raise_on_bad_status=False)
        assert bad.StatusCode.value == BAD_SENSOR_FAILURE and bad.Value.Value is None
        assert sim.structures["Line1/Filler/Status"] is None
        uncertain = await capper.read_data_value(raise_on_bad_status=False)
        assert uncertain.StatusCode.value == UNCERTAIN_LAST_USABLE_VALUE
        assert plain(uncertain.Value.Value) == sim.structures["Line1/Capper/Status"]
        assert plain(uncertain.Value.Value)["Speed"] == sim.model.sample("Line1/Capper/Speed").value
        # a structure that does not use the failed tags stays Good
        good = await table.read_data_value(raise_on_bad_status=False)
        assert good.StatusCode.value == GOOD
        assert plain(good.Value.Value) == sim.structures["Line1/QualityResults"]
        assert sim.structure_statuses == {"Line1/ActiveRecipe": GOOD, "Line1/Filler/Status": BAD_SENSOR_FAILURE,
                                          "Line1/Capper/Status": UNCERTAIN_LAST_USABLE_VALUE,
                                          "Line1/Labeler/Status": GOOD, "Line1/QualityResults": GOOD,
                                          "Line1/CellCounters": BAD_SENSOR_FAILURE}  # built from every temperature

        assert sim.model.clear_faults() == 2
        await sim.tick_now()
        recovered = await filler.read_data_value()
        assert recovered.StatusCode.value == GOOD
        assert plain(recovered.Value.Value) == sim.structures["Line1/Filler/Status"]
        assert plain(recovered.Value.Value)["Temperature"] == sim.model.sample("Line1/Filler/Temperature").value
