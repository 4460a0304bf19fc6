"""The MES adapter's ``mes.lines`` entry for a tag map, derived by ``uns up -c`` (no I/O).

Why: a user who connects their own OPC UA server has already named every tag once, in the tag map
(line, cells, metric names, datatypes); writing the same names again into ``adapter.yaml`` by
hand is where a line silently gets no counts (a typo in a metric name is not an error, only an
empty OEE). What a tag map says, and what it cannot:

* **derived**: the line (the map's ``line`` section), and the tags that play a role by their
  name: counters (``GoodCount``, ``RejectCount``, ``TotalCount`` and the names in
  :data:`COUNTER_NAMES`, integer datatypes only, with the wrap ``modulus`` of an unsigned
  datatype), the machine state (``State``), the running batch (``CurrentBatch``) and the speed
  (``Speed``). A line-level tag wins; a cell's tag is taken only when exactly one cell has one
  (the cells of a line usually count the same parts, so several are a question, not an answer).
* **yours to state**: the ideal cycle time (``default_ideal_cycle_s``: OEE performance is unknown
  without it), a ``state_map`` when the state values are not PackML names (``Execute`` runs,
  anything else is a stop), consumed-material counters (``material_id``), and any tag the names
  above do not find.

The result is a plain dict (the YAML of one ``LineConfig``) plus the sentences `uns up` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_node.config import EdgeConfig, TagConfig

#: metric names (last ``/`` level, any case) that make a counter of each role
COUNTER_NAMES: dict[str, tuple[str, ...]] = {
    "good": ("GoodCount", "Good", "GoodParts"),
    "reject": ("RejectCount", "Reject", "Rejects", "ScrapCount", "Scrap", "BadCount"),
    "total": ("TotalCount", "Total", "PartCount", "Count"),
}
#: metric names of the single-tag signals
SIGNAL_NAMES: dict[str, tuple[str, ...]] = {
    "state": ("State", "MachineState", "PackMLState"),
    "batch": ("CurrentBatch", "Batch", "BatchId"),
    "speed": ("Speed", "ActualSpeed"),
}
#: counter datatypes and where they wrap (None: signed, the PLC decides; say it with ``modulus``)
COUNTER_MODULUS: dict[str, int | None] = {
    "UInt8": 2**8, "UInt16": 2**16, "UInt32": 2**32, "UInt64": 2**64,
    "Int8": None, "Int16": None, "Int32": None, "Int64": None,
}

STILL_TO_STATE = ("default_ideal_cycle_s (seconds per part at the ideal rate: OEE performance is unknown "
                  "without it), a state_map if the state values are not PackML names (Execute runs, anything "
                  "else counts as a stop), consumed-material counters (material_id)")


@dataclass
class DerivedLine:
    """One ``mes.lines`` entry and what `uns up` says about it."""

    entry: dict[str, Any]
    #: one short phrase per derived signal (``GoodCount (good)``)
    found: list[str] = field(default_factory=list)
    #: names that matched more than one tag, with the candidates: left out, the user chooses
    ambiguous: list[str] = field(default_factory=list)


def _name(tag: TagConfig) -> str:
    return tag.metric.rsplit("/", 1)[-1].lower()


def _pick(tags: list[TagConfig], names: tuple[str, ...]) -> tuple[TagConfig | None, list[TagConfig]]:
    """The tag a role goes to (line level first, else the only cell that has one) and, when the
    choice is not clear, the candidates."""
    wanted = {name.lower() for name in names}
    matches = [tag for tag in tags if _name(tag) in wanted]
    line_level = [tag for tag in matches if tag.cell is None]
    candidates = line_level or matches
    if len(candidates) == 1:
        return candidates[0], []
    return None, candidates


def _where(tag: TagConfig) -> str:
    return f"{tag.cell}/{tag.metric}" if tag.cell else tag.metric


def _signal(tag: TagConfig) -> dict[str, Any]:
    return {"metric": tag.metric, **({"cell": tag.cell} if tag.cell else {})}


def derive_line(edge: EdgeConfig) -> DerivedLine:
    """The ``mes.lines`` entry for ``edge``'s line from the names and datatypes of its tags."""
    derived = DerivedLine(entry={"line": edge.line.topic, "counters": []})
    for role, names in COUNTER_NAMES.items():
        integer = [tag for tag in edge.tags if tag.datatype.name in COUNTER_MODULUS]
        tag, candidates = _pick(integer, names)
        if tag is None:
            if candidates:
                derived.ambiguous.append(f"{role} counter: one of {', '.join(map(_where, candidates))}")
            continue
        counter = {**_signal(tag), "role": role, "modulus": COUNTER_MODULUS[tag.datatype.name]}
        derived.entry["counters"].append(counter)
        derived.found.append(f"{_where(tag)} ({role} counter)")
    for kind, names in SIGNAL_NAMES.items():
        tag, candidates = _pick(edge.tags, names)
        if tag is None:
            if candidates:
                derived.ambiguous.append(f"{kind}: one of {', '.join(map(_where, candidates))}")
            continue
        derived.entry[kind] = _signal(tag)
        derived.found.append(f"{_where(tag)} ({kind})")
    return derived
