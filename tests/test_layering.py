"""The package layering, read from the source: the core knows no service, services know only the core.

The rules (README "Architecture"):

* ``uns`` (the core) imports no other project package;
* ``historian`` (a storage library) imports ``uns`` only; services may use it;
* the services ``edge_node``, ``broker``, ``mes_adapter`` and ``simulator`` import ``uns`` only:
  never each other, never ``unshub``;
* ``unshub`` (the composition root: the ``uns`` CLI, ``uns up``'s supervisor, the command client,
  the simulated-line defaults) is the only package that imports the services.

Every import counts, wherever it stands: module level, inside a function (the CLI imports services
lazily), under ``if TYPE_CHECKING:``, relative imports (resolved), and ``importlib.import_module`` /
``__import__`` with a literal name. A failure names the module, its file and line, and what it imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE = "uns"
LIBRARIES = frozenset({"historian"})
SERVICES = frozenset({"edge_node", "broker", "mes_adapter", "simulator"})
COMPOSITION_ROOT = "unshub"
#: what each project package may import besides itself
ALLOWED: dict[str, frozenset[str]] = {
    CORE: frozenset(),
    **{library: frozenset({CORE}) for library in LIBRARIES},
    **{service: frozenset({CORE, *LIBRARIES}) for service in SERVICES},
    COMPOSITION_ROOT: frozenset({CORE, *LIBRARIES, *SERVICES}),
}
#: top-level folders with Python that are not packages of the product (tests may import anything)
NOT_PRODUCT = frozenset({"tests", "bench", "docs", "scripts", "proto", "build", "dist"})


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: Path  # its file, relative to the root
    line: int
    target: str  # the imported module, dotted and absolute

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.target}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """``from ..x import y`` inside ``module`` -> the absolute ``pkg.x`` (as the interpreter does)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _literal_import_call(node: ast.Call) -> str | None:
    """The module name of ``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")``."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
        return str(first.values[0].value)  # f"unshub.cli.{name}": the literal head names the package
    return None


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every import in one file, wherever it stands (ast.walk visits function bodies and if-blocks)."""
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(root)
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, rel, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                      else node.module or "")
            found.append(Import(module, rel, node.lineno, target))
        elif isinstance(node, ast.Call) and (target := _literal_import_call(node)):
            found.append(Import(module, rel, node.lineno, target))
    return found


def product_packages(root: Path) -> list[str]:
    """Top-level folders of the product with an ``__init__.py`` (a new one must be given a layer)."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py")
                  if p.parent.name not in NOT_PRODUCT and not p.parent.name.startswith("."))


def violations(root: Path, allowed: dict[str, frozenset[str]] = ALLOWED) -> list[str]:
    project = set(allowed)
    out: list[str] = []
    for package, may_import in sorted(allowed.items()):
        for path in sorted((root / package).rglob("*.py")):
            for imp in imports_of(path, root):
                top = imp.target.split(".")[0]
                if top in project and top != package and top not in may_import:
                    rule = ("the core imports no other project package" if package == CORE
                            else f"{package} may import only {', '.join(sorted(may_import))}")
                    out.append(f"{imp} ({rule})")
    return out


def test_every_product_package_has_a_layer() -> None:
    assert product_packages(ROOT) == sorted(ALLOWED), (
        "a top-level package without a layer: add it to ALLOWED in tests/test_layering.py (and to the "
        "README's Architecture table)")


def test_core_imports_no_service_and_services_import_only_the_core() -> None:
    found = violations(ROOT)
    assert found == [], "layering broken:\n" + "\n".join(found)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small source tree with one violation of each kind the checker must see."""
    for package in ALLOWED:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "uns/lazy.py", "def f():\n    from edge_node.app import run\n    return run\n")
    _write(tmp_path, "uns/typing_only.py",
           "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import mes_adapter.api.app\n")
    _write(tmp_path, "uns/dynamic.py", "import importlib\n\nimportlib.import_module('unshub.cli.main')\n")
    _write(tmp_path, "uns/fine.py", "from uns.isa95 import LinePath\nfrom . import isa95\nimport json\n")
    _write(tmp_path, "broker/peer.py", "import os\n\n\nclass A:\n    def m(self):\n        import simulator.config\n")
    _write(tmp_path, "simulator/up.py", "from unshub.supervisor import PortInUseError\n")
    _write(tmp_path, "edge_node/sub/__init__.py", "")
    _write(tmp_path, "edge_node/sub/rel.py", "from ..config import EdgeConfig\nfrom uns.aio import x\n")
    _write(tmp_path, "historian/bad.py", "from mes_adapter.records import RecordStore\nfrom uns.isa95 import x\n")
    _write(tmp_path, "mes_adapter/hist.py", "from historian import SqliteHistorian\n")
    _write(tmp_path, "unshub/cli.py", "import broker.server\nimport edge_node.app\nfrom simulator import server\n")
    return tmp_path


def test_the_checker_names_module_and_line_of_every_kind_of_import(tree: Path) -> None:
    assert violations(tree) == [
        "broker/peer.py:6: broker.peer imports simulator.config (broker may import only historian, uns)",
        "historian/bad.py:1: historian.bad imports mes_adapter.records (historian may import only uns)",
        "simulator/up.py:1: simulator.up imports unshub.supervisor (simulator may import only historian, uns)",
        "uns/dynamic.py:3: uns.dynamic imports unshub.cli.main (the core imports no other project package)",
        "uns/lazy.py:2: uns.lazy imports edge_node.app (the core imports no other project package)",
        "uns/typing_only.py:4: uns.typing_only imports mes_adapter.api.app (the core imports no other project package)",
    ]


def test_relative_imports_resolve_inside_their_package(tree: Path) -> None:
    rel = imports_of(tree / "edge_node/sub/rel.py", tree)
    assert [(i.line, i.target) for i in rel] == [(1, "edge_node.config"), (2, "uns.aio")]
    init = imports_of(tree / "uns/fine.py", tree)
    assert [i.target for i in init] == ["uns.isa95", "uns", "json"]


def test_an_unlayered_package_is_reported(tree: Path) -> None:
    _write(tree, "newpkg/__init__.py", "")
    assert product_packages(tree) == sorted([*ALLOWED, "newpkg"])
