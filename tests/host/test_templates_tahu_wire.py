"""Eclipse Tahu's JS codec (tests/interop) decodes the Template and DataSet traffic our edge node
really publishes: the simulator's structures and faceplate objects -> the edge app -> Mosquitto,
each NBIRTH/DBIRTH/DDATA taken off the wire as sent and decoded by Tahu, its values compared with
the simulator's own.

Allowed, and asserted, are only Tahu JS 1.0.3's documented deviations
(tests/sparkplug/test_tahu_interop.py): a UInt32 member, which we put in ``int_value`` as the spec
says, reads as null (Tahu reads ``long_value``); an array member reads as null without a type; a
DataSet with a UInt32 column is refused as a whole (so is the DBIRTH that carries it: the table
goes on a device of its own here); DATA, alias-only without datatypes as the spec advises, has no
value for Tahu's stateless codec, so it is decoded as a birth-aware consumer would (each alias
given its datatype from the DBIRTH, then Tahu's decodePayload). A table of the column types Tahu JS does
read (the simulator's ``CellCounters``: String, Int64, Double, Float, Boolean) is decoded exactly, every
column name, type and cell (tck-id-payloads-dataset-types-def, tck-id-payloads-dataset-column-size).
Template rules: definitions in NBIRTH only
(tck-id-payloads-template-definition-nbirth-only), instances refer to them
(tck-id-payloads-template-instance-ref), complete in births
(tck-id-payloads-template-instance-members-birth), only changed members in DDATA
(tck-id-payloads-template-instance-members-data).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from simulator.server import SimulatedLineServer
from simulator.structures import FACEPLATE_MEMBERS, STRUCTS
from tests.edge_node.test_edge_app import running_app, wait_until
from tests.edge_node.test_templates_tahu import tahu_counters
from tests.host.test_object_templates_e2e import faceplate
from tests.host.test_templates_e2e import SIM_LINE, simulator_edge_config
from tests.simulator.structured import quiet_simulator
from tests.sparkplug.test_tahu_interop import tahu
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Captured, Sniffer
from uns.sparkplug.datatypes import DataType as D

pytestmark = [pytest.mark.mosquitto, pytest.mark.node, pytest.mark.timeout(120)]

GROUP, EDGE = "acme:plant1", "packaging:line1"
#: members Tahu JS cannot show: UInt32 (read from long_value only) and arrays (no array types)
UNSHOWN = {spec.name: {f.name for f in spec.fields if f.datatype == "UInt32" or f.array} for spec in STRUCTS}
UNSHOWN["CellFaceplateType"] = set()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


def by_tahu(messages: list[Captured]) -> list[dict[str, Any]]:
    return tahu("decode", [base64.b64encode(m.payload).decode() for m in messages])


def shown(template: dict[str, Any]) -> dict[str, Any]:
    """A template as Tahu decoded it, as {member: value} (a nested template recursively)."""
    return {m["name"]: shown(m["value"]) if m.get("type") == "Template" else m["value"] for m in template["metrics"]}


def as_tahu_shows(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """The simulator's value of a template of type ``name``, with the members Tahu JS cannot show null."""
    nested = {"Setpoints": "RecipeSetpoints"}
    return {k: None if k in UNSHOWN[name] else as_tahu_shows(nested[k], v) if k in nested else v
            for k, v in value.items()}


async def test_tahu_decodes_the_template_traffic_our_edge_publishes(
        mosquitto: BrokerEndpoint, sim: SimulatedLineServer, tmp_path: Path) -> None:
    ns = SIM_LINE
    config = simulator_edge_config(
        mosquitto, tmp_path / "edge", sim,
        [f'{{node_id: "{ns}/ActiveRecipe", metric: ActiveRecipe, cell: Filler, datatype: Template}}',
         f'{{node_id: "{ns}/Filler/Status", metric: Status, cell: Filler, datatype: Template}}',
         f'{{node_id: "{ns}/Filler/Faceplate", metric: Faceplate, cell: Filler, datatype: Template}}',
         f'{{node_id: "{ns}/QualityResults", metric: QualityResults, cell: Labeler, datatype: DataSet}}',
         f'{{node_id: "{ns}/CellCounters", metric: CellCounters, cell: Capper, datatype: DataSet}}'])
    with Sniffer(mosquitto.host, mosquitto.port, ("spBv1.0/#",)) as sniffer:
        async with running_app(config):
            def wire(kind: str, device: str = "") -> list[Captured]:
                topic = f"spBv1.0/{GROUP}/{kind}/{EDGE}" + (f"/{device}" if device else "")
                return sniffer.snapshot(lambda m: m.topic == topic)

            def session() -> dict[str, Captured] | None:
                """The last NBIRTH that defines the templates, and the DBIRTHs after it. On a loaded machine the
                first NBIRTH can go out before the types were read (``sparkplug.first_birth_wait_s``): the node
                then rebirths with the definitions, as docs/templates.md says."""
                births = sniffer.snapshot(lambda m: m.topic.startswith(f"spBv1.0/{GROUP}/") and "BIRTH/" in m.topic)
                starts = [i for i, m in enumerate(births) if m.topic == f"spBv1.0/{GROUP}/NBIRTH/{EDGE}"
                          and b"_types_/CellCounter" in m.payload]
                if not starts:
                    return None
                found = {m.topic.rsplit("/", 1)[1]: m for m in births[starts[-1] + 1:] if "/DBIRTH/" in m.topic}
                return {"": births[starts[-1]], **found} if {"Filler", "Labeler", "Capper"} <= set(found) else None

            born = await wait_until(session, timeout=30)
            truth = {"ActiveRecipe": sim.structures["Line1/ActiveRecipe"],
                     "Status": sim.structures["Line1/Filler/Status"], "Faceplate": faceplate(sim, "Filler")}

            (nbirth,) = by_tahu([born[""]])
            definitions = {m["name"]: m["value"] for m in nbirth["metrics"] if m.get("type") == "Template"}
            assert set(definitions) == {"_types_/Recipe", "_types_/RecipeSetpoints", "_types_/CellStatus",
                                        "_types_/QualityResult", "_types_/CellCounter", "_types_/CellFaceplateType"}
            assert all(d["isDefinition"] is True and d["templateRef"] == "" for d in definitions.values())
            assert [m["name"] for m in definitions["_types_/CellFaceplateType"]["metrics"]] == list(FACEPLATE_MEMBERS)
            assert all(m["value"] is None for d in definitions.values() for m in d["metrics"]
                       if m.get("type") != "Template")

            (dbirth,) = by_tahu([born["Filler"]])
            instances = {m["name"]: m["value"] for m in dbirth["metrics"] if m.get("type") == "Template"}
            types = {"ActiveRecipe": "Recipe", "Status": "CellStatus", "Faceplate": "CellFaceplateType"}
            assert set(instances) == set(types)
            for metric, name in types.items():
                instance = instances[metric]
                assert (instance["templateRef"], instance["isDefinition"]) == (name, False)
                assert instance["version"] == definitions[f"_types_/{name}"]["version"]
                assert shown(instance) == as_tahu_shows(name, truth[metric]), metric
            # the deviations, as Tahu shows them: UInt32 typed but null, an array untyped and null
            status = {m["name"]: m for m in instances["Status"]["metrics"]}
            assert status["GoodCount"] == {"name": "GoodCount", "type": "UInt32", "value": None}
            cells = next(m for m in instances["ActiveRecipe"]["metrics"] if m["name"] == "Cells")
            assert cells == {"name": "Cells", "value": None}
            # the table's UInt32 cells: Tahu refuses that DBIRTH as a whole (deviation 3)
            (labeler,) = by_tahu([born["Labeler"]])
            good = sim.structures["Line1/QualityResults"][0]["Good"]
            assert labeler == {"$error": f'Invalid DataSetValue: {{"intValue":{good}}}'}
            # a table of column types Tahu JS reads: that DBIRTH decodes, the DataSet exactly as the
            # simulator holds it (column names and types, every cell)
            (capper,) = by_tahu([born["Capper"]])
            (counters,) = capper["metrics"]
            assert (counters["name"], counters["type"]) == ("CellCounters", "DataSet")
            assert counters["value"] == tahu_counters(sim.structures["Line1/CellCounters"])

            # one member changes on the server: Tahu decodes the DDATA's partial instance
            before_change = len(wire("DDATA", "Filler"))
            name = "SKU-" + truth["ActiveRecipe"]["Name"]
            sim.model.write_tag("Line1/Recipe", name)
            await sim.tick_now()
            assert sim.structures["Line1/ActiveRecipe"]["Name"] == name

            # our DDATA is alias-only without datatypes: Tahu's stateless codec shows no value
            # (deviation 5); a consumer that knows the birth gives each alias its datatype first
            births = {int(m["alias"]["$long"]): m for m in dbirth["metrics"]}
            datatypes = {str(alias): D[m["type"]].value for alias, m in births.items()}

            def recipe_changes() -> list[dict[str, Any]]:
                data = wire("DDATA", "Filler")[before_change:]
                stateless = by_tahu(data)
                assert all(m["value"] is None and "name" not in m for p in stateless for m in p["metrics"])
                aware = tahu("decodeData", [{"payload": base64.b64encode(m.payload).decode(), "datatypes": datatypes}
                                            for m in data])
                return [m["value"] for p in aware for m in p["metrics"]
                        if births[int(m["alias"]["$long"])]["name"] == "ActiveRecipe"]

            await wait_until(recipe_changes, timeout=20)
            (change,) = recipe_changes()
            assert (change["templateRef"], change["isDefinition"]) == ("Recipe", False)
            assert change["version"] == definitions["_types_/Recipe"]["version"]
            assert shown(change) == {"Name": name}  # the changed member alone
