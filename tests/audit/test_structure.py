"""uns.audit has no import cycle: each module imports alone, and the module graph is acyclic.

Why: the writer (chain) runs the verifier on open; they used to import each other at run time.
The shared definitions now live in uns.audit.schema and uns.audit.errors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import uns.audit

PACKAGE = Path(uns.audit.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def audit_imports(module: str) -> set[str]:
    """The uns.audit modules ``module`` imports, at any depth of its code (run-time imports too)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                names = [base] if base else [a.name for a in node.names]
            elif base.startswith("uns.audit"):
                names = [base.removeprefix("uns.audit").lstrip(".")] or [a.name for a in node.names]
                if names == [""]:
                    names = [a.name for a in node.names]
            else:
                continue
            found.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("uns.audit."))
    return found & set(MODULES)


def test_the_audit_module_graph_has_no_cycle() -> None:
    graph = {m: audit_imports(m) for m in MODULES}
    assert "verify" in graph["chain"] and "chain" not in graph["verify"]
    assert graph["schema"] <= {"canonical", "record"} and graph["errors"] == set()
    visiting: list[str] = []
    done: set[str] = set()

    def visit(m: str) -> None:
        assert m not in visiting, f"import cycle in uns.audit: {' -> '.join([*visiting[visiting.index(m):], m])}"
        if m in done:
            return
        visiting.append(m)
        for dep in sorted(graph[m]):
            visit(dep)
        visiting.pop()
        done.add(m)

    for m in MODULES:
        visit(m)


@pytest.mark.parametrize("module", MODULES)
def test_each_audit_module_imports_alone(module: str) -> None:
    run = subprocess.run([sys.executable, "-c", f"import uns.audit.{module}"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr


def test_no_code_outside_uns_audit_names_the_audit_tables() -> None:
    """Services read the audit log through uns.audit.query; the tables are uns.audit's contract
    (tests may still reach into the file: they play the attacker)."""
    root = PACKAGE.parents[1]
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".venv", "tests", "node_modules", "build") or rel.parts[:2] == ("uns", "audit"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        offenders += [f"{rel}: {table}" for table in ("audit_record", "audit_checkpoint", "audit_meta")
                      if table in text]
    assert offenders == []
