"""SparkplugEdgeClient against a real Mosquitto, watched by an MQTT 5 sniffer (QoS and retain as published)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from edge_node.model import DeviceOnline, MetricDefinition, MetricUpdate
from edge_node.mqtt_client import SparkplugEdgeClient
from tests.support.mosquitto import BrokerEndpoint, mosquitto_broker
from tests.support.sniffer import Sniffer
from uns.conventions import BDSEQ, NODE_NEXT_SERVER, NODE_REBIRTH
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Metric, Payload, now_ms
from uns.sparkplug.topic import MessageType

from .sparkplug_wire import Host, bd_seq, changes, edge_messages, eventually, fast_config, kind, payload, sniffed

pytestmark = pytest.mark.mosquitto

DEFS = [
    MetricDefinition(None, "Line/Speed", DataType.Double, unit="m/min"),
    MetricDefinition("Filler", "Count", DataType.Int64),
    MetricDefinition("Filler", "Running", DataType.Boolean, writable=True),
]


def of_kind(sniffer: Sniffer, k: str) -> list:
    return [m for m in edge_messages(sniffer) if kind(m) == k]


async def test_births_data_and_clean_death_on_the_wire(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """NBIRTH/DBIRTH/DDATA/NDEATH flags and contents as a host sees them.

    tck-id-topics-nbirth-mqtt, -seq-num, -bdseq-included, -rebirth-metric, tck-id-payloads-alias-birth-requirement,
    tck-id-topics-dbirth-seq, tck-id-payloads-alias-data-cmd-requirement, tck-id-payloads-metric-datatype-not-req,
    tck-id-topics-ddata-mqtt, tck-id-operational-behavior-edge-node-intentional-disconnect-ndeath,
    tck-id-payloads-ndeath-will-message-qos, tck-id-payloads-ndeath-bdseq.
    """
    with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
        async with SparkplugEdgeClient(fast_config([mosquitto.url]), DEFS, tmp_path) as client:
            await client.device_online(DeviceOnline("Filler", [MetricUpdate("Filler", "Count", 0, now_ms())]))
            await client.wait_birthed(10)
            for i in range(1, 6):
                client.submit(MetricUpdate("Filler", "Count", i, now_ms()))
                client.submit(MetricUpdate(None, "Line/Speed", float(i), now_ms()))
                await asyncio.sleep(0.03)
            await eventually(lambda: client.stats.values_confirmed == 10, what="10 confirmed values")
            assert client.connected and client.birthed
        await sniffed(sniffer, lambda m: kind(m) == "NDEATH")
        messages = edge_messages(sniffer)
    kinds = [kind(m) for m in messages]
    assert kinds[:2] == ["NBIRTH", "DBIRTH"] and kinds[-1] == "NDEATH"
    nbirth, dbirth = messages[0], messages[1]
    assert (nbirth.qos, nbirth.retain, dbirth.qos, dbirth.retain) == (0, False, 0, False)
    body = payload(nbirth)
    assert body.HasField("seq") and body.seq == 0 and payload(dbirth).seq == 1
    metrics = {m.name: m for m in body.metrics}
    assert metrics[BDSEQ].datatype == DataType.Int64 and metrics[BDSEQ].long_value == 0
    rebirth = metrics[NODE_REBIRTH]
    assert rebirth.datatype == DataType.Boolean and not rebirth.boolean_value and not rebirth.HasField("alias")
    for message in (nbirth, dbirth):
        for metric in payload(message).metrics:
            assert metric.HasField("name") and metric.HasField("datatype") and metric.HasField("timestamp")
            if metric.name not in (BDSEQ, NODE_REBIRTH, NODE_NEXT_SERVER):  # control metrics by name only
                assert metric.HasField("alias")
    data = [m for m in messages if kind(m) in ("NDATA", "DDATA")]
    assert data and all((m.qos, m.retain) == (0, False) for m in data)
    for message in data:
        for metric in payload(message).metrics:
            assert metric.HasField("alias") and not metric.HasField("name") and not metric.HasField("datatype")
    seqs = [payload(m).seq for m in messages if kind(m) != "NDEATH"]
    assert seqs == [i % 256 for i in range(len(seqs))]
    assert sorted(c.value for c in changes(messages) if c.name == "Count") == [1, 2, 3, 4, 5]
    deaths = [m for m in messages if kind(m) == "NDEATH"]  # ours, then (MQTT 5, reason 0x04) the broker's Will
    assert all((d.qos, d.retain) == (1, False) and bd_seq(d) == 0 and not payload(d).HasField("seq") for d in deaths)
    assert [m.name for m in payload(deaths[0]).metrics] == [BDSEQ]


async def test_rebirth_on_ncmd_is_throttled_and_keeps_bdseq(mosquitto: BrokerEndpoint, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """tck-id-operational-behavior-data-commands-rebirth-action-1/2/3; throttled to one per rebirth_throttle_s.
    Every birth and every honoured rebirth request is one INFO line (issue 17: logs a plant can read)."""
    caplog.set_level(logging.INFO, logger="edge_node")
    rebirth = encode_payload(Payload(metrics=[Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean)],
                                     timestamp=now_ms()), MessageType.NCMD)
    host = Host(mosquitto.host, mosquitto.port)
    try:
        with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
            config = fast_config([mosquitto.url], rebirth_throttle_s=1.0)
            async with SparkplugEdgeClient(config, DEFS, tmp_path) as client:
                await client.device_online(DeviceOnline("Filler"))
                await client.wait_birthed(10)
                await asyncio.sleep(1.0)  # past the throttle window of the first birth
                host.publish("spBv1.0/G/NCMD/E", rebirth)
                await sniffed(sniffer, lambda m: kind(m) == "NBIRTH", count=2, timeout=5)
                host.publish("spBv1.0/G/NCMD/E", rebirth)  # inside the window: deferred
                await asyncio.sleep(0.4)
                assert len(of_kind(sniffer, "NBIRTH")) == 2
                await sniffed(sniffer, lambda m: kind(m) == "NBIRTH", count=3, timeout=5)
                assert client.stats.rebirths == 2 and client.stats.rebirths_throttled == 1
            messages = edge_messages(sniffer)
    finally:
        host.close()
    births = [m for m in messages if kind(m) == "NBIRTH"]
    assert [payload(b).seq for b in births] == [0, 0, 0]
    assert [bd_seq(b) for b in births] == [0, 0, 0]
    lifecycle = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO
                 and ("published on" in r.getMessage() or r.getMessage().startswith("rebirth request"))]
    birth = ["NBIRTH published on spBv1.0/G/NBIRTH/E (bdSeq 0)",
             "DBIRTH published on spBv1.0/G/DBIRTH/E/Filler (bdSeq 0)"]
    assert lifecycle[:9] == [*birth, "rebirth requested (NCMD Node Control/Rebirth): publishing a new birth sequence",
                             *birth, lifecycle[5], "rebirth requested earlier (throttled) is due: publishing a new "
                             "birth sequence", *birth]
    assert lifecycle[5].startswith("rebirth request throttled; rebirth at +")
    # every NBIRTH is followed by the DBIRTH, and seq restarts
    for i, message in enumerate(messages):
        if kind(message) == "NBIRTH":
            assert kind(messages[i + 1]) == "DBIRTH" and payload(messages[i + 1]).seq == 1


async def test_primary_host_gating_offline_and_stale_state(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """tck-id-message-flow-edge-node-birth-publish-phid-wait(-online, -timestamp), …-phid-offline,
    tck-id-operational-behavior-edge-node-termination-host-offline(-timestamp, -reconnect)."""
    host = Host(mosquitto.host, mosquitto.port)
    try:
        with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
            config = fast_config([mosquitto.url], primary_host_id="H")
            async with SparkplugEdgeClient(config, DEFS, tmp_path) as client:
                await eventually(lambda: client.connected, what="connected")
                await asyncio.sleep(0.5)
                assert of_kind(sniffer, "NBIRTH") == [] and not client.birthed
                host.state("H", True, 1000)
                await client.wait_birthed(5)
                host.state("H", False, 999)  # older than the online: ignored
                await asyncio.sleep(0.5)
                assert client.birthed and of_kind(sniffer, "NDEATH") == []
                assert client.stats.stale_state == 1
                host.state("H", False, 2000)
                await sniffed(sniffer, lambda m: kind(m) == "NDEATH", timeout=5)
                await eventually(lambda: client.stats.reconnects >= 1 and client.connected, what="reconnected")
                await asyncio.sleep(0.3)
                assert len(of_kind(sniffer, "NBIRTH")) == 1  # waits again: the retained STATE says offline
                host.state("H", True, 3000)
                await sniffed(sniffer, lambda m: kind(m) == "NBIRTH", count=2, timeout=5)
            messages = edge_messages(sniffer)
    finally:
        host.close()
    births = [m for m in messages if kind(m) == "NBIRTH"]
    first_death = next(m for m in messages if kind(m) == "NDEATH")
    assert bd_seq(first_death) == bd_seq(births[0]) == 0
    assert bd_seq(births[1]) == 1  # a new CONNECT, a new bdSeq


async def test_failover_to_the_second_broker(tmp_path: Path) -> None:
    """Several servers in order: when the first goes away the edge moves to the next
    (tck-id-operational-behavior-primary-application-state-with-multiple-servers-single-server)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with mosquitto_broker(tmp_path / "b") as second:
        with Sniffer(second.host, second.port) as sniffer_b:
            with mosquitto_broker(tmp_path / "a") as first:
                with Sniffer(first.host, first.port) as sniffer_a:
                    config = fast_config([first.url, second.url])
                    client = SparkplugEdgeClient(config, DEFS, tmp_path / "edge")
                    await client.start()
                    try:
                        await client.wait_birthed(10)
                        assert client.stats.broker == first.url
                        assert of_kind(sniffer_b, "NBIRTH") == []
                        client.submit(MetricUpdate(None, "Line/Speed", 1.0, now_ms()))
                        await sniffed(sniffer_a, lambda m: kind(m) == "NDATA", timeout=5)
                    except BaseException:
                        await client.stop()
                        raise
            # the first broker is stopped (by PID) here
            try:
                await sniffed(sniffer_b, lambda m: kind(m) == "NBIRTH", timeout=10)
                await eventually(lambda: client.stats.broker == second.url, what="on the second broker")
                client.submit(MetricUpdate(None, "Line/Speed", 2.0, now_ms()))
                await sniffed(sniffer_b, lambda m: kind(m) == "NDATA", timeout=5)
            finally:
                await client.stop()
            assert bd_seq(of_kind(sniffer_b, "NBIRTH")[0]) == 1


async def test_seq_continues_across_many_messages_and_wraps(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """tck-id-payloads-sequence-num-incrementing (255 -> 0) on the wire, node and device share it."""
    with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
        async with SparkplugEdgeClient(fast_config([mosquitto.url], publish_interval_ms=5), DEFS, tmp_path) as client:
            await client.device_online(DeviceOnline("Filler"))
            await client.wait_birthed(10)
            for i in range(170):
                client.submit(MetricUpdate("Filler", "Count", i, now_ms()))
                client.submit(MetricUpdate(None, "Line/Speed", float(i), now_ms()))
                await asyncio.sleep(0.006)
            await eventually(lambda: client.stats.values_confirmed == 340, timeout=15, what="all confirmed")
        messages = [m for m in edge_messages(sniffer) if kind(m) != "NDEATH"]
    seqs = [payload(m).seq for m in messages]
    assert len(seqs) > 256
    assert seqs == [i % 256 for i in range(len(seqs))]


async def test_mqtt_311_clean_session_and_ndeath_before_disconnect(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    """MQTT 3.1.1: the edge publishes NDEATH itself, then a plain DISCONNECT (which discards the Will)
    (tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt311)."""
    with Sniffer(mosquitto.host, mosquitto.port) as sniffer:
        async with SparkplugEdgeClient(fast_config([mosquitto.url], mqtt_version="3.1.1"), DEFS, tmp_path) as client:
            await client.wait_birthed(10)
            client.submit(MetricUpdate(None, "Line/Speed", 1.0, now_ms()))
            await eventually(lambda: client.stats.values_confirmed == 1, what="the value echoed")
        await sniffed(sniffer, lambda m: kind(m) == "NDEATH")
        await asyncio.sleep(0.3)
        deaths = of_kind(sniffer, "NDEATH")
    assert len(deaths) == 1 and (deaths[0].qos, deaths[0].retain) == (1, False) and bd_seq(deaths[0]) == 0


async def test_next_server_ncmd_moves_the_edge_to_the_next_broker(tmp_path: Path) -> None:
    """``Node Control/Next Server`` = true on the first broker: NDEATH there (same bdSeq as the
    NBIRTH, tck-id-payloads-ndeath-bdseq), then births on the second broker with a new bdSeq; the
    command is born false in each NBIRTH."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    command = encode_payload(Payload(metrics=[Metric(name=NODE_NEXT_SERVER, value=True, datatype=DataType.Boolean)],
                                     timestamp=now_ms()), MessageType.NCMD)
    with mosquitto_broker(tmp_path / "a") as first, mosquitto_broker(tmp_path / "b") as second, \
            Sniffer(first.host, first.port) as sniffer_a, Sniffer(second.host, second.port) as sniffer_b:
        host = Host(first.host, first.port)
        try:
            async with SparkplugEdgeClient(fast_config([first.url, second.url]), DEFS, tmp_path / "edge") as client:
                await client.wait_birthed(10)
                host.publish("spBv1.0/G/NCMD/E", command)
                await sniffed(sniffer_a, lambda m: kind(m) == "NDEATH", timeout=5)
                await sniffed(sniffer_b, lambda m: kind(m) == "NBIRTH", timeout=10)
                await eventually(lambda: client.stats.broker == second.url, what="on the second broker")
                assert client.stats.as_dict()["next_server_requests"] == 1
        finally:
            host.close()
        births_a, births_b = of_kind(sniffer_a, "NBIRTH"), of_kind(sniffer_b, "NBIRTH")
        assert bd_seq(of_kind(sniffer_a, "NDEATH")[0]) == bd_seq(births_a[0]) == 0
        assert len(births_a) == 1 and bd_seq(births_b[0]) == 1
        born = {m.name: m.boolean_value for m in payload(births_b[0]).metrics if m.name == NODE_NEXT_SERVER}
        assert born == {NODE_NEXT_SERVER: False}
