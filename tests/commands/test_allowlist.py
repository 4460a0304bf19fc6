"""Loading the allowlist: a valid file loads; every mistake names file:line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from uns.commands.allowlist import Allowlist, ConfigError, StateSource
from uns.sparkplug.datatypes import DataType

from .conftest import ALLOWLIST_YAML, EDGE, GROUP


def test_loads_and_finds_rules(tmp_path: Path) -> None:
    path = tmp_path / "allowlist.yaml"
    path.write_text(ALLOWLIST_YAML)
    allowlist = Allowlist.load(path)
    assert allowlist.version == "2025-01-15.1"
    line, rule = allowlist.find(GROUP, EDGE, "filler", "Filler/SpeedSetpoint")  # type: ignore[misc]
    assert line.rule_id(rule) == "packaging:line1/filler/Filler/SpeedSetpoint"
    assert rule.wire_type is DataType.Double and rule.write is not None
    _, method = allowlist.find(GROUP, EDGE, None, "Batch/Start")  # type: ignore[misc]
    assert method.wire_type is DataType.String
    assert [a.name for a in method.call.args] == ["order", "product", "quantity"]
    assert allowlist.find(GROUP, EDGE, "capper", "Filler/SpeedSetpoint") is None


def test_packml_state_names() -> None:
    source = StateSource(metric="Status/StateCurrent", names="packml")
    assert source.name_of(6) == "Execute" and source.name_of(4) == "Idle"
    assert source.name_of(99) is None and source.name_of("Held") == "Held" and source.name_of(True) is None


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        Allowlist.from_yaml(text, "al.yaml")
    return str(info.value)


def _rule(extra: str) -> str:
    return ('version: "1"\nlines:\n  - group_id: g\n    edge_node_id: e\n    metrics:\n'
            '      - metric: M\n' + extra)


def test_bad_datatype_names_line_and_field() -> None:
    message = _error(_rule('        datatype: Int33\n        write: {node_id: "ns=2;i=1"}\n'))
    assert message.startswith("al.yaml:6: lines[0].metrics[0]: ") and "Int33" in message


def test_wrong_field_type_points_at_its_line() -> None:
    message = _error(_rule('        datatype: Double\n        max: lots\n        write: {node_id: "ns=2;i=1"}\n'))
    assert message.startswith("al.yaml:8: lines[0].metrics[0].max:")


def test_unknown_key_is_refused() -> None:
    message = _error(_rule('        datatype: Double\n        maximum: 5\n        write: {node_id: "x"}\n'))
    assert "al.yaml:8: lines[0].metrics[0].maximum: unknown field (typo?)" in message


@pytest.mark.parametrize(("extra", "needle"), [
    ('        datatype: Double\n        min: 5\n        max: 1\n        write: {node_id: "x"}\n', "greater than max"),
    ("        datatype: Double\n", "exactly one of 'write'"),
    ('        datatype: String\n        min: 1\n        write: {node_id: "x"}\n', "apply to numbers"),
    ('        datatype: Int8\n        enum: [1, 300]\n        write: {node_id: "x"}\n', "does not fit Int8"),
    ('        datatype: Double\n        allowed_states: []\n        write: {node_id: "x"}\n',
     "allowed_states is empty"),
    ('        datatype: Double\n        call: {object_node_id: o, method_node_id: m}\n', "call.args"),
    ('        datatype: UUID\n        write: {node_id: "x"}\n', "not writable"),
])
def test_rule_consistency(extra: str, needle: str) -> None:
    assert needle in _error(_rule(extra))


def test_duplicate_target_names_both_places() -> None:
    text = _rule('        datatype: Double\n        write: {node_id: "x"}\n'
                 '      - metric: M\n        datatype: Int32\n        write: {node_id: "y"}\n')
    message = _error(text)
    assert message.startswith("al.yaml:9: lines[0].metrics[1]:") and "already allowlisted at al.yaml:6" in message


def test_states_need_a_state_source() -> None:
    message = _error(_rule('        datatype: Double\n        allowed_states: [Idle]\n        write: {node_id: "x"}\n'))
    assert message.startswith("al.yaml:8:") and "no state source" in message


def test_yaml_syntax_error_has_line() -> None:
    assert _error('version: "1"\nlines: [\n  - x: 1\n').startswith("al.yaml:3: YAML syntax")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Allowlist.load(tmp_path / "nope.yaml")
