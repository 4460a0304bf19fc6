"""Load YAML and remember where every value came from, so config errors name ``file:line`` and field.

A pydantic error says ``lines.0.metrics.3.max: Input should be a valid number``; an engineer
editing a 400-line allowlist needs ``allowlist.yaml:57``. We compose the YAML node tree once,
record the line of every mapping value and sequence item by its path, and map an error location
to the deepest path we know.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


class ConfigError(ValueError):
    """A config file is unreadable or invalid; the message starts with ``file:line:``."""


class YamlSource:
    """Parsed YAML data plus a path → line table."""

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        try:
            self.data: Any = yaml.safe_load(text)
            root = yaml.compose(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{name}:{mark.line + 1}" if mark is not None else name
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}: not valid YAML: {problem}") from None
        self.lines: dict[Loc, int] = {}
        if root is not None:
            self._walk(root, ())

    @classmethod
    def read(cls, path: Path) -> YamlSource:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
        return cls(text, str(path))

    def _walk(self, node: yaml.Node, loc: Loc) -> None:
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self._walk(value_node, (*loc, key))
                self.lines[(*loc, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*loc, index))

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of ``loc`` (pydantic adds union tags we skip)."""
        known = tuple(loc)
        while known:
            line = self.lines.get(known)
            if line is not None:
                return line
            known = known[:-1]
        return self.lines.get(())

    def where(self, loc: Sequence[str | int]) -> str:
        line = self.line_of(loc)
        return self.name if line is None else f"{self.name}:{line}"

    def error(self, exc: ValidationError) -> ConfigError:
        """One ConfigError listing every pydantic error with its ``file:line`` and field path."""
        messages = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(part) for part in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            messages.append(f"{self.where(loc)}: {field}: {msg}")
        return ConfigError("\n".join(messages))


__all__ = ["ConfigError", "YamlSource"]
