"""Faults during steady data: every change submitted arrives exactly once (live or historical).

1. The broker is stopped (SIGTERM by PID) for a few seconds and started again on the same port.
2. The primary host goes offline (STATE) for a few seconds, then comes back.

The synthetic metrics are counters, so each (device, metric, value) is one change; the sniffer's
view is compared with the list of what was submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from edge_node.demo import definitions
from edge_node.model import DeviceOnline, MetricUpdate
from edge_node.mqtt_client import SparkplugEdgeClient
from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.sniffer import Sniffer
from uns.sparkplug.model import now_ms

from .sparkplug_wire import Host, assert_exactly_once, changes, edge_messages, eventually, fast_config, kind

pytestmark = pytest.mark.mosquitto

DEFS = definitions(devices=2, metrics=2)


class Producer:
    """Steady synthetic changes: ``rate`` per second, round-robin over the metrics."""

    def __init__(self, client: SparkplugEdgeClient, rate: float = 200.0) -> None:
        self.client = client
        self.period = 1.0 / rate
        self.submitted: list[tuple[str | None, str, int]] = []
        self._counters = {(d.device_id, d.name): 0 for d in DEFS}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        keys = list(self._counters)
        i = 0
        while True:
            key = keys[i % len(keys)]
            i += 1
            self._counters[key] += 1
            self.client.submit(MetricUpdate(key[0], key[1], self._counters[key], now_ms()))
            self.submitted.append((key[0], key[1], self._counters[key]))
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def settle(client: SparkplugEdgeClient) -> None:
    """Wait until nothing is pending, in flight or buffered."""
    session = client.session

    def idle() -> bool:
        return (client.birthed and session.pending_count == 0 and session.in_flight_values == 0
                and client.stats.store_depth == 0)
    await eventually(idle, timeout=20, what="all changes delivered and the store empty")


async def test_broker_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    stack = contextlib.ExitStack()
    stack.enter_context(mosquitto_broker(tmp_path / "first", port=port))
    sniffer = Sniffer("127.0.0.1", port)
    sniffer.client.reconnect_delay_set(min_delay=1, max_delay=1)
    sniffer.start()
    # the edge waits longer than the sniffer before reconnecting, so the sniffer sees its births
    config = fast_config([f"mqtt://127.0.0.1:{port}"], reconnect_min_s=1.5, reconnect_max_s=3.0, reconnect_jitter=0.0)
    client = SparkplugEdgeClient(config, DEFS, tmp_path / "edge")
    await client.start()
    producer = Producer(client)
    try:
        for device in ("D0", "D1"):
            await client.device_online(DeviceOnline(device))
        await client.wait_birthed(10)
        producer.start()
        await asyncio.sleep(1.5)
        stack.close()  # SIGTERM to mosquitto by PID, and wait for it to exit
        await eventually(lambda: not client.connected, timeout=10, what="the edge to notice")
        await asyncio.sleep(1.5)
        assert client.stats.store_depth > 0  # buffering during the outage
        stack.enter_context(mosquitto_broker(tmp_path / "second", port=port))
        await eventually(lambda: client.birthed, timeout=15, what="the edge to birth again")
        await asyncio.sleep(1.0)
        await producer.stop()
        await settle(client)
        stats = client.stats
    finally:
        await client.stop()
        sniffer.stop()
        stack.close()
    seen = changes(edge_messages(sniffer))
    assert stats.reconnects >= 1 and stats.values_replayed > 0
    assert any(c.historical for c in seen) and any(not c.historical for c in seen)
    assert_exactly_once(seen, producer.submitted)


async def test_primary_host_offline_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with mosquitto_broker(tmp_path) as broker, Sniffer(broker.host, broker.port) as sniffer:
        host = Host(broker.host, broker.port)
        host.state("H", True, 1000)
        client = SparkplugEdgeClient(fast_config([broker.url], primary_host_id="H"), DEFS, tmp_path / "edge")
        await client.start()
        producer = Producer(client)
        try:
            for device in ("D0", "D1"):
                await client.device_online(DeviceOnline(device))
            await client.wait_birthed(10)
            producer.start()
            await asyncio.sleep(1.0)
            host.state("H", False, 2000)
            await eventually(lambda: any(kind(m) == "NDEATH" for m in edge_messages(sniffer)), what="NDEATH")
            await asyncio.sleep(1.5)
            assert not client.birthed and client.stats.store_depth > 0
            host.state("H", True, 3000)
            await eventually(lambda: client.birthed, timeout=10, what="the edge to birth again")
            await asyncio.sleep(1.0)
            await producer.stop()
            await settle(client)
            stats = client.stats
        finally:
            await client.stop()
            host.close()
        seen = changes(edge_messages(sniffer))
    assert stats.values_replayed > 0
    assert any(c.historical for c in seen)
    # what the broker confirmed within the 2 s before the offline STATE is sent again (rule 15)
    assert stats.values_resent_after_host_loss > 0
    assert_exactly_once(seen, producer.submitted, resent_after_host_loss=stats.values_resent_after_host_loss)
