"""The default edge config for the simulated line (``uns up``, demos, end-to-end tests).

Why here: it composes two services (the simulator's namespace, the edge's config model), and only
the composition root ``unshub`` may import both; the edge node never needs it at run time. The
caller (the CLI, ``uns up``, a test) passes the simulator's catalog as plain dicts, e.g.
``[t.model_dump() for t in tag_catalog(cfg)]``; each dict needs ``path`` and ``datatype`` and may
have ``cell``, ``unit``, ``eu_low``, ``eu_high``, ``writable``, ``description``, ``node_id`` and
``group`` (the simulator's TagSpec fields).

Mapping: a tag ``<Line>/<Cell>/<Name>`` becomes metric ``<Name>`` of device ``<Cell>``;
``<Line>/<Name>`` a node-level (line) metric; anything else keeps its path below the line as
metric folders. Node ids default to ``nsu=<namespace_uri>;s=<path>`` so they survive the server
assigning another namespace index. Server-side deadbands are off: the asyncua server cannot
apply Percent and fails on Absolute when a Bad value has no variant (its notification is lost).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from edge_node.config import EdgeConfig
from simulator.alarms import CONDITION_NAMES
from simulator.config import NAMESPACE_URI
from uns.isa95 import LinePath

#: simulator tag groups forwarded by default (truth tags are the tests' oracle, not plant data)
DEFAULT_GROUPS = ("line", "cell")


def simulator_node_id(path: str, namespace_uri: str = NAMESPACE_URI) -> str:
    """``nsu=<namespace_uri>;s=<path>``: the simulator's node id whatever index its server assigns."""
    return f"nsu={namespace_uri};s={path}"


def _metric_of(path: str, line: str, cell: str | None) -> str:
    parts = path.split("/")
    if parts and parts[0] == line:
        parts = parts[1:]
    if cell is not None and parts and parts[0] == cell:
        parts = parts[1:]
    return "/".join(parts) or path


def simulated_cells(tags: Iterable[Mapping[str, Any]]) -> list[str]:
    """The cells of the simulated line that have tags, in catalog order."""
    return list(dict.fromkeys(str(t["cell"]) for t in tags if t.get("cell")))


def simulator_config_dict(endpoint: str, broker_url: str, data_dir: Path | str,
                          tags: Iterable[Mapping[str, Any]], *, line: LinePath | None = None,
                          namespace_uri: str = NAMESPACE_URI, groups: Iterable[str] = DEFAULT_GROUPS,
                          primary_host_id: str | None = None, sim_line: str | None = None,
                          sparkplug: Mapping[str, Any] | None = None, alarms: bool = False) -> dict[str, Any]:
    """The config as plain data (what ``plant.yaml`` would hold). With ``alarms`` the endpoint also
    subscribes to every condition of every cell (docs/alarms.md)."""
    tag_list = list(tags)
    if sim_line is None:
        firsts = [str(t["path"]).split("/")[0] for t in tag_list if "/" in str(t["path"])]
        sim_line = max(set(firsts), key=firsts.count) if firsts else "Line1"
    line = line or LinePath(enterprise="acme", site="plant1", area="packaging", line=sim_line)
    wanted = set(groups)
    out_tags: list[dict[str, Any]] = []
    for spec in tag_list:
        if spec.get("group") is not None and spec["group"] not in wanted:
            continue
        path = str(spec["path"])
        cell = spec.get("cell")
        entry: dict[str, Any] = {
            "node_id": spec.get("node_id") or simulator_node_id(path, namespace_uri),
            "metric": _metric_of(path, sim_line, cell),
        }
        if cell is not None:
            entry["cell"] = cell
        entry["datatype"] = spec["datatype"]
        for src, dst in (("unit", "unit"), ("eu_low", "eng_low"), ("eu_high", "eng_high")):
            if spec.get(src) is not None:
                entry[dst] = spec[src]
        if spec.get("description"):
            entry["description"] = spec["description"]
        if spec.get("writable"):
            entry["writable"] = True
        out_tags.append(entry)
    opcua: dict[str, Any] = {"name": "simulator", "url": endpoint, "server_deadband": False}
    if alarms:
        opcua["alarms"] = {"conditions": [{"cell": cell, "name": name} for cell in simulated_cells(out_tags)
                                          for name in CONDITION_NAMES]}
    spb: dict[str, Any] = {"brokers": [broker_url], **(sparkplug or {})}
    if primary_host_id is not None:
        spb["primary_host_id"] = primary_host_id
    return {
        "line": line.model_dump(),
        "data_dir": str(data_dir),
        "sparkplug": spb,
        # the simulator serves security policy None on loopback: the demo profile accepts that; a
        # hand-written plant config without this line is `production` (docs/security.md)
        "security_profile": "demo",
        "opcua": [opcua],
        "tags": out_tags,
    }


def simulator_config(endpoint: str, broker_url: str, data_dir: Path | str,
                     tags: Iterable[Mapping[str, Any]], **options: Any) -> EdgeConfig:
    """The validated :class:`EdgeConfig` for a simulated line (see module docstring)."""
    raw = simulator_config_dict(endpoint, broker_url, data_dir, tags, **options)
    config = EdgeConfig.model_validate(raw)
    return config.resolve_paths(Path.cwd())


def simulator_config_yaml(endpoint: str, broker_url: str, data_dir: Path | str,
                          tags: Iterable[Mapping[str, Any]], **options: Any) -> str:
    """The same as a ``plant.yaml`` text a user can save and edit."""
    raw = simulator_config_dict(endpoint, broker_url, data_dir, tags, **options)
    EdgeConfig.model_validate(raw)  # never hand out a file that would not load
    return "# Edge node config for the uns-hub simulated line (generated)\n" + yaml.safe_dump(
        raw, sort_keys=False, width=120)
