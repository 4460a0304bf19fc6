"""The edge node's /metrics, /healthz and /readyz over real HTTP, against a real broker and OPC UA server.

One run through a node's life: started (ready, births and data counted, OPC UA connected,
nothing stored), a validation drop, then the broker killed (not ready with the reason, MQTT
gauge 0, values going to store-and-forward with an age), then stopped (the port is closed).
The broker is ``uns broker run`` as a subprocess with its own endpoint, which the test scrapes
too: the certificates the edge's births left there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edge_node.app import EdgeNodeApp
from edge_node.config import EdgeConfig, loads_edge_config
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.observability.scrape import value
from tests.support.embedded_broker import embedded_broker
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)


def edge_config(server: TestOpcUaServer, broker_url: str, data_dir: Path) -> EdgeConfig:
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
http: {{host: 127.0.0.1, port: 0}}
sparkplug:
  brokers: [{broker_url}]
  publish_interval_ms: 50
  reconnect_min_s: 0.2
  reconnect_max_s: 0.5
  shutdown_timeout_s: 1
opcua:
  - url: {server.url}
    keepalive_interval_s: 0.2
    reconnect_min_s: 0.1
    reconnect_max_s: 0.5
    publishing_interval_ms: 50
    sampling_interval_ms: 0
tags:
  - {{node_id: "ns=2;s=Line1/State", metric: State, datatype: String}}
  - {{node_id: "ns=2;s=Line1/Filler/Speed", metric: Speed, cell: Filler, eng_low: 0, eng_high: 100}}
  - {{node_id: "ns=2;s=Line1/Capper/Speed", metric: Speed, cell: Capper}}
""")


async def eventually(check: Callable[[], object], what: str, timeout: float = 15.0) -> None:
    """Poll an async-returning or plain check until truthy; the HTTP calls need the loop free."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not reached after {timeout}s")
        await asyncio.sleep(0.1)


async def test_edge_metrics_and_probes_follow_the_node(tmp_path: Path) -> None:
    broker_cm = embedded_broker(tmp_path / "broker", websocket=False, metrics_port=free_port())
    broker = broker_cm.__enter__()
    broker_running = True
    server = await TestOpcUaServer().start()
    app = EdgeNodeApp(edge_config(server, broker.url, tmp_path / "edge"))
    try:
        await app.start()
        assert app.observability is not None and app.observability.port
        base = f"http://127.0.0.1:{app.observability.port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            async def metrics() -> str:
                response = await http.get("/metrics")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                return response.text

            assert (await http.get("/healthz")).json()["status"] == "ok"
            await app.wait_connected(15)
            await app.client.wait_birthed(15)
            await eventually(lambda: _ready(http), "/readyz 200")
            ready = (await http.get("/readyz")).json()
            assert ready["status"] == "ready"
            assert ready["checks"] == {"started": True, "mqtt_connected": True, "born": True, "opcua:default": True,
                                       "store": True}

            await server.write("Line1/Filler/Speed", 42.0)

            async def data_counted() -> bool:
                return bool((value(await metrics(), "uns_edge_data_messages_total") or 0) > 0)

            await eventually(data_counted, "DDATA counted")
            await server.write("Line1/Filler/Speed", 500.0)  # above eng_high: published BAD (issue 12)

            async def out_of_range_counted() -> bool:
                return value(await metrics(), "uns_edge_out_of_range_total") == 1

            await eventually(out_of_range_counted, "the out-of-range sample counted")
            assert value(await metrics(), "uns_edge_validation_dropped_total", reason="out_of_range") == 0
            text = await metrics()
            assert value(text, "uns_edge_info", group_id="acme:plant1", edge_node_id="packaging:line1") == 1
            assert value(text, "uns_edge_births_total", type="NBIRTH") == 1
            assert value(text, "uns_edge_births_total", type="DBIRTH") == 2  # Filler and Capper
            assert value(text, "uns_edge_mqtt_connected") == 1
            assert value(text, "uns_edge_born") == 1
            assert value(text, "uns_edge_bdseq") == 0
            assert value(text, "uns_edge_store_depth") == 0
            assert value(text, "uns_edge_store_oldest_age_seconds") == 0
            assert value(text, "uns_edge_opcua_connected", endpoint="default") == 1
            assert value(text, "uns_edge_opcua_reconnects_total", endpoint="default") == 0
            assert (value(text, "uns_edge_opcua_notifications_total", endpoint="default") or 0) >= 3
            assert (value(text, "uns_edge_messages_out_total") or 0) >= 4  # NBIRTH, 2 DBIRTH, NDATA/DDATA
            assert value(text, "uns_edge_command_outcomes_total", outcome="confirmed") == 0
            assert value(text, "uns_edge_commands_replayed_total") == 0
            assert value(text, "process_resident_memory_bytes")

            # the broker's own endpoint saw the births
            broker_text = (await asyncio.to_thread(httpx.get, f"{broker.metrics_url}/metrics", timeout=5)).text
            assert value(broker_text, "uns_broker_birth_certificates") == 3
            assert (value(broker_text, "uns_broker_clients_connected") or 0) >= 1
            assert (value(broker_text, "uns_broker_messages_received_total") or 0) >= 4

            # broker gone: not ready, with the reason; new values go to the store
            await asyncio.to_thread(broker_cm.__exit__, None, None, None)
            broker_running = False

            async def not_ready_for_mqtt() -> bool:
                response = await http.get("/readyz")
                return response.status_code == 503 and "MQTT not connected" in response.json()["detail"]

            await eventually(not_ready_for_mqtt, "/readyz 503 naming MQTT")
            body = (await http.get("/readyz")).json()
            assert body["status"] == "not_ready" and body["checks"]["mqtt_connected"] is False
            await server.write("Line1/Filler/Speed", 43.0)
            await server.write("Line1/Capper/Speed", 7.0)

            async def stored() -> bool:
                text = await metrics()
                return bool((value(text, "uns_edge_store_depth") or 0) >= 1
                            and (value(text, "uns_edge_mqtt_reconnects_total") or 0) >= 1)

            await eventually(stored, "values in store-and-forward while the broker is down")
            text = await metrics()
            assert value(text, "uns_edge_mqtt_connected") == 0
            assert value(text, "uns_edge_born") == 0
            assert (value(text, "uns_edge_values_stored_total") or 0) >= 1
            assert value(text, "uns_edge_opcua_connected", endpoint="default") == 1
        await app.stop()
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(timeout=2) as http:
                await http.get(f"{base}/healthz")
    finally:
        await app.stop()
        await server.stop()
        if broker_running:
            await asyncio.to_thread(broker_cm.__exit__, None, None, None)


async def _ready(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def test_readyz_names_the_opcua_endpoint_that_is_down(tmp_path: Path) -> None:
    """MQTT fine, OPC UA server absent: 503 naming the endpoint; the node still serves /metrics."""
    server = TestOpcUaServer()  # never started: nothing listens on its port
    with embedded_broker(tmp_path / "broker", websocket=False) as broker:
        app = EdgeNodeApp(edge_config(server, broker.url, tmp_path / "edge"))
        try:
            await app.start()
            assert app.observability is not None
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.observability.port}", timeout=5) as http:
                await app.client.wait_birthed(15)

                async def names_opcua() -> bool:
                    response = await http.get("/readyz")
                    return response.status_code == 503 and "OPC UA endpoint(s) not connected: default" in \
                        response.json()["detail"]

                await eventually(names_opcua, "/readyz 503 naming the OPC UA endpoint")
                text = (await http.get("/metrics")).text
                assert value(text, "uns_edge_opcua_connected", endpoint="default") == 0
                assert (value(text, "uns_edge_opcua_connect_failures_total", endpoint="default") or 0) >= 1
                assert value(text, "uns_edge_mqtt_connected") == 1
        finally:
            await app.stop()


async def test_taken_port_is_logged_and_the_node_runs_without_the_endpoint(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    server = TestOpcUaServer()
    config = edge_config(server, "mqtt://127.0.0.1:1", tmp_path / "edge")
    config = config.model_copy(update={"http": config.http.model_copy(update={"port": taken})})  # type: ignore[union-attr]
    app = EdgeNodeApp(config)
    try:
        await app.start()
        assert app.observability is None
        assert app.client is not None  # the data path started anyway
        assert any("cannot serve /metrics" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    finally:
        await app.stop()
        blocker.close()


def test_http_section_is_optional_and_null_port_disables_it(tmp_path: Path) -> None:
    server = TestOpcUaServer()
    base = edge_config(server, "mqtt://127.0.0.1:1", tmp_path)
    assert base.http is not None and base.http.port == 0
    without = base.model_copy(update={"http": None})
    assert EdgeNodeApp(without).observability is None
    from edge_node.config import HttpEndpointConfig

    assert HttpEndpointConfig().model_dump() == {"host": "127.0.0.1", "port": 9102}
    assert HttpEndpointConfig(port=None).port is None
