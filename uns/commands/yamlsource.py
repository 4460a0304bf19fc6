"""A YAML config file whose errors name ``file:line`` and field, for the allowlist, the adapter
config, users, the broker config and the signer registry.

A pydantic error says ``lines.0.metrics.3.max: Input should be a valid number``; an engineer
editing a 400-line allowlist needs ``allowlist.yaml:57: lines[0].metrics[3].max: ...``. Parsing,
the path → line table and the wording of a problem are :mod:`uns.yaml_marks` (shared with the
edge node's tag map, which also needs them to stay cheap for 10,000-tag files); this class adds
the one-line-per-problem error these files report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from uns.yaml_marks import ConfigError, Loc, MarkedDocument, load_marked_file, load_marked_yaml, validation_issues


class YamlSource:
    """Parsed YAML data plus a path → line table (composed only when an error needs it)."""

    def __init__(self, document: MarkedDocument) -> None:
        self._document = document
        self.name = document.source
        self.data: Any = document.data

    @classmethod
    def parse(cls, text: str, name: str) -> YamlSource:
        return cls(load_marked_yaml(text, name))

    @classmethod
    def read(cls, path: Path) -> YamlSource:
        return cls(load_marked_file(path))

    @property
    def lines(self) -> dict[Loc, int]:
        return self._document.lines

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of ``loc`` (pydantic adds union tags we skip)."""
        return self._document.line_of(loc)

    def where(self, loc: Sequence[str | int]) -> str:
        line = self.line_of(loc)
        return self.name if line is None else f"{self.name}:{line}"

    def error(self, exc: ValidationError) -> ConfigError:
        """One ConfigError listing every pydantic error with its ``file:line`` and field path."""
        messages = problems(exc, self.where)
        return ConfigError("\n".join(messages), messages)


def problems(exc: ValidationError, where: Callable[[Loc], str]) -> list[str]:
    """``<where>: <field.path>: <message>`` per pydantic error (:func:`uns.yaml_marks.validation_issues`)."""
    return validation_issues(exc, where)


__all__ = ["ConfigError", "YamlSource", "problems"]
