"""Condition alarms end to end: `SimulatedLineServer` (asyncua) → edge node → Mosquitto → MES adapter → REST.

The simulator raises a real limit alarm (``SetDisturbance``: a cooling failure drives the Filler
above setpoint + 5 °C, then + 10 °C) and a Jam (``RaiseAlarm``); the edge relays each event as the
``Alarms/<Name>/...`` metric group; the adapter journals every change with the batch and phase
running at source time, publishes it retained on ``<line>/_alarms/<cell>/_conditions/<Name>``
(``kind: condition``) and lists it on ``/api/alarms``. Every EventId asserted is the simulator's
own; the journal's count per condition equals the simulator's truth counter for it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_node.app import EdgeNodeApp
from edge_node.config import loads_edge_config
from simulator.client import boolean, call_simulation, double, string
from simulator.config import NAMESPACE_URI, CellConfig, SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.adapter.conftest import eventually, serve
from tests.adapter.setup import auth, write_files
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.net import free_port

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(180)]

LINE = "acme/plant1/packaging/line1"
TOPIC_ROOT = f"{LINE}/_alarms"


def plant(broker_port: int, sim: SimulatedLineServer, data_dir: Path) -> str:
    return f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
sparkplug:
  group_id: "acme:plant1"
  edge_node_id: "packaging:line1"
  brokers: [mqtt://127.0.0.1:{broker_port}]
  publish_interval_ms: 50
  reconnect_min_s: 1.0
  reconnect_max_s: 2.0
  reconnect_jitter: 0.0
  store: {{synchronous: NORMAL}}
opcua:
  - name: sim
    url: {sim.endpoint}
    publishing_interval_ms: 50
    keepalive_interval_s: 0.5
    reconnect_min_s: 0.5
    reconnect_max_s: 1.0
    alarms:
      conditions:
        - {{cell: Filler, name: TemperatureAlarm}}
        - {{cell: Filler, name: Jam}}
tags:
  - {{node_id: "nsu={NAMESPACE_URI};s=Line1/Filler/Temperature", metric: Temperature, cell: Filler}}
"""


def sim_config() -> SimulatorConfig:
    # no sensor noise, short lag: the temperature crosses each limit once
    return SimulatorConfig(port=free_port(), tick_s=0.05, seed=3, cells=[
        CellConfig(name="Filler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=0.5)])


class Retained:
    """Subscribes to ``<line>/_alarms/#`` and keeps the last message per topic (retained included)."""

    def __init__(self, broker: BrokerEndpoint) -> None:
        self.last: dict[str, dict] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"alarms-reader-{free_port()}")
        self.client.on_connect = lambda c, *_: (c.subscribe(f"{TOPIC_ROOT}/#", 1), self._ready.set())
        self.client.on_message = lambda c, u, m: self.last.__setitem__(m.topic, json.loads(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def condition(sim: SimulatedLineServer, name: str):  # type: ignore[no-untyped-def]
    """The simulator's own condition object (its event count and last EventId are the truth)."""
    return sim.model.alarms.condition(f"Line1/Filler/{name}")


async def test_limit_alarm_and_jam_are_journaled_with_the_batch_and_retained_on_alarms(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path) as broker:
        sim = SimulatedLineServer(sim_config())
        await sim.start()
        edge = EdgeNodeApp(loads_edge_config(plant(broker.port, sim, tmp_path / "edge")))
        files = write_files(tmp_path, broker.url, free_port())
        reader = Retained(broker)
        try:
            async with serve(files, broker) as adapter:
                client = adapter.client
                started = await client.post(f"/api/lines/{LINE}/batch/start", json={"batch_id": "B-7"},
                                            headers=auth("operator"))
                assert started.status_code == 201
                phase = await client.post(f"/api/lines/{LINE}/batch/phase", json={"phase": "filling"},
                                          headers=auth("operator"))
                assert phase.status_code == 200
                await edge.start()
                topic_t = f"{TOPIC_ROOT}/Filler/_conditions/TemperatureAlarm"
                topic_j = f"{TOPIC_ROOT}/Filler/_conditions/Jam"
                # the births state both conditions as never raised
                born = await eventually(lambda: _async(reader.last.get(topic_j)), timeout=30)
                assert (born["kind"], born["active"], born["acked"], born["confirmed"], born["retain"],
                        born["severity"], born["stale"]) == ("condition", False, True, True, False, 0, False)

                await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(15.0))
                high_high = await eventually(
                    lambda: _async((m := reader.last.get(topic_t)) and m["state"] == "HighHigh" and m), timeout=30)
                assert (high_high["active"], high_high["acked"], high_high["severity"], high_high["line"],
                        high_high["cell"], high_high["batch_id"], high_high["phase"]) == (
                    True, False, 800, LINE, "Filler", "B-7", "filling")
                assert high_high["condition_id"] == f"ns={sim.namespace_index};s=Line1/Filler/TemperatureAlarm"
                assert high_high["event_id"] == condition(sim, "TemperatureAlarm").last_event.event_id.hex()
                assert high_high["source_ts_ms"] <= high_high["received_ms"]

                await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(True))
                jam = await eventually(lambda: _async((m := reader.last.get(topic_j)) and m["active"] and m))
                assert (jam["severity"], jam["batch_id"], jam["phase"], jam["acked"]) == (600, "B-7", "filling", False)
                await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("Jam"), boolean(False))
                cleared = await eventually(lambda: _async((m := reader.last.get(topic_j)) and not m["active"] and m))
                # cleared but not acknowledged: still retained on the server, so still listed as an alarm
                assert (cleared["retain"], cleared["acked"]) == (True, False)
                assert cleared["event_id"] != jam["event_id"]

                active = (await client.get("/api/alarms", params={"line": LINE}, headers=auth("viewer"))).json()
                assert sorted((a["condition"], a["active"], a["state"]) for a in active) == [
                    ("Jam", False, ""), ("TemperatureAlarm", True, "HighHigh")]
                history = (await client.get("/api/alarms/history", params={"batch_id": "B-7", "condition": "Jam"},
                                            headers=auth("viewer"))).json()
                # the birth's "never raised" statement is the first row (no EventId), then one row per event
                assert [(h["active"], h["event_id"]) for h in history] == [
                    (False, ""), (True, jam["event_id"]), (False, cleared["event_id"])]
                temperature = (await client.get("/api/alarms/history", params={
                    "line": LINE, "phase": "filling", "condition": "TemperatureAlarm"},
                    headers=auth("viewer"))).json()
                assert [h["state"] for h in temperature] == ["", "High", "HighHigh"]
                # every raised event of the batch is journaled once: the simulator's own event counts
                assert len([h for h in history if h["event_id"]]) == condition(sim, "Jam").events == 2
                assert len([h for h in temperature if h["event_id"]]) == condition(sim, "TemperatureAlarm").events == 2

                # the edge goes away: the retained alarms turn stale, their state kept
                await edge.stop()
                stale = await eventually(lambda: _async((m := reader.last.get(topic_t)) and m["stale"] and m),
                                         timeout=30)
                assert (stale["active"], stale["state"], stale["event_id"]) == (
                    True, "HighHigh", high_high["event_id"])

                bad = await client.get("/api/alarms/history", params={"from_ms": 10, "to_ms": 5},
                                       headers=auth("viewer"))
                assert bad.status_code == 422 and bad.json()["reason"] == "bad_range"
                unknown = await client.get("/api/alarms", params={"line": "acme/plant1/packaging/nope"},
                                           headers=auth("viewer"))
                assert unknown.status_code == 404 and unknown.json()["reason"] == "unknown_line"
        finally:
            reader.close()
            await edge.stop()
            await sim.stop()


async def _async(value):  # type: ignore[no-untyped-def]
    return value

