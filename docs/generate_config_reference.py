"""Generate ``docs/config-reference.md`` from the pydantic config models.

    python docs/generate_config_reference.py            # rewrite docs/config-reference.md
    python docs/generate_config_reference.py --out F    # write somewhere else (the staleness test)

The models are the contract; this script only walks them. For every model reachable from the
roots in :data:`FILES` it writes one section with a table of its fields: name, type (with
constraints), default (or *required*) and description. A description comes from
``Field(description=...)``; failing that, from ``#:`` comment lines directly above the field in
its source file (found with :mod:`ast`); failing that, from :data:`SUPPLEMENT`. The class
docstring heads each section. Nested models are linked.

The output is deterministic: sections are sorted by source file, then by position in the file;
nothing depends on the clock, the machine or the working directory.
"""

from __future__ import annotations

import argparse
import ast
import enum
import inspect
import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "config-reference.md"


@dataclass(frozen=True)
class ConfigFile:
    """One configuration file (or CLI-built config) and the model it is validated against."""

    name: str
    model: str  # "module:Class"
    loaded_by: str


#: The configuration files of uns-hub, in the order the reference lists them.
FILES: tuple[ConfigFile, ...] = (
    ConfigFile("plant.yaml (edge node)", "edge_node.config:EdgeConfig",
               "`uns edge run -c plant.yaml`, `uns edge check -c plant.yaml`, `uns up -c plant.yaml`"),
    ConfigFile("plant.yaml `sparkplug:` section", "edge_node.sparkplug_config:EdgeSparkplugConfig",
               "embedded in the edge node config; `group_id`/`edge_node_id` default from `line` + `mapping`"),
    ConfigFile("broker.yaml (embedded broker)", "broker.config:BrokerSettings",
               "`uns broker run -c broker.yaml`, `uns broker check -c broker.yaml`; "
               "command-line options override the file"),
    ConfigFile("users.yaml (broker users)", "broker.passwords:PasswordFile",
               "`password_file` of broker.yaml; written by `uns broker passwd`"),
    ConfigFile("adapter.yaml (MES adapter)", "mes_adapter.config.application:AdapterConfig",
               "`uns adapter run -c adapter.yaml`, `uns adapter check -c adapter.yaml`, "
               "`uns up --adapter-config adapter.yaml`"),
    ConfigFile("tokens file (API tokens)", "mes_adapter.auth:TokenFile",
               "`auth.tokens_file` of adapter.yaml; appended to by `uns adapter token --tokens-file`"),
    ConfigFile("allowlist.yaml (command allowlist)", "uns.commands.allowlist:Allowlist",
               "`commands.allowlist` of plant.yaml and of adapter.yaml; `uns cmd new/check --allowlist`"),
    ConfigFile("signers.yaml (signer registry)", "uns.commands.signing:UserRegistry",
               "`commands.users` of plant.yaml, `commands.signers` of adapter.yaml; entries from `uns cmd keygen`"),
    ConfigFile("simulator (no file)", "simulator.config:SimulatorConfig",
               "built from the options of `uns sim run` (and by `uns up`); no YAML file"),
)

#: Fields whose type is a plain mapping but whose content is validated by another model.
EXTRA_LINKS: dict[tuple[str, str], str] = {
    ("edge_node.config:EdgeConfig", "sparkplug"): "edge_node.sparkplug_config:EdgeSparkplugConfig",
}

#: Descriptions for fields defined outside the config-model files (their sources are not edited
#: for documentation); used only when the field has neither ``description=`` nor a ``#:`` comment.
SUPPLEMENT: dict[tuple[str, str], str] = {
    ("broker.passwords:UserRecord", "role"): "edge, host, explorer, admin, or a role from broker.yaml `roles`",
    ("broker.passwords:PasswordFile", "users"): "user name -> record",
    ("mes_adapter.auth:TokenEntry", "user_id"): "user id; the same id signs commands in the signer registry",
    ("mes_adapter.auth:TokenEntry", "full_name"): "printed name",
    ("mes_adapter.auth:TokenEntry", "role"): "each role includes the ones before it in this list",
    ("mes_adapter.auth:TokenEntry", "token"): "plain token (demo stacks), at least 8 characters",
    ("mes_adapter.auth:TokenEntry", "token_sha256"): "SHA-256 hex of the token (what `uns adapter token` stores)",
    ("mes_adapter.auth:TokenFile", "tokens"): "API users",
    ("uns.commands.signing:RegisteredUser", "full_name"): "printed name, part of every signature",
    ("uns.commands.signing:RegisteredUser", "public_key"): "Ed25519 public key, as written by `uns cmd keygen`",
    ("uns.commands.signing:UserRegistry", "users"): "user id -> registered signer",
    ("uns.isa95:LinePath", "enterprise"): "ISA-95 enterprise; no `/ + # :`, whitespace, leading `_` or `$`",
    ("uns.isa95:LinePath", "site"): "ISA-95 site (same rules)",
    ("uns.isa95:LinePath", "area"): "ISA-95 area (same rules)",
    ("uns.isa95:LinePath", "line"): "ISA-95 line (same rules)",
    ("uns.isa95:NamespaceMapping", "mode"): "line-per-edge-node: edge_node_id = <area>:<line>, device = cell; "
                                            "gateway: edge_node_id = gateway_id, device = <area>:<line>[:<cell>]",
    ("uns.isa95:NamespaceMapping", "gateway_id"): "the fixed edge_node_id in gateway mode",
    ("mes_adapter.oee.shifts:ShiftDefinition", "days"): "weekdays, 0 = Monday .. 6 = Sunday",
    ("mes_adapter.oee.shifts:ShiftDefinition", "end"): "local time; an end not after start ends the next day",
    ("mes_adapter.oee.shifts:PlannedBreak", "days"): "weekdays, 0 = Monday .. 6 = Sunday",
    ("mes_adapter.oee.shifts:PlannedBreak", "end"): "local time; an end not after start ends the next day",
    ("mes_adapter.oee.shifts:PlannedDowntime", "start_ms"): "UTC, milliseconds since the epoch",
    ("mes_adapter.oee.shifts:PlannedDowntime", "end_ms"): "UTC, milliseconds since the epoch",
    ("mes_adapter.oee.shifts:PlannedDowntime", "line"): "`<enterprise>/<site>/<area>/<line>`; None = all lines",
    ("mes_adapter.oee.shifts:ShiftCalendar", "timezone"): "IANA time zone of the plant (Europe/Dublin)",
}

_MAX_DEFAULT = 100


# ------------------------------------------------------------------------------------ discovery


def _import(ref: str) -> type[BaseModel]:
    module_name, _, name = ref.partition(":")
    module = __import__(module_name, fromlist=[name])
    model = getattr(module, name)
    assert isinstance(model, type) and issubclass(model, BaseModel), ref
    return model


def _ref(model: type) -> str:
    return f"{model.__module__}:{model.__qualname__}"


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    """Every BaseModel class that appears in a type annotation, in order of appearance."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        found.extend(_nested_models(arg))
    return found


def collect_models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    pending = [_import(f.model) for f in FILES]
    while pending:
        model = pending.pop(0)
        if _ref(model) in seen:
            continue
        seen[_ref(model)] = model
        for name, field in model.model_fields.items():
            pending.extend(_nested_models(field.annotation))
            extra = EXTRA_LINKS.get((_ref(model), name))
            if extra:
                pending.append(_import(extra))
    return list(seen.values())


def _source_file(model: type) -> Path:
    return Path(inspect.getsourcefile(model) or "").resolve()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _line(model: type) -> int:
    return inspect.getsourcelines(model)[1]


# ------------------------------------------------------------------------------ #: comments


_COMMENTS: dict[Path, dict[tuple[str, str], str]] = {}


def _field_comments(path: Path) -> dict[tuple[str, str], str]:
    """``(class name, field name) -> text`` of the ``#:`` lines right above each annotated field."""
    if path not in _COMMENTS:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        found: dict[tuple[str, str], str] = {}
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    parts: list[str] = []
                    i = stmt.lineno - 2  # the line above, 0-based
                    while i >= 0 and lines[i].strip().startswith("#:"):
                        parts.insert(0, lines[i].strip()[2:].strip())
                        i -= 1
                    if parts:
                        found[(node.name, stmt.target.id)] = " ".join(parts)
        _COMMENTS[path] = found
    return _COMMENTS[path]


def _defining_class(model: type[BaseModel], field: str) -> type:
    for klass in model.__mro__:
        if field in inspect.get_annotations(klass):
            return klass
    return model


def field_description(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    owner = _defining_class(model, name)
    comment = _field_comments(_source_file(owner)).get((owner.__name__, name), "")
    return comment or SUPPLEMENT.get((_ref(owner), name), "")


# ----------------------------------------------------------------------------------- rendering


def _rst_to_md(text: str) -> str:
    text = re.sub(r":(?:class|mod|func|meth|data|attr):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _cell(text: str) -> str:
    return " ".join(_rst_to_md(text).split()).replace("|", "\\|")


class Renderer:
    def __init__(self, models: list[type[BaseModel]]) -> None:
        self.anchors = {_ref(m): self._anchor(m) for m in models}
        if len(set(self.anchors.values())) != len(self.anchors):
            raise SystemExit("two models share an anchor; make _anchor more specific")

    @staticmethod
    def _anchor(model: type) -> str:
        return f"{model.__module__}.{model.__qualname__}".lower().replace(".", "-").replace("_", "-")

    def link(self, model: type) -> str:
        return f"[{model.__name__}](#{self.anchors[_ref(model)]})"

    def type_of(self, tp: Any) -> str:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is type(None):
            return "null"
        if tp is Any:
            return "any"
        if origin is typing.Literal:
            return " \\| ".join(json.dumps(a) for a in args)
        if origin in (typing.Union, types.UnionType):
            return " \\| ".join(self.type_of(a) for a in args)
        if origin is typing.Annotated:
            return self.type_of(args[0])
        if origin in (list, tuple, set, frozenset, dict) or origin is not None:
            if origin is tuple and args and args[-1] is not Ellipsis:
                return "[" + ", ".join(self.type_of(a) for a in args) + "]"
            if origin is dict:
                return f"map of {self.type_of(args[0])} → {self.type_of(args[1])}"
            inner = self.type_of(args[0]) if args else "any"
            return f"list of {inner}" if origin in (list, tuple) else f"set of {inner}"
        if isinstance(tp, type):
            if issubclass(tp, BaseModel):
                return self.link(tp)
            if issubclass(tp, enum.Enum):
                members = list(tp)
                if len(members) > 8:
                    return f"{tp.__name__} (name)"
                if issubclass(tp, enum.IntEnum):  # parsed by (lower-case) name, e.g. mes_adapter.auth.Role
                    return " \\| ".join(json.dumps(m.name.lower()) for m in members)
                return " \\| ".join(json.dumps(m.value) for m in members)
            if issubclass(tp, SecretStr):
                return "string (secret)"
            if issubclass(tp, Path):
                return "path"
            if tp is time:
                return "time (HH:MM)"
            return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
                tp.__name__, tp.__name__)
        return str(tp)

    @staticmethod
    def constraints(info: FieldInfo) -> list[str]:
        out: list[str] = []
        for meta in info.metadata:
            for attr, label in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="),
                                ("min_length", "min length"), ("max_length", "max length"),
                                ("pattern", "pattern")):
                value = getattr(meta, attr, None)
                if value is not None:
                    out.append(f"{label} `{value}`" if attr == "pattern" else f"{label} {_num(value)}")
        return out

    def default_of(self, info: FieldInfo) -> str:
        if info.is_required():
            return "**required**"
        if info.default_factory is not None:
            value = info.default_factory()  # type: ignore[call-arg]
            factory = info.default_factory.__name__
        elif info.default is PydanticUndefined:
            return ""
        else:
            value, factory = info.default, ""
        if isinstance(value, BaseModel):
            return "defaults of " + self.link(type(value))
        text = _json(value)
        if len(text) > _MAX_DEFAULT and factory and factory != "<lambda>":
            return f"`{factory}()`"
        return f"`{text}`"


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.IntEnum):
        return value.name  # int enums are written by name in the YAML files (DataType, Role)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, frozenset | set):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return value


def _json(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, str) and plain:
        return plain
    return json.dumps(plain, ensure_ascii=False)


def render() -> str:
    models = collect_models()
    r = Renderer(models)
    out: list[str] = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/generate_config_reference.py from the pydantic models. Do not edit by hand;",
        "     run `python docs/generate_config_reference.py` (tests/docs checks that this file is current). -->",
        "",
        "Every configuration of uns-hub is a pydantic model. Unknown keys are errors where the model says",
        "`extra=\"forbid\"` (marked *strict* below). YAML files are validated against these models, and",
        "the loaders report problems as `file:line: field: message`. Relative paths in plant.yaml and",
        "adapter.yaml are relative to the file's directory.",
        "",
        "## Files",
        "",
        "| file | model | read by |",
        "|---|---|---|",
    ]
    for f in FILES:
        model = _import(f.model)
        out.append(f"| {_cell(f.name)} | {r.link(model)} | {_cell(f.loaded_by)} |")
    out.append("")

    by_file: dict[str, list[type[BaseModel]]] = {}
    for model in models:
        by_file.setdefault(_rel(_source_file(model)), []).append(model)
    for path in sorted(by_file):
        out += [f"## `{path}`", ""]
        for model in sorted(by_file[path], key=_line):
            out += section(r, model)
    return "\n".join(out).rstrip("\n") + "\n"


def section(r: Renderer, model: type[BaseModel]) -> list[str]:
    ref = _ref(model)
    strict = model.model_config.get("extra") == "forbid"
    lines = [f'<a id="{r.anchors[ref]}"></a>', "",
             f"### {model.__name__}", "",
             f"`{model.__module__}.{model.__qualname__}`" + (" · *strict*" if strict else ""), ""]
    doc = model.__dict__.get("__doc__")
    if doc:
        lines += [_rst_to_md(inspect.cleandoc(doc)), ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        tp = r.type_of(info.annotation)
        bounds = r.constraints(info)
        if bounds:
            tp += "; " + ", ".join(bounds)
        desc = field_description(model, name, info)
        extra = EXTRA_LINKS.get((ref, name))
        if extra:
            desc = (desc + "; " if desc else "") + "see " + r.link(_import(extra))
        lines.append(f"| `{info.alias or name}` | {tp} | {r.default_of(info)} | {_cell(desc)} |")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write")
    args = parser.parse_args(argv)
    text = render()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if __name__ == "__main__":
    raise SystemExit(main())
