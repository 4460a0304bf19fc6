"""ISA-95 placement ⇄ Sparkplug ids ⇄ UNS topics (README "Wire conventions")."""

from __future__ import annotations

import re

import pytest

from uns.conventions import Quality, metric_quality, status_code_severity
from uns.isa95 import (
    EquipmentPath,
    LinePath,
    MappingMode,
    NamespaceMapping,
    metric_path_levels,
)
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import InvalidIdError
from uns.sparkplug.model import Metric, PropertyValue

LINE = LinePath(enterprise="acme", site="plant1", area="packaging", line="line1")


def test_default_mapping_round_trips() -> None:
    mapping = NamespaceMapping()
    filler = EquipmentPath(line=LINE, cell="filler")
    ids = mapping.to_sparkplug(filler)
    assert (ids.group_id, ids.edge_node_id, ids.device_id) == ("acme:plant1", "packaging:line1", "filler")
    assert mapping.from_sparkplug(ids.group_id, ids.edge_node_id, ids.device_id) == filler
    line_only = mapping.to_sparkplug(EquipmentPath(line=LINE))
    assert line_only.device_id is None


def test_gateway_mapping_round_trips() -> None:
    mapping = NamespaceMapping(mode=MappingMode.GATEWAY, gateway_id="gw01")
    filler = EquipmentPath(line=LINE, cell="filler")
    ids = mapping.to_sparkplug(filler)
    assert (ids.edge_node_id, ids.device_id) == ("gw01", "packaging:line1:filler")
    assert mapping.from_sparkplug(ids.group_id, ids.edge_node_id, ids.device_id) == filler


@pytest.mark.parametrize("bad,char", [("line:1", "':'"), ("line 1", "whitespace"), ("li/ne", "'/'"),
                                      ("l+", "'+'"), ("_line", "'_'")])
def test_isa95_names_are_validated_with_the_bad_character_named(bad: str, char: str) -> None:
    with pytest.raises(ValueError, match=re.escape(char)):
        LinePath(enterprise="acme", site="plant1", area="packaging", line=bad)


def test_mirror_topics() -> None:
    mapping = NamespaceMapping()
    filler = EquipmentPath(line=LINE, cell="filler")
    assert mapping.mirror_topic(filler, "Fill/Temperature") == "acme/plant1/packaging/line1/filler/Fill/Temperature"
    assert mapping.meta_topic(filler, "Speed") == "acme/plant1/packaging/line1/filler/Speed/_meta"
    assert mapping.mirror_topic(EquipmentPath(line=LINE), "State") == "acme/plant1/packaging/line1/State"
    assert mapping.line_topic(LINE, "_context", "batch") == "acme/plant1/packaging/line1/_context/batch"
    assert NamespaceMapping(mirror_root="uns").line_topic(LINE, "_mes") == "uns/acme/plant1/packaging/line1/_mes"
    line, segment, rest = mapping.parse_line_topic("acme/plant1/packaging/line1/_context/batch")
    assert (line, segment, rest) == (LINE, "_context", ["batch"])
    with pytest.raises(ValueError):
        mapping.line_topic(LINE, "_nope")


def test_metric_names_never_escape_into_wildcards_or_reserved_segments() -> None:
    assert metric_path_levels("a//b/") == "a/b"
    assert metric_path_levels("a+b/#") == "a_b/~_"
    assert metric_path_levels("_context/x") == "~_context/x"
    assert metric_path_levels("$SYS") == "~$SYS"
    with pytest.raises(ValueError):
        metric_path_levels("//")


def test_quality_mapping() -> None:
    """Quality property values 0/192/500 (tck-id-payloads-propertyset-quality-value-value)."""
    assert status_code_severity(0) is Quality.GOOD
    assert status_code_severity(0x408F0000) is Quality.UNCERTAIN
    assert status_code_severity(0x80000000) is Quality.BAD
    bad = Metric("t", None, DataType.Double, is_null=True,
                 properties={"Quality": PropertyValue(DataType.Int32, 0),
                             "StatusCode": PropertyValue(DataType.UInt32, 0x808A0000)})
    assert metric_quality(bad) is Quality.BAD
    uncertain = Metric("t", 1.0, DataType.Double,
                       properties={"StatusCode": PropertyValue(DataType.UInt32, 0x40900000)})
    assert metric_quality(uncertain) is Quality.UNCERTAIN
    assert metric_quality(Metric("t", 1.0, DataType.Double)) is Quality.GOOD


def test_invalid_id_error_is_a_value_error() -> None:
    assert issubclass(InvalidIdError, ValueError)
