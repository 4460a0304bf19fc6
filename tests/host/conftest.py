"""Fixtures for host tests against a real broker: a running SparkplugHost, a sniffer, an edge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from mes_adapter.host import HostConfig, SparkplugHost
from tests.host.edge import PahoEdge
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Captured, Sniffer
from uns.sparkplug.codec import decode_payload
from uns.sparkplug.topic import MessageType

LINE = "acme/plant1/packaging/line1"


@asynccontextmanager
async def running_host(broker: BrokerEndpoint, **overrides: object) -> AsyncIterator[SparkplugHost]:
    settings: dict[str, object] = {"broker_url": broker.url, "host_id": "mes", "conflation_interval_ms": 0,
                                   "rebirth_throttle_s": 3.0, "reconnect_min_s": 0.2}
    settings.update(overrides)
    host = SparkplugHost(HostConfig(**settings))  # type: ignore[arg-type]
    await host.start()
    try:
        await host.wait_online(15)
        yield host
    finally:
        await host.stop()


@pytest.fixture
def sniffer(mosquitto: BrokerEndpoint) -> Iterator[Sniffer]:
    with Sniffer(mosquitto.host, mosquitto.port) as s:
        yield s


@pytest.fixture
def edge(mosquitto: BrokerEndpoint) -> Iterator[PahoEdge]:
    with PahoEdge(mosquitto.host, mosquitto.port) as e:
        yield e


async def wait_for(sniffer: Sniffer, predicate: Callable[[Captured], bool], *, count: int = 1,
                   timeout: float = 10.0) -> list[Captured]:
    """Sniffer.wait_for off the event loop, so the host keeps running meanwhile."""
    return await asyncio.to_thread(sniffer.wait_for, predicate, count=count, timeout=timeout)


def latest_json(sniffer: Sniffer, topic: str) -> dict:
    found = sniffer.snapshot(lambda m: m.topic == topic)
    assert found, f"nothing on {topic}"
    return json.loads(found[-1].payload)


def rebirth_requests(sniffer: Sniffer, group: str, edge: str) -> list[Captured]:
    """NCMDs to this node that carry Node Control/Rebirth = true, by name, without seq."""
    topic = f"spBv1.0/{group}/NCMD/{edge}"
    out = []
    for m in sniffer.snapshot(lambda m: m.topic == topic):
        payload = decode_payload(m.payload, MessageType.NCMD)
        assert payload.seq is None  # tck-id-payloads-ncmd-seq
        assert payload.timestamp is not None  # tck-id-payloads-ncmd-timestamp
        assert m.qos == 0 and not m.retain  # tck-id-payloads-ncmd-qos, -retain
        if any(x.name == "Node Control/Rebirth" and x.value is True and x.alias is None for x in payload.metrics):
            out.append(m)
    return out
