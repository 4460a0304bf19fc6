"""The REST handlers see the adapter only through :class:`mes_adapter.service_api.ServiceApi`.

Read from the source (no app is started): a module under ``mes_adapter/api/`` must not reach two
levels into the service (``svc.context.batch_window``, ``svc.config.mes.line``, ...), must not flush
ingest itself (record queries of :class:`ServiceApi` catch up first, read-your-writes), and must not
import :class:`AdapterService` — except ``api/app.py``, which builds the app around it.
A failure names the file, line and what it reached.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "mes_adapter" / "api"
#: the one module that composes the app around the running service
COMPOSES = frozenset({"app.py"})
#: what the handlers call the service
SERVICE_NAMES = frozenset({"svc"})


def reaches(source: str, filename: str) -> list[str]:
    """Each way ``source`` goes around the narrow interface, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id in SERVICE_NAMES):
            found.append(f"{filename}:{node.lineno}: reaches {node.value.value.id}.{node.value.attr}.{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "ingest":
            found.append(f"{filename}:{node.lineno}: touches ingest (ServiceApi's record queries flush it)")
        elif Path(filename).name not in COMPOSES and isinstance(node, ast.ImportFrom) \
                and node.module == "mes_adapter.service":
            found.append(f"{filename}:{node.lineno}: imports mes_adapter.service (use ServiceApi)")
        elif Path(filename).name not in COMPOSES and isinstance(node, ast.Import) \
                and any(alias.name == "mes_adapter.service" for alias in node.names):
            found.append(f"{filename}:{node.lineno}: imports mes_adapter.service (use ServiceApi)")
    return sorted(found)


def test_no_handler_reaches_into_the_service() -> None:
    modules = sorted(API.rglob("*.py"))
    assert len(modules) > 10  # the routers are there to be checked
    found = [hit for path in modules for hit in reaches(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize(("source", "expected"), [
    ("def f(svc):\n    return svc.context.batch_window('l', 'b')\n",
     ["mes_adapter/api/x.py:2: reaches svc.context.batch_window"]),
    ("def f(svc):\n    svc.config.mes.line('l')\n",
     ["mes_adapter/api/x.py:2: reaches svc.config.mes"]),
    ("def f(api):\n    api._svc.ingest.flush()\n",
     ["mes_adapter/api/x.py:2: touches ingest (ServiceApi's record queries flush it)"]),
    ("from mes_adapter.service import AdapterService\n",
     ["mes_adapter/api/x.py:1: imports mes_adapter.service (use ServiceApi)"]),
    ("import mes_adapter.service\n",
     ["mes_adapter/api/x.py:1: imports mes_adapter.service (use ServiceApi)"]),
    ("def f(svc):\n    return svc.batch_window('l', 'b'), svc.lines()\n", []),
])
def test_the_check_sees_each_way_around(source: str, expected: list[str]) -> None:
    assert reaches(source, "mes_adapter/api/x.py") == expected


def test_the_app_module_may_compose_the_service() -> None:
    assert reaches("from mes_adapter.service import AdapterService\n", "mes_adapter/api/app.py") == []
