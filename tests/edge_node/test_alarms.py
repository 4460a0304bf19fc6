"""OPC UA Alarms & Conditions through the edge node: `uns sim` (asyncua) → edge → Mosquitto → sniffer.

The simulator raises real Part 9 conditions (docs/alarms.md); the edge subscribes to events on
the Server object, calls ConditionRefresh after every connect, and publishes each configured
condition as the metric group ``Alarms/<Name>/{Active,Acked,Confirmed,Retain,Severity,Message,
State,ConditionId,EventId}`` of its cell's device. Every assertion compares what is on the wire
with the simulator's own condition state (its EventIds, its per-condition event counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua import ua

from edge_node.alarms import METRICS, AlarmBook
from edge_node.app import EdgeNodeApp
from edge_node.config import loads_edge_config
from edge_node.opcua.source import OpcUaSource
from edge_node.validation import datetime_to_ms
from simulator.client import boolean, call_simulation, double, string
from simulator.config import NAMESPACE_URI, CellConfig, SimulatorConfig
from simulator.server import SimulatedLineServer
from simulator.server import _dt as source_time  # the simulator's epoch-seconds -> OPC UA DateTime
from tests.edge_node.recording_sink import RecordingSink
from tests.edge_node.running import running
from tests.observability.scrape import value as scraped
from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.sniffer import Captured, Sniffer

from .sparkplug_wire import edge_messages, eventually, kind, payload

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(120)]

#: (cell, condition) the edge is configured to publish; Labeler and Filler/DoorOpen are left out on purpose
CONFIGURED = [("Filler", "TemperatureAlarm"), ("Filler", "Jam"), ("Capper", "Jam"), ("Capper", "DoorOpen")]


def plant(broker_port: int, sim: SimulatedLineServer, data_dir: Path) -> str:
    conditions = "\n".join(f"        - {{cell: {cell}, name: {name}}}" for cell, name in CONFIGURED)
    return f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
http: {{host: 127.0.0.1, port: 0}}
sparkplug:
  group_id: G
  edge_node_id: E
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
{conditions}
tags:
  - {{node_id: "nsu={NAMESPACE_URI};s=Line1/Filler/Temperature", metric: Temperature, cell: Filler}}
  - {{node_id: "nsu={NAMESPACE_URI};s=Line1/Capper/Temperature", metric: Temperature, cell: Capper}}
"""


def sim_config() -> SimulatorConfig:
    # no sensor noise and a short lag: the temperature crosses each limit once, so the sequence is exact
    return SimulatorConfig(port=free_port(), tick_s=0.05, seed=3, cells=[
        CellConfig(name="Filler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=0.5),
        CellConfig(name="Capper", temperature_c=35.0, temperature_noise_c=0.0, temperature_tau_s=0.5),
        CellConfig(name="Labeler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=0.5),
    ])


@contextlib.asynccontextmanager
async def line(tmp_path: Path) -> AsyncIterator[tuple[SimulatedLineServer, EdgeNodeApp, Sniffer]]:
    with mosquitto_broker(tmp_path) as broker, Sniffer(broker.host, broker.port) as sniffer:
        sim = SimulatedLineServer(sim_config())
        await sim.start()
        app = EdgeNodeApp(loads_edge_config(plant(broker.port, sim, tmp_path / "edge")))
        try:
            await app.start()
            await eventually(lambda: {device(m) for m in births(sniffer)} >= {"Filler", "Capper"}, timeout=20,
                             what="the DBIRTHs of Filler and Capper")
            yield sim, app, sniffer
        finally:
            await app.stop()
            await sim.stop()


def device(message: Captured) -> str | None:
    parts = message.topic.split("/")
    return parts[4] if len(parts) == 5 else None


def births(sniffer: Sniffer) -> list[Captured]:
    return [m for m in edge_messages(sniffer) if kind(m) == "DBIRTH"]


def value(metric: Any) -> object:
    return getattr(metric, metric.WhichOneof("value") or "is_null")


def group(metrics: dict[str, object], name: str) -> dict[str, object]:
    return {suffix: metrics[f"Alarms/{name}/{suffix}"] for suffix, _ in METRICS}


def last_birth(sniffer: Sniffer, cell: str) -> dict[str, object]:
    """The metrics of the newest DBIRTH of ``cell``: name -> value."""
    birth = [m for m in births(sniffer) if device(m) == cell][-1]
    return {m.name: value(m) for m in payload(birth).metrics}


def metrics_of(sniffer: Sniffer, cell: str) -> Iterator[tuple[str, str, object, int]]:
    """(message kind, metric name, value, timestamp) of every metric in the births and data of ``cell``,
    DDATA aliases resolved through the DBIRTH before them."""
    names: dict[int, str] = {}
    for message in edge_messages(sniffer):
        if device(message) != cell or kind(message) not in ("DBIRTH", "DDATA"):
            continue
        body = payload(message)
        if kind(message) == "DBIRTH":
            names = {m.alias: m.name for m in body.metrics}
        for m in body.metrics:
            yield kind(message), names[m.alias], value(m), m.timestamp


def view(sniffer: Sniffer, cell: str) -> dict[str, object]:
    """What a host knows of ``cell`` now: its newest DBIRTH (which states every metric) with every
    DDATA after it applied."""
    return {name: v for _, name, v, _ in metrics_of(sniffer, cell)}


def series(sniffer: Sniffer, cell: str, metric: str) -> list[tuple[object, int]]:
    """Every (value, timestamp) of one metric in the DDATA of ``cell``, in order."""
    return [(v, ts) for k, name, v, ts in metrics_of(sniffer, cell) if k == "DDATA" and name == metric]


def truth(sim: SimulatedLineServer, cell: str, name: str) -> dict[str, object]:
    """The metric group the simulator's condition must produce, from its own last event."""
    condition = sim.model.alarms.condition(f"Line1/{cell}/{name}")
    event = condition.last_event
    assert event is not None
    return {"Active": event.active, "Acked": event.acked, "Confirmed": event.confirmed, "Retain": event.retain,
            "Severity": event.severity, "Message": event.message,
            "State": event.limit_state.value if event.limit_state is not None else "",
            "ConditionId": f"ns={sim.namespace_index};s=Line1/{cell}/{name}", "EventId": event.event_id.hex()}


NEVER_RAISED = {"Active": False, "Acked": True, "Confirmed": True, "Retain": False, "Severity": 0, "Message": "",
                "State": "", "ConditionId": "", "EventId": ""}


async def test_conditions_on_the_wire_raise_limit_excursion_clear_and_bad_sources(tmp_path: Path) -> None:
    async with line(tmp_path) as (sim, app, sniffer):
        # tck-id-topics-dbirth-metrics: every configured condition is declared in the DBIRTH with its value,
        # raised or not (the never-raised state); nothing else under Alarms/
        for cell in ("Filler", "Capper"):
            birth = last_birth(sniffer, cell)
            configured = [n for c, n in CONFIGURED if c == cell]
            assert {k for k in birth if k.startswith("Alarms/")} == {
                f"Alarms/{n}/{s}" for n in configured for s, _ in METRICS}
            for name in configured:
                assert group(birth, name) == NEVER_RAISED

        assert await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("jam"), boolean(True)) == [1]
        await eventually(lambda: view(sniffer, "Capper").get("Alarms/Jam/Active") is True, what="Capper Jam active")
        raised = truth(sim, "Capper", "Jam")
        assert raised == {"Active": True, "Acked": False, "Confirmed": True, "Retain": True, "Severity": 600,
                          "Message": "Capper jammed", "State": "",
                          "ConditionId": f"ns={sim.namespace_index};s=Line1/Capper/Jam",
                          "EventId": raised["EventId"]}
        await eventually(lambda: group(view(sniffer, "Capper"), "Jam") == raised, what="the whole Jam group")
        jam_time = sim.model.alarms.condition("Line1/Capper/Jam").time
        # the event's source Time is every metric's timestamp (ms, as the OPC UA DateTime carries it)
        assert series(sniffer, "Capper", "Alarms/Jam/Active")[-1] == (True, datetime_to_ms(source_time(jam_time)))

        # a limit excursion raised by the process model: High, then HighHigh, then back through High
        await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(15.0))
        await eventually(lambda: view(sniffer, "Filler").get("Alarms/TemperatureAlarm/State") == "HighHigh",
                         what="Filler HighHigh")
        assert group(view(sniffer, "Filler"), "TemperatureAlarm") == truth(sim, "Filler", "TemperatureAlarm")
        await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(0.0))
        await eventually(lambda: view(sniffer, "Filler").get("Alarms/TemperatureAlarm/Active") is False,
                         timeout=20, what="Filler temperature back to normal")
        back = truth(sim, "Filler", "TemperatureAlarm")
        assert back["Active"] is False and back["Retain"] is True and back["Acked"] is False
        await eventually(lambda: group(view(sniffer, "Filler"), "TemperatureAlarm") == back, what="normal group")
        assert [v for v, _ in series(sniffer, "Filler", "Alarms/TemperatureAlarm/State")] == \
            ["High", "HighHigh", "High", ""]
        assert [v for v, _ in series(sniffer, "Filler", "Alarms/TemperatureAlarm/Severity")] == [500, 800, 500, 500]
        # one published group per simulator event: the EventIds on the wire are the simulator's count
        events = sim.model.alarms.condition("Line1/Filler/TemperatureAlarm").events
        assert len({v for v, _ in series(sniffer, "Filler", "Alarms/TemperatureAlarm/EventId")}) == events == 4

        # conditions the config does not name: counted and logged once, never on the wire
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Labeler"), string("jam"), boolean(True))
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Labeler"), string("jam"), boolean(False))
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("door-open"), boolean(True))
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("jam"), boolean(False))
        await eventually(lambda: view(sniffer, "Capper").get("Alarms/Jam/Active") is False, what="Capper Jam clear")
        cleared = truth(sim, "Capper", "Jam")
        assert (cleared["Active"], cleared["Acked"], cleared["Retain"], cleared["Message"]) == \
            (False, False, True, "Capper no longer jammed")
        await eventually(lambda: group(view(sniffer, "Capper"), "Jam") == cleared, what="cleared Jam group")
        stats = app.sources[0].alarms.book.stats  # type: ignore[union-attr]
        assert (stats.unknown_sources, stats.unknown_conditions, stats.malformed) == (2, 1, 0)
        assert stats.events == events + 2  # Filler temperature 4, Capper Jam raised and cleared
        # every event the monitored item delivered is accounted for by exactly one outcome
        assert stats.received == (stats.events + stats.not_conditions + stats.malformed + stats.unknown_sources
                                  + stats.unknown_conditions + 2 * stats.refreshes + stats.refresh_requests
                                  + stats.queue_overflows)
        assert app.observability is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.observability.port}") as http:
            text = (await http.get("/metrics")).text
        assert {outcome: scraped(text, "uns_edge_alarm_events_total", endpoint="sim", outcome=outcome)
                for outcome in ("received", "published", "not_condition", "malformed", "unknown_source",
                                "unknown_condition", "queue_overflow")} \
            == {"received": stats.received, "published": events + 2, "not_condition": 0, "malformed": 0,
                "unknown_source": 2, "unknown_condition": 1, "queue_overflow": 0}
        assert scraped(text, "uns_edge_alarm_sessions_lost_total", endpoint="sim") == 0
        assert scraped(text, "uns_edge_alarm_refreshes_total", endpoint="sim") == 1
        assert not any(m.name.startswith("Alarms/DoorOpen") for b in births(sniffer) if device(b) == "Filler"
                       for m in payload(b).metrics)
        assert "Labeler" not in {device(m) for m in edge_messages(sniffer)}


async def test_server_restart_births_state_exactly_the_true_active_set(tmp_path: Path) -> None:
    async with line(tmp_path) as (sim, app, sniffer):
        for alarm in ("jam", "door-open"):
            await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string(alarm), boolean(True))
        door = "Line1/Capper/DoorOpen"
        await eventually(lambda: view(sniffer, "Capper").get("Alarms/DoorOpen/Active") is True, what="door open")
        # acknowledged and confirmed while active: once it clears, the server retains nothing of it
        async with sim._lock:  # noqa: SLF001 - the server's own Acknowledge/Confirm path, without a client
            last = sim.model.alarms.condition(door).event_ids[-1]
            sim.model.acknowledge(door, last, "seen")
            sim.model.confirm(door, sim.model.alarms.condition(door).event_ids[-1], "fixed")
            await sim._fire_conditions()  # noqa: SLF001
        await eventually(lambda: view(sniffer, "Capper").get("Alarms/DoorOpen/Confirmed") is True
                         and view(sniffer, "Capper").get("Alarms/DoorOpen/Acked") is True, what="door acked")
        dbirths = len(births(sniffer))
        seen_event_id = view(sniffer, "Capper")["Alarms/DoorOpen/EventId"]
        assert seen_event_id == truth(sim, "Capper", "DoorOpen")["EventId"]

        restart = asyncio.create_task(sim.restart(3.0))
        await eventually(lambda: not sim.listening, what="the OPC UA server down")
        # during the outage (the server is seeded from the model when it is back): the door closes
        # (nothing left to say: not in the refresh), a Filler jam starts
        async with sim._lock:  # noqa: SLF001 - not between two model ticks
            sim.model.set_alarm("Capper", "door-open", False)
            sim.model.set_alarm("Filler", "jam", True)
        await restart
        await eventually(lambda: any(kind(m) == "DDEATH" and device(m) == "Capper" for m in edge_messages(sniffer)),
                         what="Capper DDEATH for the outage")
        await eventually(lambda: len(births(sniffer)) >= dbirths + 2, timeout=20, what="the DBIRTHs after reconnect")

        stats = app.sources[0].alarms.book.stats  # type: ignore[union-attr]
        assert stats.cleared_by_refresh == 1  # DoorOpen: its clearing was never seen as an event
        capper, filler = last_birth(sniffer, "Capper"), last_birth(sniffer, "Filler")
        # the births state the true set (tck-id-topics-dbirth-metrics: current values)
        assert group(capper, "Jam") == truth(sim, "Capper", "Jam")
        assert group(filler, "Jam") == truth(sim, "Filler", "Jam")
        assert group(capper, "DoorOpen") == {"Active": False, "Acked": True, "Confirmed": True, "Retain": False,
                                             "Severity": 400, "Message": "Capper guard door open", "State": "",
                                             "ConditionId": f"ns={sim.namespace_index};s={door}",
                                             "EventId": seen_event_id}
        assert group(filler, "TemperatureAlarm") == NEVER_RAISED
        # tck-id-payloads-alias-uniqueness: the condition metrics keep their aliases across the rebirths
        for cell in ("Filler", "Capper"):
            cell_births = [payload(m) for m in births(sniffer) if device(m) == cell]
            first, newest = ({m.name: m.alias for m in b.metrics} for b in (cell_births[0], cell_births[-1]))
            assert len(cell_births) >= 2 and first == newest
        on_wire = {(cell, name) for cell, name in CONFIGURED
                   if view(sniffer, cell).get(f"Alarms/{name}/Active") is True}
        truly = {(c.source.rpartition("/")[2], c.name) for c in sim.model.alarms.conditions.values() if c.active}
        assert on_wire == truly == {("Capper", "Jam"), ("Filler", "Jam")}


async def test_events_a_real_server_sends_that_are_no_usable_condition(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A plain BaseEventType event and an AlarmConditionType event without its states, both from the
    simulator's own asyncua server: counted, logged once each, nothing published, the session lives."""
    sim = SimulatedLineServer(sim_config())
    await sim.start()
    try:
        config = loads_edge_config(plant(free_port(), sim, tmp_path / "edge"))
        alarms = config.opcua[0].alarms
        assert alarms is not None
        book = AlarmBook(alarms, config.device_of_cell)
        sink = RecordingSink()
        source = OpcUaSource(config.opcua[0], [(t, config.device_id(t)) for t in config.tags], sink,
                             data_dir=tmp_path, alarm_book=book)
        caplog.set_level(logging.WARNING, logger="edge_node.alarms")
        async with running(source):
            await asyncio.wait_for(source.connected.wait(), 20)
            server = sim._server  # noqa: SLF001 - events no condition of the simulator would send
            assert server is not None
            plain = await server.get_event_generator()
            broken = await server.get_event_generator(ua.ObjectIds.AlarmConditionType)
            broken.event.ConditionName, broken.event.SourceName = "Jam", "Filler"  # no Retain, no states
            for _ in range(2):
                await plain.trigger(message="not an alarm")
                await broken.trigger()
            await sink.wait_for(lambda: book.stats.not_conditions == 2 and book.stats.malformed == 2)
            await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("jam"), boolean(True))
            await sink.wait_for(lambda: [u.value for u in sink.data("Alarms/Jam/Active", "Filler")] == [True])
            assert source.stats.connects == 1 and source.stats.disconnects == 0  # the session went on
        assert [u.name for k, u in sink.events if k == "data" and u.name.startswith("Alarms/")] == \
            [f"Alarms/Jam/{s}" for s, _ in METRICS]  # only the real jam was published
        assert (book.stats.events, book.stats.unknown_sources, book.stats.unknown_conditions) == (1, 0, 0)
        assert [r.getMessage() for r in caplog.records if r.name == "edge_node.alarms"] == [
            f"event of type {ua.NodeId(ua.ObjectIds.BaseEventType)} is not a condition; ignored",
            "condition event without Retain, ActiveState/Id, AckedState/Id; ignored",
        ]
    finally:
        await sim.stop()


async def test_refresh_required_restates_the_true_set_after_lost_events(tmp_path: Path) -> None:
    """Part 9 5.11.1: a server that lost condition events sends RefreshRequiredEvent; the edge calls
    ConditionRefresh in the running session and clears what the refresh does not restate (the rule
    after a reconnect). The simulator loses the events on the way (SuppressAlarmEvents)."""
    async with line(tmp_path) as (sim, app, sniffer):
        door = "Line1/Capper/DoorOpen"
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("door-open"), boolean(True))
        async with sim._lock:  # noqa: SLF001 - acknowledged and confirmed at the server, so once it clears,
            sim.model.acknowledge(door, sim.model.alarms.condition(door).event_ids[-1], "seen")  # nothing is retained
            sim.model.confirm(door, sim.model.alarms.condition(door).event_ids[-1], "fixed")
            await sim._fire_conditions()  # noqa: SLF001
        await eventually(lambda: group(view(sniffer, "Capper"), "DoorOpen") == truth(sim, "Capper", "DoorOpen"),
                         what="door open, acked and confirmed on the wire")
        seen_event_id = view(sniffer, "Capper")["Alarms/DoorOpen/EventId"]
        dbirths, published = len(births(sniffer)), app.sources[0].alarms.book.stats.events  # type: ignore[union-attr]

        # the edge misses two events: the door closing (retained no more) and a Filler jam starting
        await call_simulation(sim.endpoint, "SuppressAlarmEvents", boolean(True))
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("door-open"), boolean(False))
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Filler"), string("jam"), boolean(True))
        await call_simulation(sim.endpoint, "SuppressAlarmEvents", boolean(False))
        assert sim.alarm_events_lost == 2
        assert view(sniffer, "Capper")["Alarms/DoorOpen/Active"] is True  # the host still believes it open
        assert view(sniffer, "Filler")["Alarms/Jam/Active"] is False

        await call_simulation(sim.endpoint, "RequestConditionRefresh")
        await eventually(lambda: view(sniffer, "Capper").get("Alarms/DoorOpen/Active") is False
                         and view(sniffer, "Filler").get("Alarms/Jam/Active") is True, what="the true set restated")
        stats = app.sources[0].alarms.book.stats  # type: ignore[union-attr]
        assert (stats.refresh_requests, stats.refreshes, stats.cleared_by_refresh) == (1, 2, 1)
        assert group(view(sniffer, "Capper"), "DoorOpen") == {
            "Active": False, "Acked": True, "Confirmed": True, "Retain": False, "Severity": 400,
            "Message": "Capper guard door open", "State": "", "ConditionId": f"ns={sim.namespace_index};s={door}",
            "EventId": seen_event_id}
        assert group(view(sniffer, "Filler"), "Jam") == truth(sim, "Filler", "Jam")
        # the refresh went on inside the session: no rebirth, no reconnect; the refresh restated the jam once
        assert len(births(sniffer)) == dbirths
        assert app.sources[0].stats.disconnects == 0
        assert stats.events == published + 1
        on_wire = {(cell, name) for cell, name in CONFIGURED
                   if view(sniffer, cell).get(f"Alarms/{name}/Active") is True}
        truly = {(c.source.rpartition("/")[2], c.name) for c in sim.model.alarms.conditions.values() if c.active}
        assert on_wire == truly == {("Filler", "Jam")}
        assert app.observability is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.observability.port}") as http:
            text = (await http.get("/metrics")).text
        assert scraped(text, "uns_edge_alarm_refresh_requests_total", endpoint="sim") == 1
        assert scraped(text, "uns_edge_alarm_refreshes_total", endpoint="sim") == 2
