"""Tag map config: loads the documented format, and every error names file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge_node.config import (
    ConfigError,
    DeadbandKind,
    SecurityMode,
    SecurityPolicy,
    load_edge_config,
    loads_edge_config,
)
from uns.sparkplug.datatypes import DataType

PLANT = textwrap.dedent("""\
    line: {enterprise: acme, site: plant1, area: packaging, line: line1}
    data_dir: state
    sparkplug:
      brokers: [mqtt://127.0.0.1:1883]
      primary_host_id: mes
    opcua:
      - name: plc1
        url: opc.tcp://10.0.0.5:4840/line1
        security_policy: Basic256Sha256
        security_mode: SignAndEncrypt
        trust_dir: pki/trusted
        username: edge
        password_env: PLC1_PASSWORD
      - {name: plc2, allow_insecure: true,
         url: "opc.tcp://10.0.0.6:4840"}
    tags:
      - node_id: ns=2;s=Line1/Filler/Speed
        metric: Speed
        cell: Filler
        endpoint: plc1
        unit: parts/min
        eng_low: 0
        eng_high: 600
        deadband: "1%"
        sampling_interval_ms: 250
      - node_id: ns=2;s=Line1/Filler/Temp
        metric: Temperature
        cell: Filler
        endpoint: plc1
        datatype: Float
        convert: degF->degC
        unit: degC
        deadband: 0.2
      - node_id: ns=3;i=1001
        metric: State
        endpoint: plc2
        datatype: String
    """)


def write(tmp_path: Path, text: str, name: str = "plant.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    (tmp_path / "pki" / "trusted").mkdir(parents=True, exist_ok=True)  # production: PLANT's trust_dir must exist
    return path


def test_example_plant_yaml_loads(tmp_path: Path) -> None:
    config = load_edge_config(write(tmp_path, PLANT))
    assert config.sparkplug_ids() == ("acme:plant1", "packaging:line1")
    plc1 = config.opcua[0]
    assert plc1.security_policy is SecurityPolicy.BASIC256SHA256
    assert plc1.security_mode is SecurityMode.SIGN_AND_ENCRYPT
    # relative paths are anchored at the config file's directory
    assert plc1.trust_dir == tmp_path / "pki" / "trusted"
    assert config.data_dir == tmp_path / "state"
    speed, temp, state = config.tags
    assert speed.deadband is not None and speed.deadband.kind is DeadbandKind.PERCENT
    assert speed.deadband_abs == pytest.approx(6.0)  # 1 % of 0..600
    assert temp.datatype is DataType.Float and temp.linear[0] == pytest.approx(5 / 9)
    assert config.device_id(speed) == "Filler" and config.device_id(state) is None
    assert [t.metric for t in config.tags_of("plc2")] == ["State"]


def test_password_env_read_at_connect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = load_edge_config(write(tmp_path, PLANT))
    with pytest.raises(ConfigError, match="PLC1_PASSWORD"):
        config.opcua[0].resolved_password()
    monkeypatch.setenv("PLC1_PASSWORD", "s3cret")
    assert config.opcua[0].resolved_password() == "s3cret"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # wrong value type in a tag: file, line of the field, and the field path
        ("    deadband: 0.2\n", "    deadband: lots\n", "plant.yaml:33: tags[1].deadband: "),
        # unknown key (a typo) is an error at its own line
        ("    sampling_interval_ms: 250\n", "    sampling_intervall_ms: 250\n",
         "plant.yaml:25: tags[0].sampling_intervall_ms: unknown field"),
        # bad datatype name
        ("    datatype: String\n", "    datatype: Strng\n", "plant.yaml:37: tags[2].datatype: unknown datatype"),
        # cross-reference: a tag names an endpoint that does not exist
        ("    endpoint: plc2\n", "    endpoint: plc9\n", "plant.yaml:36: tags[2].endpoint: unknown endpoint 'plc9'"),
        # security policy without a mode: reported at the endpoint's mapping
        ("    security_mode: SignAndEncrypt\n", "", "plant.yaml:7: opcua[0]: security_policy and security_mode"),
        # Sparkplug section validated by EdgeSparkplugConfig, still with a line number
        ("  primary_host_id: mes\n", "  primary_host_id: mes\n  publish_interval: 5\n",
         "plant.yaml:6: sparkplug.publish_interval: unknown field"),
        # ISA-95 names may not contain ':'
        ("line: {enterprise: acme, site: plant1, area: packaging, line: line1}\n",
         "line: {enterprise: acme, site: plant1, area: packaging, line: 'line:1'}\n", "plant.yaml:1: line.line: "),
        # malformed NodeId
        ("  - node_id: ns=3;i=1001\n", "  - node_id: ns=x;q=1001\n", "plant.yaml:34: tags[2].node_id: "),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in PLANT
    path = write(tmp_path, PLANT.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_edge_config(path)
    message = str(info.value)
    assert f"{path.parent}/{expected}" in message or expected in message.replace(str(path.parent) + "/", ""), message


def test_missing_required_field_points_at_its_mapping(tmp_path: Path) -> None:
    text = PLANT.replace("    metric: Temperature\n", "")
    with pytest.raises(ConfigError) as info:
        load_edge_config(write(tmp_path, text))
    assert any(issue.endswith("tags[1].metric: Field required") and ":26:" in issue for issue in info.value.issues), \
        info.value.issues


def test_every_problem_is_listed(tmp_path: Path) -> None:
    text = PLANT.replace("deadband: 0.2", "deadband: -1").replace("eng_high: 600", "eng_high: -5")
    with pytest.raises(ConfigError) as info:
        load_edge_config(write(tmp_path, text))
    assert len(info.value.issues) == 2
    assert "tags[0]: eng_low 0.0 is above eng_high -5.0" in str(info.value)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "line: {enterprise: acme\nopcua: [\n")
    with pytest.raises(ConfigError, match=r"plant.yaml:\d+: YAML syntax"):
        load_edge_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_edge_config(tmp_path / "nope.yaml")


def test_cross_field_rules() -> None:
    base = """
line: {enterprise: a, site: b, area: c, line: d}
opcua: [{name: one, url: "opc.tcp://h:1"}, {name: two, url: "opc.tcp://h:2"}]
tags:
"""
    # a cell fed by two servers would die with one and live with the other: refused
    with pytest.raises(ConfigError, match=r"tags\[1\].endpoint: cell 'Filler' already reads endpoint 'one'"):
        loads_edge_config(base + """
  - {node_id: "ns=2;s=a", metric: A, cell: Filler, endpoint: one}
  - {node_id: "ns=2;s=b", metric: B, cell: Filler, endpoint: two}
""")
    with pytest.raises(ConfigError, match=r"tags\[1\].metric: metric 'A' of cell 'X' is already tags\[0\]"):
        loads_edge_config(base + """
  - {node_id: "ns=2;s=a", metric: A, cell: X, endpoint: one}
  - {node_id: "ns=2;s=b", metric: A, cell: X, endpoint: one}
""")
    with pytest.raises(ConfigError, match=r"tags\[0\].endpoint: several endpoints"):
        loads_edge_config(base + '  - {node_id: "ns=2;s=a", metric: A}\n')


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ('{node_id: "i=1", metric: A, datatype: String, scale: 2}', "scaling needs a numeric datatype"),
        ('{node_id: "i=1", metric: A, deadband: "5%"}', "percent deadband needs eng_low and eng_high"),
        ('{node_id: "i=1", metric: A, convert: furlong->m}', "unknown conversion"),
        ('{node_id: "i=1", metric: A, convert: degF->degC, scale: 2}', "either convert or scale"),
        ('{node_id: "i=1", metric: "_meta/x"}', "reserved in the UNS"),
        ('{node_id: "i=1", metric: "a//b"}', "folder names"),
        ('{node_id: "i=1", metric: A, datatype: Bytes}', "not supported for tags"),
        ('{node_id: "i=1", metric: A, datatype: Template, deadband: 0.5}', "a deadband needs a numeric datatype"),
        ('{node_id: "i=1", metric: A, cell: "_x"}', "reserved for UNS data"),
    ],
)
def test_tag_rules(tag: str, message: str) -> None:
    text = f"""line: {{enterprise: a, site: b, area: c, line: d}}
opcua: [{{url: "opc.tcp://h:1"}}]
tags:
  - {tag}
"""
    with pytest.raises(ConfigError, match=message) as info:
        loads_edge_config(text, source="t.yaml")
    assert str(info.value).count("t.yaml:4: tags[0]") >= 1, str(info.value)


def _big_plant(tags: int, bad_index: int | None = None, bad: str = "eng_high: -5") -> str:
    """A tag map above CHILD_PARSE_BYTES (parsed in a child process), optionally one bad tag."""
    lines = [PLANT.split("tags:\n")[0] + "tags:"]
    for i in range(tags):
        lines.append(f"  - node_id: ns=2;s=Line1/Synthetic/Tag{i:05d}\n    metric: Synthetic/Tag{i:05d}\n"
                     f"    cell: Filler\n    endpoint: plc1\n    eng_low: 0\n"
                     f"    {bad if i == bad_index else 'eng_high: 600'}\n    deadband: 0.5")
    return "\n".join(lines) + "\n"


def test_large_tag_map_is_parsed_in_a_child_with_the_same_result(tmp_path: Path) -> None:
    from uns import yaml_marks

    text = _big_plant(3000)
    assert len(text) > yaml_marks.CHILD_PARSE_BYTES
    assert yaml_marks._parse_in_child(text, "x") == yaml_marks._parse_here(text, "x")
    config = load_edge_config(write(tmp_path, text))
    assert len(config.tags) == 3000
    assert config.tags[2999].metric == "Synthetic/Tag02999"


def test_large_tag_map_errors_still_name_the_line(tmp_path: Path) -> None:
    text = _big_plant(3000, bad_index=2998)
    with pytest.raises(ConfigError) as info:
        load_edge_config(write(tmp_path, text))
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "Tag02998" in row and "node_id" in row)
    assert f"plant.yaml:{line}: tags[2998]: eng_low 0.0 is above eng_high -5.0" in str(info.value)
    # a syntax error found by the child is reported like one found here
    broken = _big_plant(3000) + "  - node_id: [unclosed\n"
    with pytest.raises(ConfigError, match=rf"plant.yaml:{len(broken.splitlines()) + 1}: YAML syntax"):
        load_edge_config(write(tmp_path, broken))


def test_tags_share_what_repeats_and_device_ids_follow_the_mapping() -> None:
    """Issue 20 (RSS at 50,000 tags): tags given the same fields share one fields set and one cell /
    endpoint string; nothing a tag says changes, and a copy updates its own set only."""
    from edge_node.config import TagConfig
    from uns.isa95 import EquipmentPath, MappingMode, NamespaceMapping

    config = loads_edge_config(_big_plant(20))
    first, second = config.tags[0], config.tags[1]
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert first.cell is second.cell and first.endpoint is second.endpoint
    alone = TagConfig.model_validate(first.model_dump(exclude_unset=True))
    assert alone == first and alone.model_fields_set == first.model_fields_set
    copy = first.model_copy(update={"unit": "rpm"})
    assert "unit" in copy.model_fields_set and "unit" not in second.model_fields_set
    # the device id is remembered per cell, and a copy with another mapping answers for its own
    assert config.device_id(first) == config.device_id(first) == "Filler"
    gateway = config.model_copy(update={"mapping": NamespaceMapping(mode=MappingMode.GATEWAY, gateway_id="gw")})
    expected = gateway.mapping.to_sparkplug(EquipmentPath(line=gateway.line, cell="Filler")).device_id
    assert gateway.device_id(first) == expected != "Filler"
