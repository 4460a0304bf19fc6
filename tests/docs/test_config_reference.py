"""docs/config-reference.md is generated from the pydantic config models and must be current."""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "generate_config_reference.py"
COMMITTED = ROOT / "docs" / "config-reference.md"


@pytest.fixture(autouse=True)
def _no_finalizers_inside_ast_parse() -> Iterator[None]:
    """The generator reads the models' source with ``ast.parse``. On CPython 3.11 a garbage
    collection inside it that runs a finalizer (here: asyncio tasks an earlier test of the same
    worker left pending log "Task was destroyed") raises ``SystemError: AST constructor recursion
    depth mismatch``. Collect first, and keep the collector off while these tests run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "config-reference.md"
    assert _generator().main(["--out", str(fresh)]) == 0
    assert COMMITTED.is_file(), "docs/config-reference.md is missing: run `python docs/generate_config_reference.py`"
    assert fresh.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8"), (
        "docs/config-reference.md is stale (a config model changed): run `python docs/generate_config_reference.py`")


def test_generation_is_deterministic() -> None:
    generator = _generator()
    assert generator.render() == generator.render()


def test_every_config_root_has_a_section() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    for name in ("EdgeConfig", "EdgeSparkplugConfig", "OpcUaEndpointConfig", "TagConfig", "Deadband", "CommandsConfig",
                 "StoreConfig", "BrokerSettings", "Listener", "TlsListener", "RoleConfig", "PasswordFile",
                 "AdapterConfig", "HostConfig", "MesConfig", "LineConfig", "CounterSignal", "StateSignal",
                 "WebhookConfig", "RetryPolicy", "OeeConfig", "ShiftCalendar", "AuthSettings", "TokenEntry",
                 "CommandSettings", "AuditSettings", "Allowlist", "UserRegistry", "SimulatorConfig"):
        assert f"\n### {name}\n" in text, name
