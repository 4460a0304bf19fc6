"""Faults during steady data, the whole way: `uns sim` (asyncua) → edge node → Mosquitto → sniffer.

Every change the simulator makes to its synthetic tags must reach the broker exactly once, live or
historical (``is_historical``: store-and-forward is a non-normative narrative in the spec, no
tck-id covers it), while:

1. the broker is stopped (SIGTERM by PID) for a few seconds and started again on the same port;
2. the primary host publishes STATE offline for a few seconds, then online again: the edge node
   publishes NDEATH and disconnects (tck-id-message-flow-edge-node-birth-publish-phid-offline,
   tck-id-operational-behavior-edge-node-termination-host-offline), keeps every change in its
   store, and flushes it after its new NBIRTH.

Synthetic tag ``i`` holds ``synthetic_value(i, step)`` after update ``step``; the simulator starts
changing them only once the edge node has born (a change made before an OPC UA subscription
exists cannot be reported by any client), and stops before the count, so the expected set is
exactly ``{(i, step) for step in first..last}``. The edge asks for a server-side queue of 10 per
monitored item (``queue_size``) so an OPC UA server that stalls never conflates two changes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edge_node.app import EdgeNodeApp
from edge_node.config import EdgeConfig, loads_edge_config
from simulator.catalog import synthetic_path
from simulator.config import NAMESPACE_URI, SimulatorConfig
from simulator.model import synthetic_value
from simulator.server import SimulatedLineServer
from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.sniffer import Sniffer

from .sparkplug_wire import Host, assert_exactly_once, changes, edge_messages, eventually, kind

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(120)]

TAGS = 12
RATE_HZ = 5.0
DEVICE = "Synth"


def plant(broker_port: int, sim: SimulatedLineServer, data_dir: Path, primary_host_id: str | None = None) -> str:
    tags = "\n".join(
        f'  - {{node_id: "nsu={NAMESPACE_URI};s={synthetic_path("Line1", i)}", metric: Tag{i:02d}, '
        f"cell: {DEVICE}, endpoint: sim}}"
        for i in range(TAGS))
    host = f"\n  primary_host_id: {primary_host_id}" if primary_host_id else ""
    return f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
sparkplug:
  group_id: G
  edge_node_id: E
  brokers: [mqtt://127.0.0.1:{broker_port}]
  publish_interval_ms: 50
  reconnect_min_s: 1.5
  reconnect_max_s: 3.0
  reconnect_jitter: 0.0
  store: {{synchronous: NORMAL}}{host}
opcua:
  - name: sim
    url: {sim.endpoint}
    publishing_interval_ms: 50
    sampling_interval_ms: 0
    queue_size: 10
    keepalive_interval_s: 0.5
tags:
{tags}
"""


def made(first_step: int, last_step: int) -> list[tuple[str | None, str, float]]:
    """Every change the simulator made in updates ``first_step..last_step``, as the sniffer names them."""
    return [(DEVICE, f"Tag{i:02d}", synthetic_value(i, step))
            for step in range(first_step, last_step + 1) for i in range(TAGS)]


@contextlib.asynccontextmanager
async def simulator():  # type: ignore[no-untyped-def]
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), extra_tags=TAGS, extra_rate_hz=RATE_HZ))
    sim.synthetic_running = False
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def born(sniffer: Sniffer) -> None:
    await eventually(lambda: any(kind(m) == "DBIRTH" for m in edge_messages(sniffer)), timeout=20,
                     what="the edge node's DBIRTH")


async def stop_and_count(sim: SimulatedLineServer, sniffer: Sniffer, first_step: int, app: EdgeNodeApp) -> None:
    """Stop the changes, wait until the last one is on the broker, compare with what was made."""
    sim.synthetic_running = False
    await asyncio.sleep(2 / RATE_HZ)  # a step in progress finishes its writes
    last_step = sim.synthetic_step
    expected = made(first_step, last_step)
    last = (DEVICE, f"Tag{TAGS - 1:02d}", synthetic_value(TAGS - 1, last_step))

    def delivered() -> bool:
        return last in {(c.device, c.name, c.value) for c in changes(edge_messages(sniffer))}
    await eventually(delivered, timeout=30, what="the last change on the broker")
    await asyncio.sleep(0.5)  # anything late would be a duplicate: give it the chance to show
    seen = changes(edge_messages(sniffer))
    assert last_step - first_step >= 5 * RATE_HZ  # the run spanned the fault
    assert any(c.historical for c in seen), "nothing was buffered: the fault did not bite"
    assert any(not c.historical for c in seen)
    # after a primary host loss the edge sends again what it confirmed just before it (rule 15)
    assert_exactly_once(seen, expected, resent_after_host_loss=app.client.stats.values_resent_after_host_loss)


async def count_through(sim: SimulatedLineServer, config: EdgeConfig, sniffer: Sniffer,
                        fault: Callable[[], Awaitable[None]]) -> None:
    """Edge node born, then the simulator changes its tags, ``fault`` happens, and every change
    is counted on the broker."""
    app = EdgeNodeApp(config)
    await app.start()
    try:
        await born(sniffer)
        first_step = sim.synthetic_step + 1
        sim.synthetic_running = True
        await asyncio.sleep(1.5)
        await fault()
        await asyncio.sleep(1.5)
        await stop_and_count(sim, sniffer, first_step, app)
    finally:
        await app.stop()


async def test_broker_outage_every_simulator_change_arrives_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    brokers = contextlib.ExitStack()
    brokers.enter_context(mosquitto_broker(tmp_path / "first", port=port))
    sniffer = Sniffer("127.0.0.1", port)
    sniffer.client.reconnect_delay_set(min_delay=1, max_delay=1)  # back before the edge's rebirth
    sniffer.start()

    async def outage() -> None:
        brokers.close()  # SIGTERM by PID; waits for the exit
        await asyncio.sleep(3.0)
        brokers.enter_context(mosquitto_broker(tmp_path / "second", port=port))

    try:
        async with simulator() as sim:
            await count_through(sim, loads_edge_config(plant(port, sim, tmp_path / "edge")), sniffer, outage)
    finally:
        sniffer.stop()
        brokers.close()


async def test_primary_host_offline_every_simulator_change_arrives_exactly_once(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path) as broker, Sniffer(broker.host, broker.port) as sniffer:
        host = Host(broker.host, broker.port)

        async def host_away() -> None:
            host.state("MES", False, 2000)
            await eventually(lambda: any(kind(m) == "NDEATH" for m in edge_messages(sniffer)),
                             what="the edge's NDEATH when its primary host went offline")
            await asyncio.sleep(2.5)
            host.state("MES", True, 3000)

        try:
            host.state("MES", True, 1000)
            async with simulator() as sim:
                config = loads_edge_config(plant(broker.port, sim, tmp_path / "edge", "MES"))
                await count_through(sim, config, sniffer, host_away)
        finally:
            host.close()
