"""The real Sparkplug edge client satisfies the protocols its users declare.

The command executor and the app reach the client only through
:class:`edge_node.commands.edge_client.EdgeClient` and :class:`edge_node.app.SparkplugClient`
(no ``Any``, no ``hasattr``). ``isinstance`` on a ``runtime_checkable`` protocol only asks
whether the names exist, so this also compares each member's signature and whether it is a
coroutine function: a renamed parameter, a new required one, or a sync/async change in
:class:`edge_node.mqtt_client.SparkplugEdgeClient` fails here rather than at the first command.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from edge_node.app import FirstBirthGate, SparkplugClient
from edge_node.commands.edge_client import EdgeClient, ResultPublisher
from edge_node.model import MetricDefinition
from edge_node.mqtt_client import SparkplugEdgeClient
from edge_node.sparkplug_config import EdgeSparkplugConfig
from tests.edge_node.recording_sink import RecordingSink
from uns.sparkplug.datatypes import DataType


def _real_client(tmp_path: Path) -> SparkplugEdgeClient:
    config = EdgeSparkplugConfig.model_validate(
        {"brokers": ["mqtt://127.0.0.1:1"], "group_id": "G", "edge_node_id": "E"})
    return SparkplugEdgeClient(config, [MetricDefinition(device_id=None, name="m", datatype=DataType.Int32)],
                               tmp_path)


def _members(protocol: type) -> list[str]:
    """The protocol's own methods and properties (what a client must provide), bases included."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names |= {n for n, v in vars(klass).items()
                  if not n.startswith("_abc") and (inspect.isfunction(v) or isinstance(v, property))
                  and n not in ("__init__", "__subclasshook__", "__class_getitem__", "__init_subclass__")}
    return sorted(names)


def _accepts(real: inspect.Signature, declared: inspect.Signature) -> list[str]:
    """Why a call written against ``declared`` would not bind to ``real`` (empty: it binds)."""
    problems: list[str] = []
    real_params = [p for p in real.parameters.values() if p.name != "self"]
    real_by_name = {p.name: p for p in real_params}
    has_var_positional = any(p.kind is p.VAR_POSITIONAL for p in real_params)
    for param in (p for p in declared.parameters.values() if p.name != "self"):
        if param.kind is param.VAR_POSITIONAL:
            if not has_var_positional:
                problems.append("no *args")
            continue
        other = real_by_name.get(param.name)
        if other is None:
            problems.append(f"no parameter {param.name!r}")
        elif other.kind is not param.kind:
            problems.append(f"{param.name!r} is {other.kind.description}, declared {param.kind.description}")
        elif param.default is not param.empty and other.default != param.default:
            problems.append(f"{param.name!r} defaults to {other.default!r}, declared {param.default!r}")
    declared_names = set(declared.parameters)
    for other in real_params:
        if other.name not in declared_names and other.default is other.empty and other.kind not in (
                other.VAR_POSITIONAL, other.VAR_KEYWORD):
            problems.append(f"extra required parameter {other.name!r}")
    return problems


@pytest.mark.parametrize("protocol", [ResultPublisher, EdgeClient, FirstBirthGate, SparkplugClient],
                         ids=lambda p: p.__name__)
def test_the_real_client_satisfies_the_protocol(protocol: type, tmp_path: Path) -> None:
    client = _real_client(tmp_path)
    if getattr(protocol, "_is_runtime_protocol", False):
        assert isinstance(client, protocol)
    mismatches: dict[str, list[str]] = {}
    for name in _members(protocol):
        declared = inspect.getattr_static(protocol, name)
        real = inspect.getattr_static(SparkplugEdgeClient, name, None)
        if isinstance(declared, property):
            if not isinstance(real, property):
                mismatches[name] = [f"is {type(real).__name__}, declared a property"]
            continue
        if real is None or not callable(real):
            mismatches[name] = ["missing"]
            continue
        problems = _accepts(inspect.signature(real), inspect.signature(declared))
        if inspect.iscoroutinefunction(real) != inspect.iscoroutinefunction(declared):
            problems.append("async in one, sync in the other")
        if problems:
            mismatches[name] = problems
    assert mismatches == {}
    assert _members(protocol)  # the check above looked at something


def test_a_telemetry_only_client_takes_no_commands() -> None:
    """The app starts no executor (and holds no first birth) for a client that is only a sink."""
    sink = RecordingSink()
    assert not isinstance(sink, EdgeClient)
    assert not isinstance(sink, FirstBirthGate)
