"""The simulator's OPC UA Alarms & Conditions, seen by a real asyncua client on loopback.

Every test subscribes to events on the Server object with an EventFilter (the way an edge node or a
SCADA client does), drives the line through OPC UA method calls, and asserts the exact sequence of
condition states and Retain, then compares the count with the simulator's own truth tags.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import Client, ua

from simulator.client import boolean, call_simulation, double, string
from simulator.config import NAMESPACE_URI, CellConfig, SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.simulator.condition_client import (
    ACKNOWLEDGE,
    CONFIRM,
    Events,
    call_condition,
    read_state,
    refresh,
    state,
    subscribe,
    truth,
    wait_for,
)
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def alarm_config() -> SimulatorConfig:
    # no sensor noise and a 2 s lag: the temperature crosses each limit once, so the sequence is exact
    return SimulatorConfig(port=free_port(), tick_s=0.05, acting_state_s=0.1, seed=3, cells=[
        CellConfig(name="Filler", temperature_c=20.0, temperature_noise_c=0.0, temperature_tau_s=2.0),
        CellConfig(name="Capper", temperature_c=35.0, temperature_noise_c=0.0, temperature_tau_s=2.0),
    ])


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    server = SimulatedLineServer(alarm_config())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_temperature_excursion_high_highhigh_normal_then_ack_and_confirm(sim: SimulatedLineServer) -> None:
    alarm = "Line1/Filler/TemperatureAlarm"
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        _, events = await subscribe(client)
        await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(15.0))
        await wait_for(lambda: len(events.of(alarm)) >= 2)
        await call_simulation(sim.endpoint, "SetDisturbance", string("Filler"), double(0.0))
        await wait_for(lambda: len(events.of(alarm)) >= 4)
        seen = events.of(alarm)
        assert [state(e) for e in seen] == [
            ("High", True, False, True, True),
            ("HighHigh", True, False, True, True),
            ("High", True, False, True, True),
            ("", False, False, True, True),  # back to normal, still retained: nobody acknowledged
        ]
        assert [e["Severity"] for e in seen] == [500, 800, 500, 500]
        first = seen[0]
        assert first["EventType"] == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
        assert first["SourceNode"] == ua.NodeId("Line1/Filler", ns)
        assert first["SourceName"] == "Filler"
        assert first["ConditionName"] == "TemperatureAlarm"
        assert first["EnabledState/Id"] is True
        assert (first["HighHighLimit"], first["HighLimit"], first["LowLimit"], first["LowLowLimit"]) == \
            (30.0, 25.0, 15.0, 10.0)
        assert first["Message"].Text.startswith("Filler temperature High (")
        assert len({e["EventId"] for e in seen}) == 4  # a new EventId per event
        assert all(e["Time"] <= e["ReceiveTime"] for e in seen)

        await call_condition(client, ns, alarm, ACKNOWLEDGE, seen[-1]["EventId"], "checked the cooling")
        await wait_for(lambda: len(events.of(alarm)) >= 5)
        acked = events.of(alarm)[4]
        assert state(acked) == ("", False, True, False, True)
        assert acked["Comment"].Text == "checked the cooling"
        await call_condition(client, ns, alarm, CONFIRM, acked["EventId"], "cooling repaired")
        await wait_for(lambda: len(events.of(alarm)) >= 6)
        confirmed = events.of(alarm)[5]
        assert state(confirmed) == ("", False, True, True, False)  # Retain drops: the occurrence is over
        assert confirmed["Comment"].Text == "cooling repaired"
        await asyncio.sleep(0.3)
        assert len(events.of(alarm)) == 6
        assert await truth(client, ns, "FillerTemperatureAlarmEvents") == 6
        node = client.get_node(ua.NodeId(alarm, ns))
        limit = await node.get_child(["0:LimitState", "0:CurrentState"])
        assert (await limit.read_value()).Text == ""  # the node states the last event: back to normal
        assert await (await node.get_child(["0:Retain"])).read_value() is False
        assert await (await node.get_child(["0:Comment"])).read_value() == ua.LocalizedText("cooling repaired", "en")
        assert await truth(client, ns, "CapperTemperatureAlarmEvents") == 0
        assert await truth(client, ns, "AlarmEvents") == 6
        assert await truth(client, ns, "ActiveAlarms") == 0
        assert await truth(client, ns, "UnackedAlarms") == 0


async def test_acknowledge_refusals_carry_the_part9_status_codes(sim: SimulatedLineServer) -> None:
    jam = "Line1/Capper/Jam"
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        _, events = await subscribe(client)
        assert [await read_state(client, ns, jam, name) for name in ("ActiveState", "AckedState")] == [False, True]
        result = await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("jam"), boolean(True))
        assert result == [1]
        await wait_for(lambda: len(events.of(jam)) == 1)
        raised = events.of(jam)[0]
        assert raised["EventType"] == ua.NodeId(ua.ObjectIds.OffNormalAlarmType)
        assert state(raised) == (None, True, False, True, True)
        assert (raised["Severity"], raised["Message"].Text) == (600, "Capper jammed")

        with pytest.raises(ua.UaStatusCodeError) as wrong:
            await call_condition(client, ns, jam, ACKNOWLEDGE, b"no-such-event", "x")
        assert wrong.value.code == ua.StatusCodes.BadEventIdUnknown
        with pytest.raises(ua.UaStatusCodeError) as too_early:
            await call_condition(client, ns, jam, CONFIRM, raised["EventId"], "x")
        assert too_early.value.code == ua.StatusCodes.BadConditionBranchAlreadyConfirmed
        assert [await read_state(client, ns, jam, name) for name in ("ActiveState", "AckedState")] == [True, False]
        condition = client.get_node(ua.NodeId(jam, ns))
        own_method = await condition.get_child(["0:Acknowledge"])  # the instance's method node
        assert own_method.nodeid != ACKNOWLEDGE
        await condition.call_method(own_method, ua.Variant(raised["EventId"], ua.VariantType.ByteString),
                                    ua.Variant(ua.LocalizedText("cleared the jam", "en"),
                                               ua.VariantType.LocalizedText))
        assert await read_state(client, ns, jam, "AckedState") is True  # read back, as a command writer does
        with pytest.raises(ua.UaStatusCodeError) as twice:
            await call_condition(client, ns, jam, ACKNOWLEDGE, raised["EventId"], "again")
        assert twice.value.code == ua.StatusCodes.BadConditionBranchAlreadyAcked
        with pytest.raises(ua.UaStatusCodeError) as unknown:
            await call_condition(client, ns, "Line1/Capper/NoSuchAlarm", ACKNOWLEDGE, raised["EventId"], "x")
        assert unknown.value.code == ua.StatusCodes.BadNodeIdInvalid  # not a node of the address space
        with pytest.raises(ua.UaStatusCodeError) as not_a_condition:
            await call_condition(client, ns, "Line1/Capper/Temperature", ACKNOWLEDGE, raised["EventId"], "x")
        assert not_a_condition.value.code == ua.StatusCodes.BadNodeIdUnknown  # a tag, not a condition
        with pytest.raises(ua.UaStatusCodeError) as malformed:  # EventId sent as a String
            await client.get_node(ua.NodeId(jam, ns)).call_method(ACKNOWLEDGE, string("abc"), string("x"))
        assert malformed.value.code == ua.StatusCodes.BadInvalidArgument
        with pytest.raises(ua.UaStatusCodeError) as bad_alarm:
            await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("smoke"), boolean(True))
        assert bad_alarm.value.code == ua.StatusCodes.BadInvalidArgument

        await wait_for(lambda: len(events.of(jam)) == 2)
        assert state(events.of(jam)[1]) == (None, True, True, False, True)
        assert events.of(jam)[1]["Comment"].Text == "cleared the jam"
        await call_simulation(sim.endpoint, "RaiseAlarm", string("Capper"), string("jam"), boolean(False))
        await wait_for(lambda: len(events.of(jam)) == 3)
        assert state(events.of(jam)[2]) == (None, False, True, False, True)  # still to be confirmed
        await asyncio.sleep(0.3)
        assert len(events.of(jam)) == 3  # the refused calls emitted nothing
        assert await truth(client, ns, "CapperJamEvents") == 3
        assert await truth(client, ns, "UnackedAlarms") == 0


async def _set(sim: SimulatedLineServer, cell: str, alarm: str, active: bool) -> None:
    await call_simulation(sim.endpoint, "RaiseAlarm", string(cell), string(alarm), boolean(active))


async def test_condition_refresh_returns_exactly_the_retained_set_also_after_a_restart(
        sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as first:
        ns = await first.get_namespace_index(NAMESPACE_URI)
        _, seen = await subscribe(first)
        await _set(sim, "Filler", "jam", True)  # active, unacked: retained
        await _set(sim, "Filler", "door_open", True)
        await _set(sim, "Filler", "door_open", False)  # inactive but unacked: retained
        await _set(sim, "Capper", "estop", True)
        await wait_for(lambda: len(seen.of("Line1/Capper/EStop")) == 1)
        estop_id = seen.of("Line1/Capper/EStop")[0]["EventId"]
        await call_condition(first, ns, "Line1/Capper/EStop", ACKNOWLEDGE, estop_id, "reset")
        await call_condition(first, ns, "Line1/Capper/EStop", CONFIRM, estop_id, "ok")
        await _set(sim, "Capper", "estop", False)  # inactive, acked, confirmed: gone
        await wait_for(lambda: len(seen.of("Line1/Capper/EStop")) == 4)

    async with Client(sim.endpoint) as second:
        sub, events = await subscribe(second)
        refreshed = await refresh(second, sub, events)
        assert sorted((e["NodeId"].Identifier, state(e)) for e in refreshed) == [
            ("Line1/Filler/DoorOpen", (None, False, False, True, True)),
            ("Line1/Filler/Jam", (None, True, False, True, True)),
        ]
        jam_id = next(e["EventId"] for e in refreshed if e["NodeId"].Identifier == "Line1/Filler/Jam")
        assert jam_id == seen.of("Line1/Filler/Jam")[-1]["EventId"]  # a refresh repeats, not re-raises

    # the server goes down; the line keeps running and an operator opens a door meanwhile
    restart = asyncio.create_task(sim.restart(1.0))
    await wait_for(lambda: not sim.listening)
    sim.model.set_alarm("Capper", "door_open", True)
    sim.model.set_alarm("Filler", "door_open", False)  # no change: already inactive
    await restart
    async with Client(sim.endpoint) as third:
        ns = await third.get_namespace_index(NAMESPACE_URI)
        sub, events = await subscribe(third)
        refreshed = await refresh(third, sub, events)
        assert sorted((e["NodeId"].Identifier, state(e)) for e in refreshed) == [
            ("Line1/Capper/DoorOpen", (None, True, False, True, True)),
            ("Line1/Filler/DoorOpen", (None, False, False, True, True)),
            ("Line1/Filler/Jam", (None, True, False, True, True)),
        ]
        # an EventId from before the restart still acknowledges
        await call_condition(third, ns, "Line1/Filler/Jam", ACKNOWLEDGE, jam_id, "after restart")
        await wait_for(lambda: len(events.of("Line1/Filler/Jam")) == 2)
        assert state(events.of("Line1/Filler/Jam")[-1]) == (None, True, True, False, True)
        assert await read_state(third, ns, "Line1/Filler/Jam", "AckedState") is True
        assert await read_state(third, ns, "Line1/Capper/DoorOpen", "ActiveState") is True  # raised while down
        assert await truth(third, ns, "FillerJamEvents") == 2
        assert await truth(third, ns, "FillerDoorOpenEvents") == 2
        assert await truth(third, ns, "CapperDoorOpenEvents") == 1
        assert await truth(third, ns, "CapperEStopEvents") == 4
        assert await truth(third, ns, "AlarmEvents") == 9
        assert await truth(third, ns, "ActiveAlarms") == 2
        assert await truth(third, ns, "UnackedAlarms") == 2


async def _cli(endpoint: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unshub.cli.main", "sim", "fault", "--endpoint", endpoint, "alarm", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_raises_and_clears_alarms(sim: SimulatedLineServer) -> None:
    door = sim.model.alarms.condition("Line1/Capper/DoorOpen")
    assert await _cli(sim.endpoint, "--cell", "Capper", "--alarm", "door-open") == (
        0, "Capper door-open raised (1 event(s))\n", "")
    assert (door.active, door.acked, door.events) == (True, False, 1)
    assert await _cli(sim.endpoint, "--cell", "Capper", "--alarm", "door-open", "--clear") == (
        0, "Capper door-open cleared (2 event(s))\n", "")
    assert (door.active, door.acked, door.events) == (False, False, 2)
    code, out, _ = await _cli(sim.endpoint, "--cell", "Filler", "--alarm", "temperature", "--delta", "12")
    assert (code, out) == (0, "Filler temperature disturbance 12 degC\n")
    assert sim.model.cell("Filler").disturbance_c == 12.0
    code, out, err = await _cli(sim.endpoint, "--cell", "Filler", "--alarm", "smoke")
    assert (code, out) == (1, "")
    assert "RaiseAlarm refused" in err and "BadInvalidArgument" in err
    code, _, err = await _cli(sim.endpoint, "--cell", "Mixer", "--alarm", "jam")
    assert code == 1 and "BadNodeIdUnknown" in err
    # the refused calls raised nothing: every event is the door's or the disturbed temperature's
    temperature = sim.model.alarms.condition("Line1/Filler/TemperatureAlarm")
    assert sim.model.alarms.total_events == door.events + temperature.events


async def test_a_full_event_queue_says_so_with_an_overflow_event_and_counts_every_discard(
        sim: SimulatedLineServer) -> None:
    # Part 4 5.12.1.5: asyncua drops from a full queue silently; our server puts an
    # EventQueueOverflowEvent at the head instead and counts each event it discards
    from simulator.event_queue import STATS

    overflow_type = ua.NodeId(ua.ObjectIds.EventQueueOverflowEventType)
    discarded, overflows = STATS.discarded, STATS.overflows
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        fired_before = await truth(client, ns, "AlarmEvents")
        events = Events()
        sub = await client.create_subscription(1000, events)  # one publish a second: the burst queues up
        types = [client.get_node(ua.NodeId(ua.ObjectIds.AlarmConditionType))]
        await sub.subscribe_events(client.nodes.server, types, queuesize=3)
        await call_simulation(sim.endpoint, "AlarmFlood", double(20_000.0), double(0.002))  # 40 toggles, one tick
        fired = 0

        async def settled() -> bool:
            nonlocal fired
            fired = await truth(client, ns, "AlarmEvents") - fired_before
            return fired > 0 and not sim.model.alarms.flooding
        for _ in range(100):
            if await settled():
                break
            await asyncio.sleep(0.05)
        received = lambda: [e for e in events.items if e.get("EventType") != overflow_type]  # noqa: E731
        await wait_for(lambda: len(received()) + STATS.discarded - discarded == fired, timeout=10)
        markers = [e for e in events.items if e.get("EventType") == overflow_type]
        assert fired == 40
        assert STATS.discarded - discarded == 40 - len(received()) > 0  # the queue of 3 did overflow
        assert len(markers) == STATS.overflows - overflows >= 1
        assert events.items[0]["EventType"] == overflow_type  # the marker heads what it stands for
