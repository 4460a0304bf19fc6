"""Eclipse Tahu's JS codec (tests/interop) decodes the Templates built from the simulator's structures.

Every member is compared, in order, with what we sent, allowing only Tahu JS 1.0.3's documented
deviations (tests/sparkplug/test_tahu_interop.py): UInt32 read from ``long_value`` only (our
spec-conformant ``int_value`` reads as null), no array datatypes (value null, no type), an absent
``template_ref`` shown as "", and DataSet cells of UInt32 refused.

Tahu JS 1.0.3 reads DataSet cells of String, Int64 (as an unsigned Long), Float, Double and Boolean
only (``getDataSetValue`` in its ``sparkplugbpayload.js``; Int32 and the other integer types, DateTime,
Text and null cells throw). The simulator's ``CellCounters`` table has only such columns, so Tahu
decodes it exactly: every column name, type and cell.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from simulator.server import SimulatedLineServer
from simulator.structures import CELL_COUNTER
from tests.edge_node.test_templates import TS, simulator_birth
from tests.simulator.structured import quiet_simulator
from tests.sparkplug.test_tahu_interop import L, tahu
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType as D
from uns.sparkplug.model import Metric, Payload, Template
from uns.sparkplug.topic import MessageType

pytestmark = pytest.mark.node


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    async with quiet_simulator() as server:
        yield server


def _tahu_member(member: Metric) -> dict[str, Any]:
    assert member.datatype is not None
    if member.datatype.is_array:
        return {"value": None, "name": member.name}  # deviation 2
    value = member.value
    if isinstance(value, Template):
        value = _tahu_template(value)
    elif member.datatype is D.UInt32:
        value = None  # deviation 1
    return {"value": value, "type": member.datatype.name, "name": member.name}


def _tahu_template(template: Template) -> dict[str, Any]:
    return {"version": template.version, "templateRef": template.template_ref or "",  # deviation 7
            "isDefinition": template.is_definition, "metrics": [_tahu_member(m) for m in template.metrics],
            "parameters": []}


#: the CellCounters columns as Tahu JS names their types (its own ``decodeType``), in field order
COUNTER_TYPES = ["String", "Int64", "Int64", "Double", "Float", "Boolean"]


def tahu_counters(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The simulator's CellCounters rows as Tahu JS decodes the DataSet: Int64 cells are Longs."""
    return {"numOfColumns": L(len(COUNTER_TYPES)), "columns": [f.name for f in CELL_COUNTER.fields],
            "types": COUNTER_TYPES,
            "rows": [[L(v) if t == "Int64" else v for v, t in zip(r.values(), COUNTER_TYPES, strict=True)]
                     for r in rows]}


def _b64(payload: Payload) -> str:
    return base64.b64encode(encode_payload(payload, MessageType.NBIRTH)).decode()


async def test_tahu_decodes_simulator_templates(sim: SimulatedLineServer) -> None:
    birth = await simulator_birth(sim)
    templates = [m for m in birth.payload.metrics if m.datatype is D.Template]
    assert len(templates) == 6 + 1 + 3 + 3  # definitions, recipe, statuses, faceplates
    tables = {m.name: m for m in birth.payload.metrics if m.datatype is D.DataSet}
    (decoded, table, counters) = tahu("decode", [
        _b64(dataclasses.replace(birth.payload, metrics=metrics))
        for metrics in (templates, [tables["QualityResults"]], [tables["CellCounters"]])])
    assert decoded["metrics"] == [{"value": _tahu_template(m.value), "type": "Template", "name": m.name,
                                   "timestamp": L(m.timestamp)} for m in templates]
    # spot checks in Tahu's own terms, so the expectation above is not only our own mapping echoed
    recipe = next(m for m in decoded["metrics"] if m["name"] == "Recipe")["value"]
    assert recipe["templateRef"] == "Recipe" and recipe["isDefinition"] is False
    assert recipe["metrics"][0] == {"value": birth.truth["Line1/ActiveRecipe"]["Name"], "type": "String",
                                    "name": "Name"}
    setpoints = recipe["metrics"][4]["value"]
    assert setpoints["templateRef"] == "RecipeSetpoints"
    assert [m["value"] for m in setpoints["metrics"]] == list(birth.truth["Line1/ActiveRecipe"]["Setpoints"].values())
    definition = next(m for m in decoded["metrics"] if m["name"] == "_types_/CellStatus")["value"]
    assert definition["isDefinition"] is True and definition["templateRef"] == ""
    assert definition["version"] == birth.versions["CellStatus"]
    # deviation 3: Tahu JS throws on a UInt32 DataSet cell in int_value, where the spec puts it
    first_good = birth.truth["Line1/QualityResults"][0]["Good"]
    assert table == {"$error": f'Invalid DataSetValue: {{"intValue":{first_good}}}'}
    # a table of the column types Tahu JS reads: decoded exactly, every column name, type and cell
    rows = birth.truth["Line1/CellCounters"]
    assert [r["Cell"] for r in rows] == ["Filler", "Capper", "Labeler"]
    assert counters["metrics"] == [{"name": "CellCounters", "type": "DataSet", "timestamp": L(TS),
                                    "value": tahu_counters(rows)}]
