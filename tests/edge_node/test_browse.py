"""`uns edge browse` writes a starter tag map that loads; the simulator's default config works."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from edge_node.config import OpcUaEndpointConfig, load_edge_config
from edge_node.opcua.browse import browse_to_file, clean_name
from edge_node.opcua.source import OpcUaSource
from tests.edge_node.opcua_test_server import NAMESPACE, TestOpcUaServer
from tests.edge_node.recording_sink import RecordingSink
from tests.support.loop_thread import served_in_thread
from tests.support.net import free_port
from unshub.simulated_line import simulator_config, simulator_config_yaml

pytestmark = pytest.mark.timeout(60)


async def test_browse_writes_a_tag_map_that_loads(tmp_path: Path) -> None:
    async with TestOpcUaServer() as server:
        out = tmp_path / "tagmap.yaml"
        result = await browse_to_file(OpcUaEndpointConfig(url=server.url), out, data_dir=tmp_path)
        assert len(result.variables) == 6
        config = load_edge_config(out)
        by_key = {(t.cell, t.metric): t for t in config.tags}
        assert set(by_key) == {(None, "State"), ("Filler", "Speed"), ("Filler", "GoodCount"),
                               ("Filler", "Temperature"), ("Capper", "Speed"), ("Capper", "Running")}
        assert by_key[("Filler", "GoodCount")].datatype.name == "UInt32"
        assert by_key[("Capper", "Running")].datatype.name == "Boolean"
        # the namespace URI, not its index: a server may renumber indexes, never URIs
        assert by_key[("Filler", "Speed")].node_id == f"nsu={NAMESPACE};s=Line1/Filler/Speed"
        assert config.line.line == "Line1" and config.opcua[0].url == server.url
        assert out.read_text().startswith("# Starter tag map browsed from")


def test_clean_name() -> None:
    assert clean_name("Motor 1: Speed") == "Motor_1_Speed"
    assert clean_name("_hidden") == "hidden"
    assert clean_name("$sys") == "sys"


@pytest.fixture
def server_in_thread() -> Iterator[TestOpcUaServer]:
    """A server on its own event loop thread, so the CLI can run asyncio.run() in the test's thread."""
    server = TestOpcUaServer()
    with served_in_thread(server, timeout=15):
        yield server


def test_cli_browse_then_check(server_in_thread: TestOpcUaServer, tmp_path: Path) -> None:
    from unshub.cli.main import app

    runner = CliRunner()
    out = tmp_path / "tagmap.yaml"
    result = runner.invoke(app, ["edge", "browse", server_in_thread.url, "--out", str(out),
                                 "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "6 tag(s)" in result.output
    again = runner.invoke(app, ["edge", "browse", server_in_thread.url, "--out", str(out)])
    assert again.exit_code == 2  # never overwrites an edited map by accident
    check = runner.invoke(app, ["edge", "check", "--config", str(out)])
    assert check.exit_code == 0, check.output
    assert "devices: Capper, Filler" in check.output


def test_cli_reports_config_errors_with_line(tmp_path: Path) -> None:
    from unshub.cli.main import app

    path = tmp_path / "plant.yaml"
    path.write_text("line: {enterprise: a, site: b, area: c, line: d}\nopcua: [{url: 'http://x'}]\ntags: []\n")
    result = CliRunner().invoke(app, ["edge", "--config", str(path)])
    assert result.exit_code == 2
    assert "plant.yaml:2: opcua[0].url" in result.output and "plant.yaml:3: tags" in result.output


def test_cli_unreachable_server_is_a_clean_error(tmp_path: Path) -> None:
    from unshub.cli.main import app

    result = CliRunner().invoke(app, ["edge", "browse", f"opc.tcp://127.0.0.1:{free_port()}",
                                      "--out", str(tmp_path / "t.yaml"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "cannot browse" in result.output


async def test_simulator_default_config_and_browse(tmp_path: Path) -> None:
    simulator_server = pytest.importorskip("simulator.server")
    from simulator.catalog import tag_catalog
    from simulator.config import SimulatorConfig

    sim_config = SimulatorConfig(port=free_port())
    catalog = [t.model_dump() for t in tag_catalog(sim_config)]
    async with simulator_server.SimulatedLineServer(sim_config) as sim:
        # the default config, built from the catalog as plain dicts (edge_node never imports simulator)
        text = simulator_config_yaml(sim.endpoint, "mqtt://127.0.0.1:1883", tmp_path / "edge", catalog)
        (tmp_path / "plant.yaml").write_text(text)
        config = load_edge_config(tmp_path / "plant.yaml")
        assert config == simulator_config(sim.endpoint, "mqtt://127.0.0.1:1883", tmp_path / "edge", catalog)
        devices = {config.device_id(t) for t in config.tags}
        assert devices == {None, "Filler", "Capper", "Labeler"}
        sink = RecordingSink()
        source = OpcUaSource(config.opcua[0], [(t, config.device_id(t)) for t in config.tags], sink,
                             data_dir=tmp_path)
        task = asyncio.create_task(source.run())
        try:
            await asyncio.wait_for(source.connected.wait(), 15)
            online = {e.device_id: e for k, e in sink.events if k == "online"}
            assert set(online) == {"Filler", "Capper", "Labeler"}
            filler = {u.name: u for u in online["Filler"].current}
            assert {"GoodCount", "Speed", "Temperature", "State"} <= set(filler)
            assert not any(u.is_null for u in filler.values())
            assert source.stats.unknown_nodes == 0
            assert [u.value for u in sink.current("State")]  # a line-level metric, read at connect
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        # browsing the simulator gives a map that loads (cells from the folder layout)
        out = tmp_path / "browsed.yaml"
        result = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), out, data_dir=tmp_path)
        browsed = load_edge_config(out)
        assert {t.cell for t in browsed.tags} >= {"Filler", "Capper", "Labeler"}
        raw = yaml.safe_load(out.read_text())
        assert raw["line"]["line"] == sim_config.line
        assert result.variables


def test_placeholders_are_marked_on_their_own_lines() -> None:
    from edge_node.opcua.browse import BrowsedVariable, BrowseResult, default_placement, render_tag_map, starter_tag_map

    result = BrowseResult(variables=[BrowsedVariable("nsu=urn:x;s=L/C/T", ["L", "C", "T"], "Double", False, False)])
    placement = default_placement()
    text = render_tag_map(starter_tag_map(result, OpcUaEndpointConfig(url="opc.tcp://127.0.0.1:4840"), placement),
                          result, "opc.tcp://127.0.0.1:4840", placement)
    marked = {line.split("#")[0].strip() for line in text.splitlines() if "# PLACEHOLDER: " in line}
    assert marked == {"enterprise: enterprise", "site: site", "area: area", "line: L",
                      "- mqtt://127.0.0.1:1883", "primary_host_id: uns-mes"}
    assert yaml.safe_load(text)["tags"] == [{"node_id": "nsu=urn:x;s=L/C/T", "metric": "T", "cell": "C",
                                             "datatype": "Double"}]


async def test_browsing_the_simulator_maps_units_ranges_and_leaves_out_oracle_and_conditions(tmp_path: Path) -> None:
    """Issue 17: `nsu=` ids, units and ranges from EngineeringUnits/EURange, the test oracle
    (``Simulation/*``) and alarm conditions left out and listed, include/exclude patterns."""
    from edge_node.opcua.browse import BrowseFilter
    from simulator.catalog import tag_catalog
    from simulator.config import NAMESPACE_URI, SimulatorConfig
    from simulator.server import SimulatedLineServer

    sim_config = SimulatorConfig(port=free_port())
    catalog = {spec.path: spec for spec in tag_catalog(sim_config, include_truth=True)}
    async with SimulatedLineServer(sim_config) as sim:
        out = tmp_path / "browsed.yaml"
        result = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), out, data_dir=tmp_path)
        raw = yaml.safe_load(out.read_text())
        by_path = {tag["node_id"].split(";s=", 1)[1].replace(".", "/"): tag for tag in raw["tags"]}
        assert all(tag["node_id"].startswith(f"nsu={NAMESPACE_URI};s=") for tag in raw["tags"])
        served = {path: spec for path, spec in catalog.items() if spec.group in ("line", "cell")}
        assert set(served) <= set(by_path)
        for path, spec in served.items():  # every catalog tag with the simulator's unit and range
            tag = by_path[path]
            assert (tag.get("unit"), tag.get("eng_low"), tag.get("eng_high")) == (
                spec.unit, spec.eu_low, spec.eu_high), path
            assert tag["datatype"] == spec.datatype and tag.get("writable", False) == spec.writable, path
        assert not [p for p in by_path if p.startswith("Simulation")]
        assert "Simulation: excluded (pattern 'Simulation')" in result.skipped
        conditions = sorted(s for s in result.skipped if "alarm condition" in s)
        assert conditions == sorted(f"Line1/{cell.name}/{name}: alarm condition (map it under `alarms:`)"
                                    for cell in sim_config.cells
                                    for name in ("TemperatureAlarm", "Jam", "DoorOpen", "EStop"))
        assert not [p for p in by_path if "Alarm" in p or "/Jam/" in p]

        oracle = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), tmp_path / "all.yaml", data_dir=tmp_path,
                                      filters=BrowseFilter(exclude=()))
        truth = sorted(v.path[-1] for v in oracle.variables if v.path[0] == "Simulation")
        assert truth == sorted(spec.name for spec in catalog.values() if spec.group == "truth")

        only = await browse_to_file(OpcUaEndpointConfig(url=sim.endpoint), tmp_path / "filler.yaml",
                                    data_dir=tmp_path, filters=BrowseFilter(include=["Line1/Filler/*"],
                                                                            exclude=["Simulation", "*/Faceplate"]))
        assert sorted(v.path[-1] for v in only.variables) == sorted(
            spec.name for spec in catalog.values() if spec.cell == "Filler")
        # not matched: every other mapped variable but the 3 excluded faceplates' 4, plus the 5 unmappable
        # ones outside Filler (ActiveRecipe, QualityResults, CellCounters, Capper/Status, Labeler/Status)
        # never described
        assert only.not_included == len(result.variables) - len(only.variables) - 3 * 4 + 5
