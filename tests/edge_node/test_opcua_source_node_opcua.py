"""Interop: our OPC UA source reads a foreign server, node-opcua (tests/interop/node-opcua/server.js).

Why: asyncua on both ends could hide a shared misunderstanding of the protocol. node-opcua also
implements the Percent deadband on AnalogItems (EURange), which asyncua's server does not.
Skipped only when Node.js is missing; the npm packages are installed by scripts/test.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_node.config import loads_edge_config
from edge_node.opcua.source import OpcUaSource
from tests.edge_node.recording_sink import RecordingSink
from tests.support.net import free_port
from tests.support.procs import REPO, stop_process

pytestmark = [pytest.mark.node, pytest.mark.timeout(90)]

SERVER_DIR = REPO / "tests" / "interop" / "node-opcua"


@pytest.fixture
def node_opcua_server(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    if not (SERVER_DIR / "node_modules" / "node-opcua-server").exists():
        pytest.fail("tests/interop/node-opcua/node_modules is missing: run scripts/test (npm install)")
    port = free_port()
    log_path = tmp_path / "node-opcua.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([node, "server.js", str(port), str(tmp_path / "pki")], cwd=SERVER_DIR,
                                stdout=subprocess.PIPE, stderr=log)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            line = b""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if line.startswith(b"READY") or not line:
                    break
            if not line.startswith(b"READY"):
                pytest.fail(f"node-opcua server did not start: {line!r} {log_path.read_text()[-2000:]}")
            _, url, ns_index, ns_uri = line.decode().split()
            yield url, int(ns_index), ns_uri
        finally:
            stop_process(proc)


async def test_edge_source_reads_node_opcua(node_opcua_server: tuple[str, int, str], tmp_path: Path) -> None:
    url, ns_index, ns_uri = node_opcua_server
    config = loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
opcua:
  - url: {url}
    keepalive_interval_s: 0.5
    publishing_interval_ms: 100
tags:
  - {{node_id: "ns={ns_index};s=Line1/State", metric: State, datatype: String}}
  - {{node_id: "nsu={ns_uri};s=Line1/Filler/Count", metric: Count, cell: Filler, datatype: UInt32}}
  - {{node_id: "ns={ns_index};s=Line1/Filler/Temperature", metric: Temperature, cell: Filler,
      eng_low: 0, eng_high: 200, deadband: "2%"}}
""")
    sink = RecordingSink()
    source = OpcUaSource(config.opcua[0], [(t, config.device_id(t)) for t in config.tags], sink, data_dir=tmp_path)
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.connected.wait(), 20)
        online = [e for k, e in sink.events if k == "online"]
        assert [e.device_id for e in online] == ["Filler"]
        born = {u.name: u for u in online[0].current}
        assert isinstance(born["Count"].value, int) and not born["Count"].is_null
        assert [u.value for u in sink.current("State")] == ["Execute"]
        # node-opcua accepts the Percent deadband on its AnalogItem (asyncua's server would not)
        assert source.stats.server_deadband_refused == 0 and source.stats.monitored_items == 3
        counts = await sink.wait_for(lambda: (c := sink.data("Count", "Filler")) and len(c) >= 3 and c)
        values = [u.value for u in counts]
        assert values == sorted(values) and all(u.timestamp > 0 for u in counts)
        temps = await sink.wait_for(lambda: (t := sink.data("Temperature", "Filler")) and len(t) >= 2 and t)
        steps = [abs(b.value - a.value) for a, b in zip(temps, temps[1:], strict=False)]
        assert all(step > 4.0 for step in steps), steps  # 2 % of 0..200 = 4: nothing smaller gets through
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_browse_reads_a_foreign_servers_eurange_and_namespace_uri(
        node_opcua_server: tuple[str, int, str], tmp_path: Path) -> None:
    """Issue 17: the starter map of a foreign server has `nsu=` ids of its own namespace URI and the
    range of its AnalogItem (node-opcua's addAnalogDataItem, EURange 0..200)."""
    from edge_node.config import OpcUaEndpointConfig, load_edge_config
    from edge_node.opcua.browse import browse_to_file

    url, _, ns_uri = node_opcua_server
    out = tmp_path / "browsed.yaml"
    await browse_to_file(OpcUaEndpointConfig(url=url), out, data_dir=tmp_path / "data")
    tags = {(tag.cell, tag.metric): tag for tag in load_edge_config(out).tags}
    assert set(tags) == {(None, "State"), ("Filler", "Count"), ("Filler", "Temperature")}
    temperature = tags[("Filler", "Temperature")]
    assert (temperature.node_id, temperature.datatype.name, temperature.eng_low, temperature.eng_high) == (
        f"nsu={ns_uri};s=Line1/Filler/Temperature", "Double", 0.0, 200.0)
    count = tags[("Filler", "Count")]
    assert (count.node_id, count.datatype.name, count.eng_low, count.eng_high, count.unit) == (
        f"nsu={ns_uri};s=Line1/Filler/Count", "UInt32", None, None, None)
