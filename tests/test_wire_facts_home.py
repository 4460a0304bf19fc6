"""Every Sparkplug wire fact lives in ``uns/sparkplug`` (issue 14): no other module imports the
generated protobuf code or spells a ``spBv1.0`` topic itself.

Services get topics from :mod:`uns.sparkplug.topic` (builders and filters), the rebirth request
from :mod:`uns.sparkplug.control` and lenient looks into payloads from :mod:`uns.sparkplug.peek`.
The check reads the sources with :mod:`ast`: imports, and string constants (f-string parts
included) that are not docstrings. Tests and bench scripts may use the protobuf code directly.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "uns" / "sparkplug"
PB = "sparkplug_b_pb2"
NAMESPACE = "spBv1.0"

#: (path relative to the package root's parent, with any top-level package stripped, e.g.
#: "cli/host.py"; the exact constant) -> why it may stay. Text a user reads, not a topic built.
ALLOWED_TEXT: dict[tuple[str, str], str] = {
    ("cli/host.py", "Sparkplug host id (STATE on spBv1.0/STATE/<id>)"): "--help text",
    ("cli/up.py", "/#   Sparkplug spBv1.0/#"): "the start-up summary a user reads",
}



def _service_modules() -> Iterator[Path]:
    for package in sorted(p.parent for p in ROOT.glob("*/__init__.py")):
        if package.name in ("tests", "bench", "docs", "proto", "scripts"):
            continue
        for path in sorted(package.rglob("*.py")):
            if path.is_relative_to(HOME) or ".venv" in path.parts:
                continue
            yield path


def _docstrings(tree: ast.AST) -> set[int]:
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _pb_imports(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[-1] == PB for alias in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and (
                (node.module or "").split(".")[-1] == PB or any(alias.name == PB for alias in node.names)):
            lines.append(node.lineno)
    return lines


def _namespace_strings(tree: ast.AST) -> list[tuple[int, str]]:
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and NAMESPACE in node.value]


def _short(path: Path) -> str:
    """``uns/cli/host.py`` and ``unshub/cli/host.py`` both become ``cli/host.py``."""
    return "/".join(path.relative_to(ROOT).parts[1:])


def _violations() -> list[str]:
    found = []
    for path in _service_modules():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [f"{rel}:{line}: imports {PB} (use uns.sparkplug.codec/decode/peek)" for line in _pb_imports(tree)]
        found += [f"{rel}:{line}: spells {text!r} (use uns.sparkplug.topic)" for line, text in _namespace_strings(tree)
                  if (_short(path), text) not in ALLOWED_TEXT]
    return found


def test_no_service_imports_the_protobuf_code_or_spells_a_sparkplug_topic() -> None:
    assert _violations() == []


def test_the_check_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The scanner itself: an import and a hand-built topic are found, a docstring is not."""
    source = ('"""Topics are spBv1.0/<group>/... (a docstring may say so)."""\n'
              "from uns.sparkplug import sparkplug_b_pb2 as pb\n"
              "import uns.sparkplug.sparkplug_b_pb2\n"
              "def f(g, e):\n"
              '    """spBv1.0/g/NDATA/e in a docstring is fine."""\n'
              '    return f"spBv1.0/{g}/DCMD/{e}/"\n')
    tree = ast.parse(source)
    assert _pb_imports(tree) == [2, 3]
    assert _namespace_strings(tree) == [(6, "spBv1.0/")]
