"""End to end: OPC UA server → EdgeNodeApp (source + validation + SparkplugEdgeClient) → Mosquitto → sniffer.

Sparkplug 3.0 rules observed on the wire (by tck-id):
tck-id-message-flow-device-birth-publish-nbirth-wait (a DBIRTH only after the NBIRTH),
tck-id-topics-dbirth-metrics and tck-id-operational-behavior-data-publish-dbirth-values (each DBIRTH
carries the current values, read from OPC UA at (re)connect), tck-id-topics-ddata-payload,
tck-id-payloads-propertyset-quality-value-type and -value-value (Quality Int32, 0 = BAD; Bad OPC UA
quality as is_null without a value), tck-id-operational-behavior-device-ddeath (DDEATH when a
device's OPC UA server is gone), then a new DBIRTH when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_node.app import EdgeNodeApp, metric_definitions
from edge_node.config import EdgeConfig, loads_edge_config
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.edge_node.recording_sink import RecordingSink
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Captured, Sniffer
from uns.conventions import PROP_QUALITY, PROP_STATUS_CODE
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.model import Payload
from uns.sparkplug.topic import MessageType, SparkplugTopic, parse_topic

pytestmark = pytest.mark.timeout(90)

GROUP, EDGE = "acme:plant1", "packaging:line1"


def make_config(server: TestOpcUaServer, broker_url: str, data_dir: Path) -> EdgeConfig:
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {data_dir}
sparkplug:
  brokers: [{broker_url}]
  publish_interval_ms: 50
opcua:
  - url: {server.url}
    keepalive_interval_s: 0.2
    reconnect_min_s: 0.1
    reconnect_max_s: 0.5
    publishing_interval_ms: 50
    sampling_interval_ms: 0
tags:
  - {{node_id: "ns=2;s=Line1/State", metric: State, datatype: String}}
  - {{node_id: "ns=2;s=Line1/Filler/Speed", metric: Speed, cell: Filler, unit: parts/min, eng_low: 0, eng_high: 100}}
  - {{node_id: "ns=2;s=Line1/Filler/GoodCount", metric: GoodCount, cell: Filler, datatype: UInt32}}
  - {{node_id: "ns=2;s=Line1/Capper/Speed", metric: Speed, cell: Capper}}
  - {{node_id: "ns=2;s=Line1/Capper/Running", metric: Running, cell: Capper, datatype: Boolean}}
""")


def decoded(messages: list[Captured]) -> list[tuple[SparkplugTopic, Payload]]:
    """Decode the edge node's messages in arrival order, learning aliases from the births."""
    catalog = EdgeNodeCatalog()
    out: list[tuple[SparkplugTopic, Payload]] = []
    for msg in messages:
        topic = parse_topic(msg.topic)
        if not isinstance(topic, SparkplugTopic) or topic.node != (GROUP, EDGE):
            continue
        kind = topic.message_type
        if kind is MessageType.NDEATH:
            continue
        payload = catalog.decode(kind, msg.payload, topic.device_id)
        if kind is MessageType.NBIRTH:
            catalog.learn_nbirth(payload)
        elif kind is MessageType.DBIRTH:
            assert topic.device_id is not None
            catalog.learn_dbirth(topic.device_id, payload)
        out.append((topic, payload))
    return out


def of(messages: list[tuple[SparkplugTopic, Payload]], kind: MessageType, device: str | None = None,
       ) -> list[Payload]:
    return [p for t, p in messages if t.message_type is kind and (device is None or t.device_id == device)]


def metric_values(payload: Payload) -> dict[str, object]:
    return {m.name: m.value for m in payload.metrics if m.name is not None}


@contextlib.asynccontextmanager
async def running_app(config: EdgeConfig) -> AsyncIterator[EdgeNodeApp]:
    app = EdgeNodeApp(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def wait_until(predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


@pytest.mark.mosquitto
async def test_opcua_to_sparkplug_end_to_end(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    server = await TestOpcUaServer().start()
    sniffer = Sniffer(mosquitto.host, mosquitto.port, ("spBv1.0/#",)).start()
    try:
        async with running_app(make_config(server, mosquitto.url, tmp_path / "edge")) as app:
            await app.wait_connected(15)
            on_wire = lambda: decoded(sniffer.snapshot())  # noqa: E731
            msgs = await wait_until(lambda: (m := on_wire()) and len(of(m, MessageType.DBIRTH)) >= 2 and m)

            # NBIRTH first, then one DBIRTH per cell with the current values, unit in properties
            kinds = [t.message_type for t, _ in msgs]
            assert kinds[0] is MessageType.NBIRTH
            nbirth = of(msgs, MessageType.NBIRTH)[0]
            # the first NBIRTH waited for the OPC UA read (sparkplug.first_birth_wait_s): the
            # line-level tag is born with its value, not null, and is not re-sent as NDATA
            assert metric_values(nbirth)["State"] == "Idle"
            assert not [m for p in of(msgs, MessageType.NDATA) for m in p.metrics if m.value == "Idle"]
            filler = of(msgs, MessageType.DBIRTH, "Filler")[0]
            assert metric_values(filler)["Speed"] == 10.0 and metric_values(filler)["GoodCount"] == 0
            assert {t.device_id for t, _ in msgs if t.message_type is MessageType.DBIRTH} == {"Filler", "Capper"}

            # a value change becomes DDATA with the right value and the SourceTimestamp
            await server.write("Line1/Filler/Speed", 55.5)
            ddata = await wait_until(lambda: [m for p in of(on_wire(), MessageType.DDATA, "Filler")
                                              for m in p.metrics if m.value == 55.5])
            assert ddata[0].timestamp is not None

            # Bad quality: is_null, Quality 0, raw StatusCode
            await server.write("Line1/Filler/GoodCount", None, status=0x808C0000)
            bad = await wait_until(lambda: [m for p in of(on_wire(), MessageType.DDATA, "Filler")
                                            for m in p.metrics if m.is_null])
            assert bad[0].properties is not None
            assert bad[0].properties[PROP_QUALITY].value == 0
            assert bad[0].properties[PROP_STATUS_CODE].value == 0x808C0000

            # the OPC UA server goes away: DDEATH for both cells, then DBIRTH again when it is back
            births_before = len(of(on_wire(), MessageType.DBIRTH))
            await server.stop()
            await wait_until(lambda: len(of(on_wire(), MessageType.DDEATH)) == 2)
            assert {t.device_id for t, _ in on_wire() if t.message_type is MessageType.DDEATH} == {"Filler", "Capper"}
            await server.start()
            msgs = await wait_until(
                lambda: (m := on_wire()) and len(of(m, MessageType.DBIRTH)) >= births_before + 2 and m, timeout=20)
            kinds = [(t.message_type, t.device_id) for t, _ in msgs]
            last_death = max(i for i, k in enumerate(kinds) if k[0] is MessageType.DDEATH)
            rebirths = [k for k in kinds[last_death:] if k[0] is MessageType.DBIRTH]
            assert {d for _, d in rebirths} == {"Filler", "Capper"}
            assert metric_values(of(msgs, MessageType.DBIRTH, "Filler")[-1])["Speed"] == 10.0  # fresh read

            # and the new subscription delivers
            await server.write("Line1/Capper/Speed", 8.25)
            await wait_until(lambda: [m for p in of(on_wire(), MessageType.DDATA, "Capper")
                                      for m in p.metrics if m.value == 8.25])
            stats = app.stats
            assert stats["opcua"]["default"]["disconnects"] == 1
            assert stats["validation"]["bad_episodes"] >= 1
    finally:
        sniffer.stop()
        await server.stop()


async def test_app_with_a_fake_client_and_definitions(tmp_path: Path) -> None:
    """Wiring without a broker: definitions from the tag map, updates reach the client."""
    server = await TestOpcUaServer().start()
    sink = RecordingSink()
    created: list[tuple[object, list, Path]] = []

    class FakeClient(RecordingSink):
        async def __aenter__(self) -> FakeClient:
            return self

        async def __aexit__(self, *exc: object) -> None:
            self.events.append(("closed", None))

    def factory(spb, definitions, data_dir):  # type: ignore[no-untyped-def]
        created.append((spb, definitions, data_dir))
        client = FakeClient()
        client.events = sink.events
        return client

    try:
        config = make_config(server, "mqtt://127.0.0.1:1", tmp_path / "edge")
        async with running_app_factory(config, factory) as app:
            await app.wait_connected(10)
            spb, definitions, data_dir = created[0]
            assert (spb.group_id, spb.edge_node_id) == (GROUP, EDGE)
            assert data_dir == tmp_path / "edge"
            assert definitions == metric_definitions(config)
            speed = next(d for d in definitions if d.device_id == "Filler" and d.name == "Speed")
            assert (speed.unit, speed.eng_low, speed.eng_high) == ("parts/min", 0, 100)
            await server.write("Line1/Capper/Running", True)
            await sink.wait_for(lambda: [u for u in sink.data("Running", "Capper") if u.value is True])
        assert sink.events[-1] == ("closed", None)
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def running_app_factory(config: EdgeConfig, factory) -> AsyncIterator[EdgeNodeApp]:  # type: ignore[no-untyped-def]
    app = EdgeNodeApp(config, client_factory=factory)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()
