"""The simulator's analog tags carry EngineeringUnits and EURange, read back by a real asyncua client.

Issue 17: `uns edge browse` maps units and ranges from these properties (OPC 10000-8 AnalogItemType),
so the simulator must serve them, with the values of its own config (a cell's temperature range).
"""

from __future__ import annotations

from asyncua import Client, ua

from simulator.catalog import tag_catalog
from simulator.config import NAMESPACE_URI, default_cells
from simulator.engineering_units import UNECE_NAMESPACE, is_analog, unit_id
from simulator.server import SimulatedLineServer
from tests.simulator.test_server import fast_config


async def _properties(node: object) -> dict[str, object]:
    found: dict[str, object] = {}
    for prop in await node.get_properties():  # type: ignore[attr-defined]
        name = await prop.read_browse_name()
        found[f"{name.NamespaceIndex}:{name.Name}"] = await prop.read_value()
    return found


async def test_every_analog_tag_serves_its_configured_unit_and_range() -> None:
    cells = default_cells()
    cells[0] = cells[0].model_copy(update={"temperature_range_c": (-5.0, 72.5)})  # not a default: from config
    config = fast_config(cells=cells)
    catalog = tag_catalog(config, include_truth=True)
    async with SimulatedLineServer(config) as sim, Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        analog = 0
        for spec in catalog:
            node = client.get_node(f"ns={ns};s={spec.path}")
            props = await _properties(node)
            type_definition = await node.read_type_definition()
            if is_analog(spec):
                analog += 1
                assert type_definition == ua.NodeId(ua.ObjectIds.AnalogItemType), spec.path
                rng = props.pop("0:EURange")
                assert (rng.Low, rng.High) == (spec.eu_low, spec.eu_high), spec.path
            else:
                assert type_definition == ua.NodeId(ua.ObjectIds.BaseDataVariableType), spec.path
            if spec.unit:
                eu = props.pop("0:EngineeringUnits")
                assert (eu.DisplayName.Text, eu.NamespaceUri) == (spec.unit, UNECE_NAMESPACE), spec.path
            assert "0:EURange" not in props and "0:EngineeringUnits" not in props, spec.path
        # the catalog spelled out once: per cell StateCode, Good/RejectCount, Speed(+Setpoint), Temperature(+Setpoint);
        # on the line StateCode, GoodCount, RejectCount, Speed
        assert analog == 3 * 7 + 4
        filler_temp = client.get_node(f"ns={ns};s=Line1/Filler/Temperature")
        props = await _properties(filler_temp)
        assert (props["0:EURange"].Low, props["0:EURange"].High) == (-5.0, 72.5)
        assert props["0:EngineeringUnits"].UnitId == unit_id("CEL") == 4408652
        # BatchQuantity has a unit but no range: a plain variable with EngineeringUnits only
        batch_quantity = await _properties(client.get_node(f"ns={ns};s=Line1/BatchQuantity"))
        assert set(batch_quantity) == {"0:EngineeringUnits"}
