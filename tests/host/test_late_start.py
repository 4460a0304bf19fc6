"""A host that starts late reaches the same mirror state as one that ran all along, without rebirths,
when the broker serves ``$sparkplug/certificates/...`` births (tck-id-conformance-mqtt-aware-nbirth-mqtt-topic,
-dbirth-mqtt-topic, -nbirth-mqtt-retain, -dbirth-mqtt-retain), and asks for a rebirth when it does not.

Two brokers: Mosquitto with the certificates published retained by the test (exactly what an aware
broker serves), and our embedded Sparkplug-aware broker, which stores them itself.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.host.conftest import rebirth_requests, running_host, wait_for
from tests.host.edge import DEVICE_METRICS, EDGE, GROUP, NODE_METRICS, PahoEdge
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.sparkplug.topic import certificate_topic, parse_node_topic

LINE = "acme/plant1/packaging/line1"
ROUND_2 = {"Speed": 61.5, "Temperature": 22.25, "Offset": -9, "Running": False, "Recipe": "SKU-13", "Counts": [4, 5]}


async def _late_start(broker: BrokerEndpoint, sniffer: Sniffer, *, publish_certificates: bool,
                      late_groups: list[str] | None = None) -> None:
    async with running_host(broker, host_id="early", mapping={"mirror_root": "a"}) as early:
        with PahoEdge(broker.host, broker.port) as edge:
            births = [edge.script.nbirth(), edge.script.dbirth()]
            for topic, data in births:
                edge.send((topic, data))
                if publish_certificates:  # what a Sparkplug-aware broker does with every birth
                    edge.send((certificate_topic(parse_node_topic(topic)), data), qos=1, retain=True)
            for i in range(5):  # traffic the late host never sees
                edge.send(edge.script.ddata({"Speed": float(i)}))
            await wait_for(sniffer, lambda m: m.topic == f"a/{LINE}/filler/Speed"
                           and json.loads(m.payload)["value"] == 4.0)

            async with running_host(broker, host_id="late", mapping={"mirror_root": "b"}, groups=late_groups) as late:
                await wait_for(sniffer, lambda m: m.topic == f"b/{LINE}/filler/Counts")  # learned from certificates
                edge.send(edge.script.ddata(ROUND_2))
                edge.send(edge.script.ndata({"Line/State": "IDLE", "Line/GoodCount": 1234}))
                await wait_for(sniffer, lambda m: m.topic == f"b/{LINE}/Line/GoodCount"
                               and json.loads(m.payload)["value"] == 1234)
                await wait_for(sniffer, lambda m: m.topic == f"a/{LINE}/Line/GoodCount"
                               and json.loads(m.payload)["value"] == 1234)
                await asyncio.sleep(0.3)
                # the same model and the same mirror
                for metric in early.model.metrics():
                    twin = late.model.metric(metric.group_id, metric.edge_node_id, metric.device_id, metric.name)
                    assert twin is not None and (twin.value, twin.quality, twin.source_timestamp_ms) == \
                        (metric.value, metric.quality, metric.source_timestamp_ms), metric.name
                names = [f"filler/{n}" for n, *_ in DEVICE_METRICS] + [n for n, *_ in NODE_METRICS]
                for name in names:
                    for suffix in ("", "/_meta"):
                        a = sniffer.snapshot(lambda m, t=f"a/{LINE}/{name}{suffix}": m.topic == t)[-1]
                        b = sniffer.snapshot(lambda m, t=f"b/{LINE}/{name}{suffix}": m.topic == t)[-1]
                        assert json.loads(a.payload) == json.loads(b.payload), name + suffix
                assert late.stats.certificates_used == 2
                assert late.stats.rebirths_requested == {} and late.stats.violations == {}
                assert rebirth_requests(sniffer, GROUP, EDGE) == []


@pytest.mark.mosquitto
async def test_late_host_uses_certificates_on_mosquitto(mosquitto: BrokerEndpoint, sniffer: Sniffer) -> None:
    await _late_start(mosquitto, sniffer, publish_certificates=True)


@pytest.mark.mosquitto
async def test_late_host_without_certificates_asks_for_one_rebirth(mosquitto: BrokerEndpoint, sniffer: Sniffer,
                                                                  edge: PahoEdge) -> None:
    edge.send(edge.script.nbirth())
    edge.send(edge.script.dbirth())
    async with running_host(mosquitto, host_id="late") as late:
        for _ in range(3):
            edge.send(edge.script.ddata({"Speed": 1.0}))
        await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{GROUP}/NCMD/{EDGE}")
        await asyncio.sleep(0.5)
        assert len(rebirth_requests(sniffer, GROUP, EDGE)) == 1
        assert late.stats.rebirths_requested == {"data_before_birth": 1}


async def test_late_host_uses_certificates_on_the_embedded_aware_broker(tmp_path) -> None:  # noqa: ANN001
    from tests.support.embedded_broker import embedded_broker

    with embedded_broker(tmp_path, websocket=False) as broker:
        with Sniffer(broker.host, broker.port, mqtt5=False) as sniffer:
            await _late_start(broker, sniffer, publish_certificates=False)


async def test_late_host_owning_the_group_uses_its_certificates(tmp_path) -> None:  # noqa: ANN001
    """``host.groups``: the group's certificate filter ($sparkplug/certificates/spBv1.0/<group>/#) on
    the embedded aware broker gives the same model as spBv1.0/#."""
    from tests.support.embedded_broker import embedded_broker

    with embedded_broker(tmp_path, websocket=False) as broker:
        with Sniffer(broker.host, broker.port, mqtt5=False) as sniffer:
            await _late_start(broker, sniffer, publish_certificates=False, late_groups=[GROUP])
