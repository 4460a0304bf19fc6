"""``uns edge browse``: walk a server's address space and write a starter tag map to edit.

Why a starter and not a finished map: only the integrator knows which folder is a cell and
which variables matter. The heuristic is stated here once: under ``Objects``, the first folder
level is the line, the second the cell (Sparkplug device), deeper folders become ``/`` folders of
the metric name; variables directly under the line are line-level (node) metrics. The engineering
unit and range come from the ``EngineeringUnits`` / ``EURange`` properties when the server has
them (AnalogItemType). Arrays, structures and unknown types are listed as skipped at the end of
the file, not guessed — except with ``templates`` (``--templates``): then a structured variable is a
``datatype: Template`` entry (an array of structures a ``DataSet``), and an object instance of a
custom ObjectType (outside namespace 0, declaring variables) is one ``Template`` entry instead of
its variables. Off by default because a template needs a Sparkplug consumer that understands
templates, and many do not; scalars reach every consumer (docs/templates.md). Alarm condition
objects are skipped too (their state variables are not process values: conditions are mapped
under ``alarms:``), and so are folders an exclude pattern names (by default the uns-hub
simulator's test oracle ``Simulation``). Node ids are written with
the namespace URI (``nsu=<uri>;s=...``): a server may renumber its namespace indexes on restart,
never its URIs. The line placement and the Sparkplug section come from a :class:`Placement` the
caller chooses (a stack folder's, or placeholders marked ``# PLACEHOLDER`` in the file). The result
loads with :func:`edge_node.config.load_edge_config` as is.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from asyncua import Client, ua

from ..config import OpcUaEndpointConfig
from .security import build_client

log = logging.getLogger("edge_node.browse")  # its name before edge_node.opcua: log filters use it

#: OPC UA built-in (and common derived) DataType ids -> Sparkplug datatype names
OPCUA_TO_SPARKPLUG: dict[int, str] = {
    ua.ObjectIds.Boolean: "Boolean", ua.ObjectIds.SByte: "Int8", ua.ObjectIds.Byte: "UInt8",
    ua.ObjectIds.Int16: "Int16", ua.ObjectIds.UInt16: "UInt16", ua.ObjectIds.Int32: "Int32",
    ua.ObjectIds.UInt32: "UInt32", ua.ObjectIds.Int64: "Int64", ua.ObjectIds.UInt64: "UInt64",
    ua.ObjectIds.Float: "Float", ua.ObjectIds.Double: "Double", ua.ObjectIds.String: "String",
    ua.ObjectIds.DateTime: "DateTime", ua.ObjectIds.Guid: "UUID", ua.ObjectIds.LocalizedText: "String",
    ua.ObjectIds.Duration: "Double", ua.ObjectIds.UtcTime: "DateTime", ua.ObjectIds.Enumeration: "Int32",
    ua.ObjectIds.Number: "Double", ua.ObjectIds.Integer: "Int64", ua.ObjectIds.UInteger: "UInt64",
    ua.ObjectIds.NumericRange: "String", ua.ObjectIds.LocaleId: "String",
}
_SKIP_OBJECTS = {ua.NodeId(ua.ObjectIds.Server), ua.NodeId(ua.ObjectIds.Aliases)}
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
#: browse paths (``/``-joined browse names below Objects) left out unless asked for: the uns-hub
#: simulator's test hooks and oracle (``Simulation/Truth/*`` are counters tests compare against)
DEFAULT_EXCLUDES: tuple[str, ...] = ("Simulation", "Simulation/*")
#: how often ``progress`` is called during a walk (variables found)
PROGRESS_EVERY = 500


@dataclass
class BrowsedVariable:
    node_id: str
    path: list[str]  # browse names from below Objects down to the variable
    datatype: str | None
    array: bool
    writable: bool
    description: str | None = None
    unit: str | None = None
    eng_low: float | None = None
    eng_high: float | None = None
    #: its DataType is a described structure (a Template, or a DataSet when an array)
    structure: bool = False


@dataclass
class BrowseResult:
    variables: list[BrowsedVariable] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    truncated: bool = False
    #: variables left out because no ``include`` pattern matched them
    not_included: int = 0


@dataclass
class BrowseFilter:
    """Which browse paths are walked and mapped (``fnmatch`` patterns on ``Line1/Filler/Speed``).

    An excluded path is not walked at all (a folder's pattern should name the folder and ``/*``);
    with ``include`` patterns, only variables matching one of them are mapped."""

    exclude: Sequence[str] = DEFAULT_EXCLUDES
    include: Sequence[str] = ()
    #: offer structured variables (Template, arrays: DataSet) and object instances of custom
    #: ObjectTypes (one Template each, instead of their variables) as template entries
    templates: bool = False

    def excluded_by(self, path: str) -> str | None:
        return next((pattern for pattern in self.exclude if fnmatch.fnmatchcase(path, pattern)), None)

    def included(self, path: str) -> bool:
        return not self.include or any(fnmatch.fnmatchcase(path, pattern) for pattern in self.include)


@dataclass
class Placement:
    """Where the browsed line goes and how it reaches its broker: the map's ``line`` and
    ``sparkplug`` sections (plus any other top-level keys, e.g. ``http``), and which of their values
    are placeholders, keyed ``(section, key)`` with the reason printed beside them."""

    line: dict[str, str] | None = None  # None: enterprise/site/area placeholders, the server's line name
    sparkplug: dict[str, Any] = field(default_factory=lambda: {"brokers": ["mqtt://127.0.0.1:1883"]})
    extra: dict[str, Any] = field(default_factory=lambda: {"data_dir": "data/edge"})
    placeholders: dict[tuple[str, str], str] = field(default_factory=dict)
    #: a header line saying where the placement came from
    source: str = ""


def clean_name(name: str) -> str:
    """A browse name as an ISA-95 / metric level: no ``: / + #`` or spaces, no leading ``_ $``."""
    cleaned = _BAD_CHARS.sub("_", name).strip("_") or "x"
    return "x" + cleaned if cleaned[0] in "_$-." else cleaned


def expanded_node_id(node_id: ua.NodeId, uris: Sequence[str]) -> str:
    """``nsu=<uri>;s=...`` for a node outside namespace 0 (``i=85`` stays as it is)."""
    text = node_id.to_string()
    index = node_id.NamespaceIndex
    if index == 0 or index >= len(uris):
        return text
    return f"nsu={uris[index]};{text.split(';', 1)[1]}"


async def browse_variables(client: Client, *, max_depth: int = 8, max_variables: int = 5000,
                           filters: BrowseFilter | None = None,
                           progress: Callable[[int], None] | None = None) -> BrowseResult:
    """Breadth-first walk of ``Objects`` (hierarchical references; the Server object is skipped)."""
    filters = filters or BrowseFilter()
    result = BrowseResult()
    queue: list[tuple[Any, list[str]]] = [(client.nodes.objects, [])]
    seen: set[ua.NodeId] = set()
    uris = await client.get_namespace_array()
    condition_types: dict[ua.NodeId, bool] = {}
    object_types: dict[ua.NodeId, bool] = {}
    while queue:
        node, path = queue.pop(0)
        if len(path) > max_depth:
            result.skipped.append(f"{'/'.join(path)}: deeper than {max_depth} levels")
            continue
        try:
            children = await node.get_children_descriptions(refs=ua.ObjectIds.HierarchicalReferences)
        except Exception as exc:  # one unbrowsable node must not abort the walk
            result.skipped.append(f"{'/'.join(path) or 'Objects'}: browse failed: {exc}")
            continue
        for ref in children:
            child_id = ref.NodeId
            if child_id in seen or child_id in _SKIP_OBJECTS:
                continue
            seen.add(child_id)
            name = ref.BrowseName.Name
            child = client.get_node(child_id)
            child_path = "/".join([*path, name])
            is_variable = (ref.NodeClass == ua.NodeClass.Variable
                           and ref.ReferenceTypeId != ua.NodeId(ua.ObjectIds.HasProperty))
            if ref.NodeClass != ua.NodeClass.Object and not is_variable:
                continue
            pattern = filters.excluded_by(child_path)
            if pattern is not None:
                result.skipped.append(f"{child_path}: excluded (pattern {pattern!r})")
                continue
            if ref.NodeClass == ua.NodeClass.Object:
                if await _is_condition(client, ref.TypeDefinition, condition_types):
                    result.skipped.append(f"{child_path}: alarm condition (map it under `alarms:`)")
                elif filters.templates and await _is_object_template(client, ref.TypeDefinition, object_types):
                    if not filters.included(child_path):
                        result.not_included += 1
                    elif len(result.variables) >= max_variables:
                        result.truncated = True
                        return result
                    else:  # one Template entry; its variables are its members, not tags of their own
                        result.variables.append(BrowsedVariable(expanded_node_id(child_id, uris), [*path, name],
                                                                "Template", False, False))
                else:
                    queue.append((child, [*path, name]))
            else:
                if not filters.included(child_path):
                    result.not_included += 1
                    continue
                if len(result.variables) >= max_variables:
                    result.truncated = True
                    return result
                variable = await _describe(client, child, [*path, name], uris, templates=filters.templates)
                if variable.datatype is None or (variable.array and variable.datatype != "DataSet"):
                    why = "array" if variable.array else "unsupported datatype"
                    if variable.structure:
                        why = "structure (browse with --templates to map it as a Template or DataSet)"
                    result.skipped.append(f"{variable.node_id} ({'/'.join(variable.path)}): {why}")
                else:
                    result.variables.append(variable)
                    if progress is not None and len(result.variables) % PROGRESS_EVERY == 0:
                        progress(len(result.variables))
    return result


async def _is_condition(client: Client, type_id: ua.NodeId | None, cache: dict[ua.NodeId, bool]) -> bool:
    """The object type is ``ConditionType`` or one of its subtypes (alarms), following the chain."""
    from asyncua.common.ua_utils import get_node_supertype

    if type_id is None or type_id.is_null():
        return False
    type_id = ua.NodeId(type_id.Identifier, type_id.NamespaceIndex)  # an ExpandedNodeId compares unequal
    if type_id not in cache:
        chain, current, found = [], type_id, False
        while current is not None and len(chain) < 12:
            if current in cache:
                found = cache[current]
                break
            chain.append(current)
            if current == ua.NodeId(ua.ObjectIds.ConditionType):
                found = True
                break
            if current == ua.NodeId(ua.ObjectIds.BaseObjectType):
                break
            try:
                parent = await get_node_supertype(client.get_node(current))
            except Exception:  # a server without a type hierarchy: treat the object as a folder
                parent = None
            current = parent.nodeid if parent is not None else None
        for seen_type in chain:
            cache[seen_type] = found
    return cache[type_id]


async def _is_object_template(client: Client, type_id: ua.NodeId | None, cache: dict[ua.NodeId, bool]) -> bool:
    """An object of a custom ObjectType (outside namespace 0) that declares variables: a faceplate,
    a UDT instance. Folders and base objects (namespace 0 types) are walked as before."""
    if type_id is None or type_id.is_null() or type_id.NamespaceIndex == 0:
        return False
    type_id = ua.NodeId(type_id.Identifier, type_id.NamespaceIndex)  # an ExpandedNodeId compares unequal
    if type_id not in cache:
        try:
            declared = await client.get_node(type_id).get_children(refs=ua.ObjectIds.HasComponent,
                                                                    nodeclassmask=ua.NodeClass.Variable)
        except Exception:  # a type we cannot browse is no template: walk the object as a folder
            declared = []
        cache[type_id] = bool(declared)
    return cache[type_id]


async def _structure_type(client: Client, dtype_id: ua.NodeId | None) -> bool:
    """The DataType is a structure the server describes (a DataTypeDefinition, not a union): what
    the edge maps to a Template (edge_node.opcua.structures reads it again, in full, at connect)."""
    if dtype_id is None or dtype_id.NamespaceIndex == 0:
        return False
    try:
        definition = await client.get_node(dtype_id).read_data_type_definition()
    except Exception:
        return False
    return isinstance(definition, ua.StructureDefinition) and definition.StructureType not in (
        ua.StructureType.Union, ua.StructureType.UnionWithSubtypedValues)


async def _describe(client: Client, node: Any, path: list[str], uris: Sequence[str], *,
                    templates: bool = False) -> BrowsedVariable:
    ids = [ua.AttributeIds.DataType, ua.AttributeIds.ValueRank, ua.AttributeIds.UserAccessLevel,
           ua.AttributeIds.Description]
    values = await node.read_attributes(ids)
    dtype_id = values[0].Value.Value if values[0].StatusCode.is_good() else None
    value_rank = values[1].Value.Value if values[1].StatusCode.is_good() else -1
    access = values[2].Value.Value if values[2].StatusCode.is_good() else 0
    desc = values[3].Value.Value if values[3].StatusCode.is_good() else None
    datatype = await _sparkplug_type(client, dtype_id)
    variable = BrowsedVariable(
        node_id=expanded_node_id(node.nodeid, uris), path=path, datatype=datatype,
        array=value_rank is not None and value_rank > 0,
        writable=bool((access or 0) & ua.AccessLevel.CurrentWrite.mask),
        description=(desc.Text if desc is not None and desc.Text else None))
    if datatype is None and await _structure_type(client, dtype_id):
        variable.structure = True
        if templates:
            variable.datatype = "DataSet" if variable.array else "Template"
            return variable  # a structure has no engineering unit or range
    await _engineering(client, node, variable)
    return variable


async def _sparkplug_type(client: Client, dtype_id: ua.NodeId | None, depth: int = 0) -> str | None:
    """Built-in type of a DataType node, following the subtype chain a few levels (enums → Int32)."""
    if dtype_id is None or depth > 6:
        return None
    if dtype_id.NamespaceIndex == 0 and isinstance(dtype_id.Identifier, int):
        known = OPCUA_TO_SPARKPLUG.get(dtype_id.Identifier)
        if known is not None:
            return known
        if dtype_id.Identifier in (ua.ObjectIds.Structure, ua.ObjectIds.BaseDataType):
            return None
    from asyncua.common.ua_utils import get_node_supertype

    try:
        parent = await get_node_supertype(client.get_node(dtype_id))
    except Exception:  # a server without type hierarchy: give up on this variable
        parent = None
    if parent is None:
        return None
    return await _sparkplug_type(client, parent.nodeid, depth + 1)


async def _engineering(client: Client, node: Any, variable: BrowsedVariable) -> None:
    try:
        props = await node.get_properties()
    except Exception:
        return
    for prop in props:
        try:
            name = (await prop.read_browse_name()).Name
            if name == "EngineeringUnits":
                eu = await prop.read_value()
                text = getattr(getattr(eu, "DisplayName", None), "Text", None)
                variable.unit = text or None
            elif name == "EURange":
                rng = await prop.read_value()
                variable.eng_low, variable.eng_high = float(rng.Low), float(rng.High)
        except Exception as exc:  # a broken property is not worth failing the browse
            log.debug("property of %s unreadable: %s", variable.node_id, exc)


def default_placement() -> Placement:
    """No stack given: every value the server cannot tell is a marked placeholder."""
    return Placement(sparkplug={"brokers": ["mqtt://127.0.0.1:1883"], "primary_host_id": "uns-mes"},
                     placeholders={
        ("line", "enterprise"): "your ISA-95 enterprise",
        ("line", "site"): "your site",
        ("line", "area"): "your area",
        ("line", "line"): "the server's top folder; name the line as the plant does",
        ("sparkplug", "brokers"): "mqtt://user:password@host:port of a broker user with role edge "
                                  "for this line's Sparkplug ids (or browse with --stack; under `uns up -c`, "
                                  "leave the section out and it creates one)",
        ("sparkplug", "primary_host_id"): "the MES adapter's host.host_id (uns init writes uns-mes); "
                                          "the edge births only once that host is online",
    })


def starter_tag_map(result: BrowseResult, endpoint: OpcUaEndpointConfig,
                    placement: Placement | None = None) -> dict[str, Any]:
    """The YAML-ready tag map: tags from the walk, line and Sparkplug sections from ``placement``."""
    placement = placement or default_placement()
    lines = [v.path[0] for v in result.variables if len(v.path) > 1]
    line_name = clean_name(max(set(lines), key=lines.count)) if lines else "Line1"
    tags: list[dict[str, Any]] = []
    used: set[tuple[str | None, str]] = set()
    for var in result.variables:
        parts = [clean_name(p) for p in var.path]
        cell: str | None
        if len(parts) == 1 or (parts[0] == line_name and len(parts) == 2):
            cell, metric_parts = None, parts[-1:]
        elif parts[0] == line_name:
            cell, metric_parts = parts[1], parts[2:]
        else:  # another top-level object (e.g. a Simulation folder): it becomes a cell of its own
            cell, metric_parts = parts[0], parts[1:]
        metric = "/".join(metric_parts)
        base, n = metric, 2
        while (cell, metric) in used:
            metric = f"{base}_{n}"
            n += 1
        used.add((cell, metric))
        entry: dict[str, Any] = {"node_id": var.node_id, "metric": metric}
        if cell is not None:
            entry["cell"] = cell
        entry["datatype"] = var.datatype
        if var.unit:
            entry["unit"] = var.unit
        numeric = var.datatype not in ("Boolean", "String", "DateTime", "UUID", "Template", "DataSet")
        if numeric and var.eng_low is not None and var.eng_high is not None and var.eng_low <= var.eng_high:
            entry["eng_low"], entry["eng_high"] = var.eng_low, var.eng_high
        if var.description:
            entry["description"] = var.description
        if var.writable and var.datatype not in ("Template", "DataSet"):  # scalar writes only (allowlist)
            entry["writable"] = True
        tags.append(entry)
    endpoint_dict = {"name": endpoint.name, "url": endpoint.url,
                     "security_policy": endpoint.security_policy.value,
                     "security_mode": endpoint.security_mode.value}
    if endpoint.secure:
        if endpoint.trust_dir is not None:
            endpoint_dict["trust_dir"] = str(endpoint.trust_dir.resolve())  # the file may live elsewhere
        else:  # browsed without a trust list: say so in the file, where `uns edge check` lets it pass
            endpoint_dict["trust_unknown_server_certificates"] = True
    else:  # browsed over policy None: production refuses it unless the file allows it, visibly
        endpoint_dict["allow_insecure"] = True
    if endpoint.username:
        endpoint_dict["username"] = endpoint.username
        endpoint_dict["password_env"] = endpoint.password_env or "OPCUA_PASSWORD"
    line = placement.line or {"enterprise": "enterprise", "site": "site", "area": "area", "line": line_name}
    return {
        "line": dict(line),
        "sparkplug": dict(placement.sparkplug),
        **placement.extra,
        "security_profile": "production",
        "opcua": [endpoint_dict],
        "tags": tags,
    }


def mark_placeholders(text: str, placeholders: dict[tuple[str, str], str]) -> str:
    """Append ``# PLACEHOLDER: why`` to the YAML lines of ``(section, key)`` (block style, as
    ``yaml.safe_dump`` writes it: ``section:`` then ``  key: value`` or ``  key:`` and ``  - item``)."""
    out: list[str] = []
    section = key = ""
    for line in text.splitlines():
        if line and not line.startswith((" ", "-", "#")):
            section, key = line.split(":", 1)[0], ""
        elif line.startswith("  ") and not line.startswith("   ") and not line.startswith("  - "):
            key = line.strip().split(":", 1)[0]
        why = placeholders.get((section, key))
        value_line = why is not None and (line.startswith("  - ") or not line.rstrip().endswith(":"))
        out.append(f"{line}  # PLACEHOLDER: {why}" if value_line else line)
    return "\n".join(out) + "\n"


def render_tag_map(tag_map: dict[str, Any], result: BrowseResult, url: str,
                   placement: Placement | None = None) -> str:
    placement = placement or default_placement()
    marked = (
        "# Values marked PLACEHOLDER are guesses: replace them before running.\n"
        if placement.placeholders else "")
    header = (
        f"# Starter tag map browsed from {url}\n"
        + (f"# {placement.source}\n" if placement.source else "")
        + marked
        + "# Edit: " + ("the line placement (enterprise/site/area/line), " if placement.line is None else "")
        + "the cells, which tags to keep,\n"
        "# deadbands (e.g. `deadband: 0.5` or `deadband: \"1%\"`), scaling (`scale`/`offset` or `convert`).\n"
        "# Security: `allow_insecure: true` (policy None) or `trust_unknown_server_certificates: true`\n"
        "# below were written because the server was browsed that way; for a plant, use Basic256Sha256\n"
        "# with a trust_dir and remove them (docs/security.md \"OPC UA security\").\n"
        "# Check it with: uns check <this file> (with its stack: uns check <stack config folder>)\n"
    )
    body = mark_placeholders(yaml.safe_dump(tag_map, sort_keys=False, allow_unicode=True, width=120),
                             placement.placeholders)
    footer = ""
    if result.truncated:
        footer += "\n# NOTE: the walk stopped at the variable limit; raise --max-tags to see more.\n"
    if result.skipped:
        footer += "\n# Skipped (not mapped automatically):\n" + "".join(f"#   {s}\n" for s in result.skipped)
    return header + body + footer


async def browse_to_file(endpoint: OpcUaEndpointConfig, out: Path, *, data_dir: Path, max_depth: int = 8,
                         max_variables: int = 5000, filters: BrowseFilter | None = None,
                         placement: Placement | None = None,
                         progress: Callable[[int], None] | None = None) -> BrowseResult:
    """Connect, walk, write ``out``; returns what was found (the CLI prints a summary)."""
    client = await build_client(endpoint, data_dir)
    await client.connect()
    try:
        result = await browse_variables(client, max_depth=max_depth, max_variables=max_variables,
                                        filters=filters, progress=progress)
    finally:
        try:
            await client.disconnect()
        except Exception as exc:
            log.debug("disconnect after browse: %s", exc)
    text = render_tag_map(starter_tag_map(result, endpoint, placement), result, endpoint.url, placement)
    await asyncio.to_thread(_write_text, out, text)
    return result


def _write_text(out: Path, text: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
