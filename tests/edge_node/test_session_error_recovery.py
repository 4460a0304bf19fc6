"""A birth that cannot be encoded, the whole way: `uns sim` (asyncua) → edge node → Mosquitto → a host.

The simulator's ``Filler/SpeedSetpoint`` is a Double with no range; the edge publishes it as a
Float (the tag's ``datatype``). A setpoint of 1e39 does not fit 32 bits, so the edge's DBIRTH
cannot be encoded. Before the ERROR state that exception escaped the session mid-transition;
now the session reports it (SessionFailed), disconnects (no NDEATH: no NBIRTH of that connection
went out), reconnects, and births again with the setpoint null (every metric is still in the
birth, tck-id-topics-nbirth-metric-reqs) and the next bdSeq (tck-id-topics-nbirth-bdseq-increment).
The next setpoint that fits goes out as DDATA, and a real host tracker fed the wire traffic holds
exactly the simulator's values, with no rebirth asked.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from edge_node.app import EdgeNodeApp
from edge_node.config import loads_edge_config
from mes_adapter.host.tracker import EdgeTracker, MetricsChanged, ProtocolViolation, RebirthNeeded
from simulator.config import NAMESPACE_URI, SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.sniffer import Sniffer

from .sparkplug_wire import bd_seq, edge_messages, eventually, kind, payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(90)]

SPEED_SETPOINT = "Line1/Filler/SpeedSetpoint"
TEMPERATURE_SETPOINT = "Line1/Filler/FillTemperatureSetpoint"
RECIPE = "Line1/Recipe"


def plant(broker_port: int, sim: SimulatedLineServer, data_dir: Path) -> str:
    return f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
sparkplug:
  group_id: G
  edge_node_id: E
  brokers: [mqtt://127.0.0.1:{broker_port}]
  publish_interval_ms: 50
  reconnect_min_s: 0.2
  reconnect_max_s: 1.0
  reconnect_jitter: 0.0
  store: {{synchronous: NORMAL}}
opcua:
  - name: sim
    url: {sim.endpoint}
    publishing_interval_ms: 50
    sampling_interval_ms: 0
tags:
  - {{node_id: "nsu={NAMESPACE_URI};s={RECIPE}", metric: Recipe, datatype: String, endpoint: sim}}
  - {{node_id: "nsu={NAMESPACE_URI};s={TEMPERATURE_SETPOINT}", metric: FillTemperatureSetpoint, cell: Filler,
      endpoint: sim}}
  - {{node_id: "nsu={NAMESPACE_URI};s={SPEED_SETPOINT}", metric: SpeedSetpoint, datatype: Float, cell: Filler,
      endpoint: sim}}
"""


@contextlib.asynccontextmanager
async def simulator():  # type: ignore[no-untyped-def]
    sim = SimulatedLineServer(SimulatorConfig(port=free_port()))
    sim.model.write_tag(SPEED_SETPOINT, 1e39)  # fits a Double, not a Float
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def uns_view(tracker: EdgeTracker, sniffer: Sniffer) -> tuple[dict[tuple[str | None, str], object], list[object]]:
    """Feed every edge message to a real host tracker: the value it holds per metric (None for
    null), and the complaints it raised."""
    view: dict[tuple[str | None, str], object] = {}
    complaints: list[object] = []
    for index, message in enumerate(edge_messages(sniffer)):
        for event in tracker.handle(message.topic, message.payload, index):
            if isinstance(event, MetricsChanged):
                for metric in event.metrics:
                    view[(event.device_id, metric.name)] = None if metric.is_null else metric.value
            elif isinstance(event, (RebirthNeeded, ProtocolViolation)):
                complaints.append(event)
    return view, complaints


async def test_a_birth_that_cannot_be_encoded_recovers_and_the_uns_holds_the_simulator_values(
        tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path) as broker, Sniffer(broker.host, broker.port) as sniffer:
        async with simulator() as sim:
            recipe = sim.model.sample(RECIPE).value
            temperature = sim.model.sample(TEMPERATURE_SETPOINT).value
            app = EdgeNodeApp(loads_edge_config(plant(broker.port, sim, tmp_path / "edge")))
            await app.start()
            try:
                await eventually(lambda: [kind(m) for m in edge_messages(sniffer)].count("DBIRTH") == 1,
                                 timeout=30, what="the DBIRTH of the second connection")
                sim.model.write_tag(SPEED_SETPOINT, 1200.0)
                await sim.tick_now()
                await eventually(lambda: any(kind(m) == "DDATA" for m in edge_messages(sniffer)), timeout=15,
                                 what="the DDATA with the new setpoint")
                counters = app.client.session.counters
                assert (counters.session_errors, counters.values_unencodable, counters.nbirths,
                        counters.dbirths) == (1, 1, 2, 1)
                stats = app.client.stats  # what /metrics exports (uns_edge_session_errors, ..._values_unencodable)
                assert (stats.session_errors, stats.values_unencodable, stats.reconnects) == (1, 1, 1)
            finally:
                await app.stop()
    messages = edge_messages(sniffer)
    # the birth sequence that failed never reached the wire (not even its NBIRTH), so no death of
    # bdSeq 0 either (neither ours nor the Will); then the clean second session, and the shutdown's NDEATH
    assert [(kind(m), bd_seq(m) if kind(m) in ("NBIRTH", "NDEATH") else None) for m in messages] == [
        ("NBIRTH", 1), ("DBIRTH", None), ("DDATA", None), ("NDEATH", 1)]
    second = [m for m in messages if kind(m) in ("NBIRTH", "DBIRTH")]
    assert [payload(m).seq for m in second] == [0, 1]  # tck-id-payloads-nbirth-seq, tck-id-payloads-dbirth-seq-inc
    dbirth = {m.name: m for m in payload(second[1]).metrics}
    assert dbirth["SpeedSetpoint"].is_null and dbirth["FillTemperatureSetpoint"].double_value == temperature
    # the host's view right after the recovery: exactly the simulator's values, nothing to complain of
    tracker = EdgeTracker()
    view, complaints = uns_view(tracker, sniffer)
    live = {key: value for key, value in view.items() if key[1] not in ("bdSeq",) and "Node Control" not in key[1]}
    assert live == {(None, "Recipe"): recipe, ("Filler", "FillTemperatureSetpoint"): temperature,
                    ("Filler", "SpeedSetpoint"): 1200.0}
    assert complaints == []
