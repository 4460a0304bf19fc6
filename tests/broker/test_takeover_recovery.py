"""The real primary host (:class:`SparkplugHost`) against client-id takeovers (issue 13, item 1).

On the `uns up` footing (users, anonymous read-only), the embedded broker:

* refuses an anonymous client that connects with the host's client id; the host is not dropped
  (no reconnect) and keeps applying every value the edge sends;
* lets the host user itself take the id over (a second process, a stale connection): the host is
  dropped, reconnects by itself, and afterwards applies every value again, as the issue asks
  ("components recover cleanly if they are taken over anyway").

The edge is a scripted paho edge node logged in as the ``edge`` user; values are read back from
the host's own model, exactly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.host.conftest import running_host
from tests.host.edge import CELL, EDGE, GROUP, PahoEdge
from tests.support.embedded_broker import EmbeddedBrokerEndpoint, User, embedded_broker

pytestmark = pytest.mark.timeout(90)

USERS = {"mes": User("mes-pw", "host"), "edge": User("edge-pw", "edge", GROUP, EDGE)}
HOST_CLIENT_ID = "uns-host-mes"  # HostConfig(host_id="mes").mqtt_client_id


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBrokerEndpoint]:
    with embedded_broker(tmp_path, users=USERS, demo_anonymous="read-only", websocket=False) as endpoint:
        yield endpoint


def hold_client_id(broker: EmbeddedBrokerEndpoint, user: str | None, hold_s: float) -> int:
    """Connect with the host's client id, hold it, leave; returns the CONNACK reason code."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=HOST_CLIENT_ID)
    client.reconnect_delay_set(60, 120)  # once pushed off, it stays off
    if user:
        client.username_pw_set(user, USERS[user].password)
    codes: list[int] = []
    client.on_connect = lambda c, u, f, rc, p: codes.append(rc.value)
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not codes and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(hold_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


async def speed_reaches(host: object, value: float, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metric = host.model.metric(GROUP, EDGE, CELL, "Speed")  # type: ignore[attr-defined]
        if metric is not None and metric.value == value:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the host never saw Speed={value}")


async def test_the_host_survives_an_anonymous_takeover_and_recovers_from_a_legitimate_one(
        broker: EmbeddedBrokerEndpoint) -> None:
    url = broker.url_for("mes", USERS["mes"].password)
    async with running_host(broker, broker_url=url, host_id="mes") as host:
        edge = PahoEdge(broker.host, broker.port)
        edge.client.username_pw_set("edge", USERS["edge"].password)
        with edge:
            edge.send(edge.script.nbirth())
            edge.send(edge.script.dbirth())
            edge.send(edge.script.ddata({"Speed": 1.0}))
            await speed_reaches(host, 1.0)

            # 1. the attack of the issue: anonymous, as the host, held for a while
            assert await asyncio.to_thread(hold_client_id, broker, None, 1.0) == 0x87  # 0x05 not authorized
            edge.send(edge.script.ddata({"Speed": 2.0}))
            await speed_reaches(host, 2.0)
            assert host.online and host.stats.reconnects == 0

            # 2. the host's own user takes the id: the host is dropped, comes back by itself
            assert await asyncio.to_thread(hold_client_id, broker, "mes", 1.0) == 0
            await host.wait_online(20)
            assert host.stats.reconnects == 1  # dropped once; its return pushed the other connection off for good
            edge.send(edge.script.ddata({"Speed": 3.0}))
            await speed_reaches(host, 3.0)
            assert host.model.metric(GROUP, EDGE, CELL, "Speed").quality.name == "GOOD"  # type: ignore[union-attr]
            assert host.stats.invalid_payloads == 0
    log = broker.log_path.read_text() if broker.log_path else ""
    assert "refused client 'uns-host-mes': client id 'uns-host-mes' is reserved" in log
    assert "client 'uns-host-mes' connected again (user 'mes'): closing its previous connection" in log
