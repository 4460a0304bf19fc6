"""The list of every tag the simulated line serves, as pydantic models.

The catalog is the single description of the address space: the model fills values by tag path,
the OPC UA shell creates one variable per entry, and the edge node's default tag map is generated
from it. Node ids are stable strings: ``ns=<idx>;s=<path>`` in namespace ``urn:uns-hub:simulator``
with ``path`` = ``<Line>/<Tag>``, ``<Line>/<Cell>/<Tag>``, ``Simulation/Truth/<Tag>`` or
``<Line>/Synthetic/<Tag>``; the browse tree follows the path (Objects/<Line>/<Cell>/<Tag>).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from simulator.alarms import CONDITION_NAMES
from simulator.config import NAMESPACE_URI, CellConfig, SimulatorConfig

DataType = Literal["Boolean", "Int32", "UInt32", "UInt64", "Double", "String", "DateTime"]
TagGroup = Literal["line", "cell", "truth", "synthetic"]

NUMERIC_TYPES: frozenset[str] = frozenset({"Int32", "UInt32", "UInt64", "Double"})
SIMULATION_OBJECT = "Simulation"
TRUTH_FOLDER = "Simulation/Truth"
SYNTHETIC_FOLDER = "Synthetic"


class TagSpec(BaseModel):
    """One OPC UA variable of the simulator."""

    model_config = ConfigDict(frozen=True)

    path: str  # "Line1/Filler/GoodCount": the string identifier of the node id
    name: str  # "GoodCount": browse name of the variable
    cell: str | None  # "Filler", or None for line-level, truth and synthetic tags
    group: TagGroup
    datatype: DataType
    unit: str | None = None
    eu_low: float | None = None
    eu_high: float | None = None
    writable: bool = False
    description: str = ""

    @property
    def node_id(self) -> str:
        """The namespace-independent string identifier (``s=`` part)."""
        return self.path

    @property
    def expanded_node_id(self) -> str:
        """``nsu=urn:uns-hub:simulator;s=<path>``: valid whatever index the server assigns."""
        return f"nsu={NAMESPACE_URI};s={self.path}"

    def node_id_string(self, ns_index: int) -> str:
        """``ns=<idx>;s=<path>`` for a server whose namespace index is known (2 on this simulator)."""
        return f"ns={ns_index};s={self.path}"


def _cell_tags(line: str, cell: CellConfig, counter_max: int) -> list[TagSpec]:
    base = f"{line}/{cell.name}"
    low, high = cell.temperature_range_c
    common = {"cell": cell.name, "group": "cell"}
    return [
        TagSpec(path=f"{base}/State", name="State", datatype="String", **common,
                description="PackML state name (mirrors the line)"),
        TagSpec(path=f"{base}/StateCode", name="StateCode", datatype="Int32", eu_low=0, eu_high=17,
                **common, description="PackML StateCurrent number"),
        TagSpec(path=f"{base}/GoodCount", name="GoodCount", datatype="UInt32", unit="parts",
                eu_low=0, eu_high=counter_max, **common,
                description="cumulative parts passed by this cell; wraps at the counter modulus"),
        TagSpec(path=f"{base}/RejectCount", name="RejectCount", datatype="UInt32", unit="parts",
                eu_low=0, eu_high=counter_max, **common,
                description="cumulative parts rejected by this cell; wraps at the counter modulus"),
        TagSpec(path=f"{base}/Speed", name="Speed", datatype="Double", unit="parts/min",
                eu_low=0, eu_high=6000, **common, description="measured speed (noisy)"),
        TagSpec(path=f"{base}/SpeedSetpoint", name="SpeedSetpoint", datatype="Double",
                unit="parts/min", eu_low=0, eu_high=6000, writable=True, **common,
                description="target speed; the slowest cell sets the line rate"),
        TagSpec(path=f"{base}/Temperature", name="Temperature", datatype="Double", unit="degC",
                eu_low=low, eu_high=high, **common, description="measured temperature (noisy)"),
        TagSpec(path=f"{base}/{cell.temperature_setpoint_tag}", name=cell.temperature_setpoint_tag,
                datatype="Double", unit="degC", eu_low=low, eu_high=high, writable=True, **common,
                description="temperature setpoint; the temperature follows with a first-order lag"),
    ]


def _line_tags(line: str, counter_max: int) -> list[TagSpec]:
    common = {"cell": None, "group": "line"}
    return [
        TagSpec(path=f"{line}/State", name="State", datatype="String", **common,
                description="PackML state name"),
        TagSpec(path=f"{line}/StateCode", name="StateCode", datatype="Int32", eu_low=0, eu_high=17,
                **common, description="PackML StateCurrent number (map by name across sources)"),
        TagSpec(path=f"{line}/StopReason", name="StopReason", datatype="Int32", **common,
                description="0 while executing; 140000 operator, 180000 technical (UMH classes)"),
        TagSpec(path=f"{line}/Recipe", name="Recipe", datatype="String", writable=True, **common,
                description="recipe name; change it only when not executing (the allowlist enforces)"),
        TagSpec(path=f"{line}/CurrentBatch", name="CurrentBatch", datatype="String", **common,
                description="order of the running batch, empty when none"),
        TagSpec(path=f"{line}/CurrentProduct", name="CurrentProduct", datatype="String", **common,
                description="product of the running batch, empty when none"),
        TagSpec(path=f"{line}/BatchQuantity", name="BatchQuantity", datatype="UInt32", unit="parts",
                **common, description="good parts ordered for the running batch, 0 = open-ended"),
        TagSpec(path=f"{line}/GoodCount", name="GoodCount", datatype="UInt32", unit="parts",
                eu_low=0, eu_high=counter_max, **common,
                description="cumulative good parts out of the last cell; wraps at the counter modulus"),
        TagSpec(path=f"{line}/RejectCount", name="RejectCount", datatype="UInt32", unit="parts",
                eu_low=0, eu_high=counter_max, **common,
                description="cumulative rejects of all cells; wraps at the counter modulus"),
        TagSpec(path=f"{line}/Speed", name="Speed", datatype="Double", unit="parts/min",
                eu_low=0, eu_high=6000, **common, description="line output rate while executing"),
    ]


def truth_alarm_tag(condition_path: str) -> str:
    """Truth tag counting the events of one condition: ``Line1/Filler/Jam`` -> ``.../FillerJamEvents``."""
    _, cell, name = condition_path.split("/")
    return f"{TRUTH_FOLDER}/{cell}{name}Events"


def _alarm_truth_tags(config: SimulatorConfig) -> list[TagSpec]:
    common = {"cell": None, "group": "truth"}
    tags = [
        TagSpec(path=f"{TRUTH_FOLDER}/AlarmEvents", name="AlarmEvents", datatype="UInt64", **common,
                description="condition events emitted since start, all conditions"),
        TagSpec(path=f"{TRUTH_FOLDER}/ActiveAlarms", name="ActiveAlarms", datatype="UInt32", **common,
                description="conditions active right now"),
        TagSpec(path=f"{TRUTH_FOLDER}/UnackedAlarms", name="UnackedAlarms", datatype="UInt32", **common,
                description="conditions waiting for an acknowledgement right now"),
    ]
    for cell in config.cells:
        for name in CONDITION_NAMES:
            path = truth_alarm_tag(f"{config.line}/{cell.name}/{name}")
            tags.append(TagSpec(path=path, name=path.rpartition("/")[2], datatype="UInt64", **common,
                                description=f"events emitted by condition {cell.name}/{name}"))
    return tags


def _truth_tags() -> list[TagSpec]:
    common = {"cell": None, "group": "truth"}
    folder = TRUTH_FOLDER
    return [
        TagSpec(path=f"{folder}/BatchOrder", name="BatchOrder", datatype="String", **common,
                description="order of the current or last batch window"),
        TagSpec(path=f"{folder}/BatchActive", name="BatchActive", datatype="Boolean", **common,
                description="True while the batch window is open"),
        TagSpec(path=f"{folder}/BatchGood", name="BatchGood", datatype="UInt64", unit="parts",
                **common, description="good parts produced inside the current or last batch window"),
        TagSpec(path=f"{folder}/BatchReject", name="BatchReject", datatype="UInt64", unit="parts",
                **common, description="rejects produced inside the current or last batch window"),
        TagSpec(path=f"{folder}/BatchStart", name="BatchStart", datatype="DateTime", **common,
                description="when the batch window opened"),
        TagSpec(path=f"{folder}/BatchEnd", name="BatchEnd", datatype="DateTime", **common,
                description="when the batch window closed (null while open)"),
        TagSpec(path=f"{folder}/BatchCount", name="BatchCount", datatype="UInt32", **common,
                description="batch windows opened since the simulator started"),
        TagSpec(path=f"{folder}/TotalGood", name="TotalGood", datatype="UInt64", unit="parts",
                **common, description="good parts since start, never wraps"),
        TagSpec(path=f"{folder}/TotalReject", name="TotalReject", datatype="UInt64", unit="parts",
                **common, description="rejects since start, never wraps"),
    ]


def synthetic_path(line: str, index: int) -> str:
    """Path of the ``index``-th (0-based) synthetic benchmark tag."""
    return f"{line}/{SYNTHETIC_FOLDER}/Tag{index:05d}"


def tag_catalog(
    config: SimulatorConfig, *, include_truth: bool = False, include_synthetic: bool = True
) -> list[TagSpec]:
    """Every tag of the line, in browse order.

    Truth tags (the simulator's own authoritative batch totals) are left out by default: they are
    the oracle end-to-end tests compare the MES against, not plant data to forward.
    """
    counter_max = config.counter_modulus - 1
    tags = _line_tags(config.line, counter_max)
    for cell in config.cells:
        tags.extend(_cell_tags(config.line, cell, counter_max))
    if include_truth:
        tags.extend(_truth_tags())
        tags.extend(_alarm_truth_tags(config))
    if include_synthetic:
        tags.extend(
            TagSpec(path=synthetic_path(config.line, i), name=f"Tag{i:05d}", cell=None,
                    group="synthetic", datatype="Double", eu_low=-1000, eu_high=1000,
                    description="synthetic benchmark tag, changes at extra_rate_hz")
            for i in range(config.extra_tags)
        )
    return tags
