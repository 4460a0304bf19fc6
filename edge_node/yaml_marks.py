"""YAML loading that remembers where every value came from, so config errors can name a line.

PyYAML's composer keeps a start mark on every node; we walk the composed tree once and record
``path -> line`` where ``path`` is the same tuple pydantic puts in ``ValidationError.loc``
(mapping keys as strings, sequence indexes as ints). A pydantic error is then located at the
longest prefix of its ``loc`` we know, which for a missing field is the mapping that lacks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


class ConfigError(ValueError):
    """A config file is unreadable or invalid; ``str()`` lists every problem as ``file:line: field: msg``."""

    def __init__(self, message: str, issues: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.issues: list[str] = list(issues) or [message]


@dataclass
class MarkedDocument:
    """The plain Python data of a YAML document plus the line (1-based) of every path in it."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    source: str = "<string>"

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


def load_marked_yaml(text: str, source: str = "<string>") -> MarkedDocument:
    """Parse one YAML document (safe loader) and keep line numbers; syntax errors name the line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return MarkedDocument(data=None, source=source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{source}{line}: YAML syntax: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Loc, int] = {}
    _walk(node, (), lines)
    return MarkedDocument(data=data, lines=lines, source=source)


def load_marked_file(path: Path) -> MarkedDocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return load_marked_yaml(text, source=str(path))
