"""Issue 12: the host's two MQTT connections (the Sparkplug session and the UNS mirror) connect
whenever a broker is there, whatever ended the previous attempt: nothing listening (refused TCP
connect), a peer that resets the connection during CONNECT (a broker killed in the handshake), a
broker killed under an established session. ``connected`` / ``mirror_connected`` say so meanwhile.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mes_adapter.host import HostConfig, SparkplugHost
from tests.host.conftest import LINE, wait_for
from tests.host.edge import PahoEdge
from tests.support.mosquitto import mosquitto_broker
from tests.support.mqtt_faults import MuteListener, until
from tests.support.net import free_port
from tests.support.sniffer import Sniffer

pytestmark = pytest.mark.mosquitto

SPEED = f"{LINE}/filler/Speed"


def _host(port: int) -> SparkplugHost:
    return SparkplugHost(HostConfig(broker_url=f"mqtt://127.0.0.1:{port}", host_id="mes", conflation_interval_ms=0,
                                    reconnect_min_s=0.1, reconnect_max_s=0.4))


async def _births_mirrored(port: int) -> None:
    with Sniffer("127.0.0.1", port, (f"{LINE}/#",)) as sniffer, PahoEdge("127.0.0.1", port) as edge:
        edge.send(edge.script.nbirth())
        edge.send(edge.script.dbirth())
        await wait_for(sniffer, lambda m: m.topic == SPEED)


@pytest.mark.parametrize("first", ["nothing-listens", "reset-during-connect"])
async def test_both_connections_come_up_once_a_broker_answers(tmp_path: Path, first: str) -> None:
    port = free_port()
    host = _host(port)
    await host.start()
    try:
        if first == "reset-during-connect":
            async with MuteListener(port, close_after_read=True) as mute:
                await until(lambda: mute.accepted >= 4, 15, "both connections tried twice")
        else:
            await until(lambda: host.mirror_publisher.connect_failures >= 2 and host.stats.reconnects >= 2, 15,
                         "refused attempts of both connections")
        assert not host.connected and not host.mirror_connected
        with mosquitto_broker(tmp_path, port=port):
            await host.wait_online(15)
            await until(lambda: host.connected and host.mirror_connected, 15, "both connections up")
            await _births_mirrored(port)
    finally:
        await host.stop()


async def test_a_broker_killed_and_down_for_a_while_is_reconnected(tmp_path: Path) -> None:
    """Down long enough for several failed attempts of each connection (the defect's shape)."""
    port = free_port()
    host = _host(port)
    with mosquitto_broker(tmp_path, port=port) as broker:
        await host.start()
        await host.wait_online(15)
        await until(lambda: host.mirror_connected, 15, "mirror up")
        os.kill(broker.pid, signal.SIGKILL)  # the broker we started, by PID
        await until(lambda: not host.connected and not host.mirror_connected, 15, "both connections down")
        failures = host.mirror_publisher.connect_failures
        await until(lambda: host.mirror_publisher.connect_failures >= failures + 3, 15, "attempts while down")
    try:
        again = tmp_path / "again"
        again.mkdir()
        with mosquitto_broker(again, port=port):
            await until(lambda: host.connected and host.mirror_connected, 15, "both connections back")
            await _births_mirrored(port)
    finally:
        await host.stop()
