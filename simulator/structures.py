"""The simulator's structured data: custom structure types, their current values, and the faceplates.

Real PLCs expose structured data (a recipe, a cell status, a table of quality results, a motor
faceplate), so the simulator does too, beside (never instead of) its scalar tags. This module is the
*description and the truth* and does no I/O; :mod:`simulator.structure_nodes` puts it on OPC UA.

Types (namespace ``urn:uns-hub:simulator``, node ids ``s=Types/<Name>``):

* ``RecipeSetpoints`` {LineSpeed Double, FillTemperature Double} — nested inside
* ``Recipe`` {Name String, Product String, Order String, Quantity UInt32, Setpoints RecipeSetpoints,
  Cells String[]}
* ``CellStatus`` {State String, StateCode Int32, GoodCount UInt32, RejectCount UInt32, Speed Double,
  Temperature Double, Running Boolean}
* ``QualityResult`` {Cell String, Good UInt32, Reject UInt32, Yield Double, Passed Boolean}
* ``CellCounter`` {Cell String, Good Int64, Reject Int64, Speed Double, Temperature Float, Running
  Boolean}: a table whose column types every Sparkplug consumer reads, Eclipse Tahu's JS codec
  included (it refuses UInt32 cells in ``int_value``, where the spec puts them)
* object type ``CellFaceplateType`` with variables Speed, SpeedSetpoint, Temperature (Double) and
  State (String)

Variables: ``<Line>/ActiveRecipe`` (Recipe), ``<Line>/<Cell>/Status`` (CellStatus),
``<Line>/QualityResults`` (QualityResult[], one row per cell, in line order), ``<Line>/CellCounters``
(CellCounter[], one row per cell) and one object
``<Line>/<Cell>/Faceplate`` of ``CellFaceplateType`` per cell (children ``<path>.<Name>``).

Every value is derived from the model's *published* samples (after faults), so a structure never
disagrees with the scalar tags a client reads beside it: :func:`structure_values` is the oracle
tests compare with what a client decodes, and :func:`structure_status` its StatusCode (the worst of
its source tags', so a structure built from a failed sensor is Bad, never a valid-looking zero).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from simulator.config import SimulatorConfig
from simulator.faults import GOOD, Sample

#: a quality results row passes when at least this share of the cell's parts were good
YIELD_PASS = 0.95


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a structure: an OPC UA builtin type name or another structure's name."""

    name: str
    datatype: str
    array: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class StructSpec:
    name: str
    fields: tuple[FieldSpec, ...]
    description: str = ""

    @property
    def node_id(self) -> str:
        return f"Types/{self.name}"


RECIPE_SETPOINTS = StructSpec("RecipeSetpoints", (
    FieldSpec("LineSpeed", "Double", description="parts/min the slowest cell is set to"),
    FieldSpec("FillTemperature", "Double", description="temperature setpoint of the first cell, degC"),
), "setpoints a recipe downloads to the line")

RECIPE = StructSpec("Recipe", (
    FieldSpec("Name", "String"),
    FieldSpec("Product", "String", description="product of the running batch, empty when none"),
    FieldSpec("Order", "String", description="work order of the running batch, empty when none"),
    FieldSpec("Quantity", "UInt32", description="parts ordered, 0 when no batch runs"),
    FieldSpec("Setpoints", RECIPE_SETPOINTS.name),
    FieldSpec("Cells", "String", array=True, description="cells the recipe runs on, in line order"),
), "the recipe active on the line")

CELL_STATUS = StructSpec("CellStatus", (
    FieldSpec("State", "String"),
    FieldSpec("StateCode", "Int32"),
    FieldSpec("GoodCount", "UInt32"),
    FieldSpec("RejectCount", "UInt32"),
    FieldSpec("Speed", "Double"),
    FieldSpec("Temperature", "Double"),
    FieldSpec("Running", "Boolean", description="the line is in Execute"),
), "one cell's status as a PLC would publish it in one block")

QUALITY_RESULT = StructSpec("QualityResult", (
    FieldSpec("Cell", "String"),
    FieldSpec("Good", "UInt32"),
    FieldSpec("Reject", "UInt32"),
    FieldSpec("Yield", "Double", description="good / (good + reject), 1.0 before the first part"),
    FieldSpec("Passed", "Boolean", description=f"yield >= {YIELD_PASS}"),
), "one row of the quality results table")

CELL_COUNTER = StructSpec("CellCounter", (
    FieldSpec("Cell", "String"),
    FieldSpec("Good", "Int64", description="good parts out of the cell (a 64-bit lifetime counter)"),
    FieldSpec("Reject", "Int64", description="rejected parts of the cell"),
    FieldSpec("Speed", "Double", description="parts/min"),
    FieldSpec("Temperature", "Float", description="degC, as a 32-bit float"),
    FieldSpec("Running", "Boolean", description="the line is in Execute"),
), "one row of the cell counters table (column types every Sparkplug consumer reads)")

#: every structure type, nested types before the types that use them
STRUCTS: tuple[StructSpec, ...] = (RECIPE_SETPOINTS, RECIPE, CELL_STATUS, QUALITY_RESULT, CELL_COUNTER)

FACEPLATE_TYPE = "CellFaceplateType"
#: faceplate variable -> (OPC UA builtin type, the cell tag it mirrors)
FACEPLATE_MEMBERS: dict[str, tuple[str, str]] = {
    "Speed": ("Double", "Speed"),
    "SpeedSetpoint": ("Double", "SpeedSetpoint"),
    "Temperature": ("Double", "Temperature"),
    "State": ("String", "State"),
}


def recipe_path(line: str) -> str:
    return f"{line}/ActiveRecipe"


def status_path(line: str, cell: str) -> str:
    return f"{line}/{cell}/Status"


def quality_path(line: str) -> str:
    return f"{line}/QualityResults"


def counters_path(line: str) -> str:
    return f"{line}/CellCounters"


def faceplate_path(line: str, cell: str) -> str:
    return f"{line}/{cell}/Faceplate"


def faceplate_member_path(line: str, cell: str, member: str) -> str:
    """asyncua names an instantiated child ``<parent string id>.<browse name>``."""
    return f"{faceplate_path(line, cell)}.{member}"


def structure_variables(config: SimulatorConfig) -> dict[str, tuple[StructSpec, bool]]:
    """Every structured variable: path -> (its type, whether it is an array of that type)."""
    line, cells = config.line, [cell.name for cell in config.cells]
    variables: dict[str, tuple[StructSpec, bool]] = {recipe_path(line): (RECIPE, False)}
    variables.update({status_path(line, cell): (CELL_STATUS, False) for cell in cells})
    variables[quality_path(line)] = (QUALITY_RESULT, True)
    variables[counters_path(line)] = (CELL_COUNTER, True)
    return variables


def _float32(value: float) -> float:
    """``value`` as an OPC UA Float carries it, so the truth equals what a client reads."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _yield(good: int, reject: int) -> float:
    total = good + reject
    return 1.0 if total == 0 else round(good / total, 6)


def structure_sources(config: SimulatorConfig) -> dict[str, list[str]]:
    """The scalar tags each structured variable is built from (its status follows theirs)."""
    line = config.line
    cells = [cell.name for cell in config.cells]
    first = config.cells[0]
    sources = {recipe_path(line): [f"{line}/Recipe", f"{line}/CurrentProduct", f"{line}/CurrentBatch",
                                   f"{line}/BatchQuantity", *(f"{line}/{c}/SpeedSetpoint" for c in cells),
                                   f"{line}/{first.name}/{first.temperature_setpoint_tag}"]}
    for cell in cells:
        sources[status_path(line, cell)] = [f"{line}/State", *(f"{line}/{cell}/{tag}" for tag in (
            "State", "StateCode", "GoodCount", "RejectCount", "Speed", "Temperature"))]
    sources[quality_path(line)] = [f"{line}/{c}/{tag}" for c in cells for tag in ("GoodCount", "RejectCount")]
    sources[counters_path(line)] = [f"{line}/State", *(f"{line}/{c}/{tag}" for c in cells for tag in (
        "GoodCount", "RejectCount", "Speed", "Temperature"))]
    return sources


def _severity(status: int) -> int:
    """OPC UA StatusCode severity: the top two bits (0 Good, 1 Uncertain, 2 Bad)."""
    return (status >> 30) & 0b11


def structure_status(config: SimulatorConfig, samples: dict[str, Sample]) -> dict[str, int]:
    """Each structure's StatusCode: the worst of its source tags' (the first of equal severity).

    A structure built from a failed sensor must not look valid (the truth rule): Bad in, Bad out.
    """
    statuses = {}
    for path, sources in structure_sources(config).items():
        worst = GOOD
        for source in sources:
            sample = samples.get(source)
            if sample is not None and _severity(sample.status) > _severity(worst):
                worst = sample.status
        statuses[path] = worst
    return statuses


def structure_values(config: SimulatorConfig, samples: dict[str, Sample]) -> dict[str, Any]:
    """The current value of every structured variable, as plain dicts (lists of dicts for arrays).

    Field names and order are exactly the types' fields. A source tag that is null (Bad) gives the
    field's zero value here; :func:`structure_status` then marks the whole structure Bad, and the
    server publishes it as a null value with that status, as it does a Bad scalar.
    """

    def value(path: str, default: Any) -> Any:
        sample = samples.get(path)
        return default if sample is None or sample.value is None else sample.value

    line = config.line
    cells = [cell.name for cell in config.cells]
    state = value(f"{line}/State", "")
    speeds = [value(f"{line}/{cell}/SpeedSetpoint", 0.0) for cell in cells]
    first = config.cells[0]
    fill_temperature = value(f"{line}/{first.name}/{first.temperature_setpoint_tag}", 0.0)
    values: dict[str, Any] = {
        recipe_path(line): {
            "Name": value(f"{line}/Recipe", ""),
            "Product": value(f"{line}/CurrentProduct", ""),
            "Order": value(f"{line}/CurrentBatch", ""),
            "Quantity": value(f"{line}/BatchQuantity", 0),
            "Setpoints": {"LineSpeed": float(min(speeds)), "FillTemperature": float(fill_temperature)},
            "Cells": list(cells),
        },
    }
    rows, counters = [], []
    for cell in cells:
        base = f"{line}/{cell}"
        good, reject = value(f"{base}/GoodCount", 0), value(f"{base}/RejectCount", 0)
        values[status_path(line, cell)] = {
            "State": value(f"{base}/State", ""),
            "StateCode": value(f"{base}/StateCode", 0),
            "GoodCount": good,
            "RejectCount": reject,
            "Speed": value(f"{base}/Speed", 0.0),
            "Temperature": value(f"{base}/Temperature", 0.0),
            "Running": state == "Execute",
        }
        cell_yield = _yield(good, reject)
        rows.append({"Cell": cell, "Good": good, "Reject": reject, "Yield": cell_yield,
                     "Passed": cell_yield >= YIELD_PASS})
        counters.append({"Cell": cell, "Good": good, "Reject": reject, "Speed": value(f"{base}/Speed", 0.0),
                         "Temperature": _float32(value(f"{base}/Temperature", 0.0)), "Running": state == "Execute"})
    values[quality_path(line)] = rows
    values[counters_path(line)] = counters
    return values


__all__ = [
    "CELL_COUNTER", "CELL_STATUS", "FACEPLATE_MEMBERS", "FACEPLATE_TYPE", "QUALITY_RESULT", "RECIPE",
    "RECIPE_SETPOINTS", "STRUCTS", "FieldSpec", "StructSpec", "counters_path", "faceplate_member_path",
    "faceplate_path", "quality_path", "recipe_path", "status_path", "structure_sources", "structure_status",
    "structure_values", "structure_variables",
]
