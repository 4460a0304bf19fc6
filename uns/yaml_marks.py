"""YAML loading that can say where every value came from, so config errors can name a line.

PyYAML's composer keeps a start mark on every node; walking the composed tree records
``path -> line`` where ``path`` is the same tuple pydantic puts in ``ValidationError.loc``
(mapping keys as strings, sequence indexes as ints). A pydantic error is then located at the
longest prefix of its ``loc`` we know, which for a missing field is the mapping that lacks it.

The line table is built only when an error asks for it (and a plain document is built from its
events, see :func:`load_plain`). A 10,000-tag map is a 2.4 MB file whose
node tree (a Mark object per node) cost 8.5 s and left ~110 MB of fragmented heap behind in a
process that must stay under 150 MB. The data alone, parsed by libyaml when PyYAML has it, takes
~1.5 s, but PyYAML composes that node tree anyway and the edge node kept ~75 MB of it as heap
it could not give back. So a large document (over ``CHILD_PARSE_BYTES``) is parsed in a short-lived
child process that hands back only the data (pickled): the garbage dies with the child.
"""

from __future__ import annotations

import inspect
import json
import pickle
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uns.errors import UnsError

Loc = tuple[str | int, ...]


class ConfigError(UnsError, ValueError):
    """A config file is unreadable or invalid; ``str()`` lists every problem as ``file:line: field: msg``.

    ``issues`` are the lines of this file's report (a field naming another file that is invalid is
    one issue, with that file's problems indented under it); ``flat`` is every problem once, each in
    the file where it is, which is what ``uns check`` prints for a whole deployment."""

    def __init__(self, message: str, issues: Sequence[str] = (), flat: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.issues: list[str] = list(issues) or [message]
        self.flat: list[str] = list(flat) if flat is not None else list(self.issues)


#: libyaml's loader when PyYAML was built with it (the wheels are): same results, ~5x faster
_SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class MarkedDocument:
    """The plain Python data of a YAML document, and the line (1-based) of every path in it on demand."""

    data: Any
    text: str | None = None
    source: str = "<string>"
    _lines: dict[Loc, int] | None = field(default=None, repr=False)

    @property
    def lines(self) -> dict[Loc, int]:
        """``path -> line``, composed from ``text`` the first time it is needed."""
        if self._lines is None:
            self._lines = _line_table(self.text) if self.text is not None else {}
        return self._lines

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """Line of the deepest known prefix of ``loc``; pydantic's union/type tags are skipped."""
        best = self.lines.get(())
        prefix: Loc = ()
        for part in loc:
            candidate = (*prefix, part)
            if candidate in self.lines:
                prefix = candidate
                best = self.lines[candidate]
            # parts such as 'function-after[...]' or 'float' are pydantic's, not ours: skip them
        return best

    def where(self, loc: Sequence[Any]) -> str:
        line = self.line_of(loc)
        return f"{self.source}:{line}" if line is not None else self.source


def format_loc(loc: Sequence[Any]) -> str:
    """``('tags', 4, 'deadband')`` -> ``tags[4].deadband``; pydantic-internal parts are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part in _PYDANTIC_TAGS):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


_PYDANTIC_TAGS = frozenset({"float", "int", "str", "bool", "dict", "list", "none", "model"})

#: the one wording for a key a config model does not have (pydantic says "Extra inputs are not permitted")
UNKNOWN_FIELD = "unknown field (typo?)"


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message as every config loader words it."""
    if error.get("type") == "extra_forbidden":
        return UNKNOWN_FIELD
    return str(error["msg"]).removeprefix("Value error, ")


def validation_issues(exc: Any, where: Callable[[Loc], str], prefix: Loc = ()) -> list[str]:
    """``<where>: <field path>: <message>`` for every error of a pydantic ``ValidationError``.

    The one formatter of every config file (edge tag map, adapter, broker, users, signers,
    allowlist): paths in :func:`format_loc` style (``lines[0].metrics[2].max``), unknown keys as
    :data:`UNKNOWN_FIELD`, so CI logs and ``uns check`` read the same whatever the file."""
    out = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        out.append(f"{where(loc)}: {format_loc(loc)}: {error_message(err)}")
    return out


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            child = (*path, key)
            _walk(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def _line_table(text: str) -> dict[Loc, int]:
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return {}  # the text parsed once already; a table is a courtesy, never a second error
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return lines


#: documents larger than this are parsed in a child process (see the module docstring)
CHILD_PARSE_BYTES = 256 * 1024

class _NotPlainError(UnsError):
    """The document uses what :func:`load_plain` leaves to PyYAML's constructor."""


def load_plain(loader: Any) -> Any:
    """The data of the loader's single document, built straight from its events.

    Why: for a 50,000-tag map (12 MB) libyaml parses the events in ~2 s, but PyYAML then composes a
    node per value and constructs from the nodes: ~18 s more (issue 20, births at 50,000 tags).
    Here each scalar is resolved with the loader's own resolver and built by its own constructor,
    once per distinct (text, style): repeated values ("Double", a shared description) are then one
    object, which pickle also sends once. Anchors, aliases, explicit tags, merge keys, non-scalar
    keys and any tag other than str/int/float/bool/null raise :class:`_NotPlainError`, and the caller
    loads the document the usual way (same result, slower)."""
    from yaml import ScalarNode, events

    ok_tags = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
               "tag:yaml.org,2002:null"}
    str_tag = "tag:yaml.org,2002:str"
    cache: dict[tuple[str, Any], Any] = {}
    get = loader.get_event

    def scalar(event: Any) -> Any:
        if event.anchor is not None or event.tag not in (None, "!"):
            raise _NotPlainError
        key = (event.value, event.implicit)
        if key in cache:
            return cache[key]
        tag = loader.resolve(ScalarNode, event.value, event.implicit)
        if tag == str_tag:
            value = event.value
        elif tag in ok_tags:
            value = loader.yaml_constructors[tag](loader, ScalarNode(tag, event.value))
        else:
            raise _NotPlainError
        cache[key] = value
        return value

    def node(event: Any) -> Any:
        kind = type(event)
        if kind is events.ScalarEvent:
            return scalar(event)
        if event.__class__ not in (events.MappingStartEvent, events.SequenceStartEvent) \
                or event.anchor is not None or event.tag not in (None, "!"):
            raise _NotPlainError
        if kind is events.SequenceStartEvent:
            items = []
            while not loader.check_event(events.SequenceEndEvent):
                items.append(node(get()))
            get()
            return items
        mapping: dict[Any, Any] = {}
        while not loader.check_event(events.MappingEndEvent):
            key_event = get()
            if type(key_event) is not events.ScalarEvent:
                raise _NotPlainError
            key = scalar(key_event)
            if key == "<<" and key_event.implicit[0]:  # a merge key
                raise _NotPlainError
            mapping[key] = node(get())
        get()
        return mapping

    get()  # StreamStart
    if loader.check_event(events.StreamEndEvent):
        return None
    get()  # DocumentStart
    data = node(get())
    get()  # DocumentEnd
    if not loader.check_event(events.StreamEndEvent):
        raise _NotPlainError  # a second document: the usual loader says so
    return data


#: the child: YAML text on stdin; pickled data on stdout (exit 0), or a JSON error on stdout (exit 3)
_CHILD = "\n".join([
    "import json, pickle, sys, yaml",
    "from typing import Any",
    "UnsError = Exception  # the child imports nothing of ours",
    inspect.getsource(_NotPlainError),
    inspect.getsource(load_plain),
    """
text = sys.stdin.buffer.read().decode("utf-8")
make = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
try:
    try:
        loader = make(text)
        data = load_plain(loader)
    except _NotPlainError:
        loader = make(text)
        data = loader.get_single_data()
except yaml.MarkedYAMLError as exc:
    mark = exc.problem_mark or exc.context_mark
    json.dump({"line": mark.line + 1 if mark is not None else None,
               "problem": exc.problem or exc.context or "invalid YAML"}, sys.stdout)
    sys.exit(3)
except yaml.YAMLError as exc:
    json.dump({"line": None, "problem": None, "error": str(exc)}, sys.stdout)
    sys.exit(3)
sys.stdout.buffer.write(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
"""])


def _syntax_error(source: str, line: int | None, problem: str) -> ConfigError:
    where = f":{line}" if line is not None else ""
    return ConfigError(f"{source}{where}: YAML syntax: {problem}")


def _parse_here(text: str, source: str) -> Any:
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _syntax_error(source, mark.line + 1 if mark is not None else None,
                            exc.problem or exc.context or "invalid YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML: {exc}") from None
    finally:
        loader.dispose()


def _parse_in_child(text: str, source: str) -> Any:
    """Same result as :func:`_parse_here`. The pickle comes from our own interpreter running the
    safe loader on the user's text, so it holds only plain YAML types."""
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=text.encode("utf-8"),
                              capture_output=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return _parse_here(text, source)  # no child possible here: slower and bigger, still correct
    if done.returncode == 0:
        return pickle.loads(done.stdout)  # produced by our own child, see the docstring
    if done.returncode == 3:
        error = json.loads(done.stdout)
        if error.get("problem") is not None:
            raise _syntax_error(source, error.get("line"), error["problem"])
        raise ConfigError(f"{source}: YAML: {error.get('error')}")
    return _parse_here(text, source)  # the child failed for its own reasons (e.g. out of memory)


def load_marked_yaml(text: str, source: str = "<string>") -> MarkedDocument:
    """Parse one YAML document (safe loader); syntax errors name the line, other errors can ask
    :attr:`MarkedDocument.lines` for it."""
    parse = _parse_in_child if len(text) > CHILD_PARSE_BYTES else _parse_here
    return MarkedDocument(data=parse(text, source), text=text, source=source)


def load_marked_file(path: Path) -> MarkedDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_marked_yaml(text, source=str(path))
