"""The OPC UA source against a real asyncua server on a free loopback port.

Checks: births with current values, live data through validation, Bad quality from the server,
a server restart (DeviceOffline → jittered reconnect → DeviceOnline on a new Client with fresh
subscriptions), the server-side deadband, and Basic256Sha256 SignAndEncrypt with a client
certificate generated on first run, a trust list and a username/password.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from edge_node.config import EdgeConfig, loads_edge_config
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.edge_node.recording_sink import RecordingSink
from tests.edge_node.running import running_source
from uns.conventions import PROP_QUALITY, PROP_QUALITY_REASON, PROP_RAW_VALUE, PROP_STATUS_CODE

pytestmark = pytest.mark.timeout(60)


def make_config(server: TestOpcUaServer, endpoint_extra: str = "", tags: str | None = None) -> EdgeConfig:
    tags = tags or """
  - {node_id: "ns=2;s=Line1/State", metric: State, datatype: String}
  - {node_id: "nsu=urn:uns-hub:test;s=Line1/Filler/Speed", metric: Speed, cell: Filler, eng_low: 0, eng_high: 100}
  - {node_id: "ns=2;s=Line1/Filler/GoodCount", metric: GoodCount, cell: Filler, datatype: UInt32}
  - {node_id: "ns=2;s=Line1/Filler/Temperature", metric: Temperature, cell: Filler, deadband: 1.0}
  - {node_id: "ns=2;s=Line1/Capper/Speed", metric: Speed, cell: Capper}
  - {node_id: "ns=2;s=Line1/Capper/Missing", metric: Missing, cell: Capper}
"""
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
opcua:
  - url: {server.url}
    keepalive_interval_s: 0.2
    reconnect_min_s: 0.1
    reconnect_max_s: 0.5
    publishing_interval_ms: 50
    sampling_interval_ms: 0
{endpoint_extra}
tags:{tags}
""")


async def test_births_live_values_bad_quality_and_unknown_nodes(tmp_path: Path) -> None:
    async with TestOpcUaServer() as server:
        stamp = dt.datetime(2026, 12, 3, 4, 0, 0, 250000, tzinfo=dt.UTC)
        await server.write("Line1/Filler/Temperature", 20.5, status=0x40900000, source_ts=stamp)  # Uncertain
        sink = RecordingSink()
        async with running_source(make_config(server), sink, tmp_path) as source:
            await asyncio.wait_for(source.connected.wait(), 10)
            online = {e.device_id: e for k, e in sink.events if k == "online"}
            assert set(online) == {"Filler", "Capper"}
            filler = {u.name: u.value for u in online["Filler"].current}
            assert filler == {"Speed": 10.0, "GoodCount": 0, "Temperature": 20.5}
            # the birth states the server's value, SourceTimestamp and StatusCode as read (issue 20:
            # decoded from the ReadResponse bytes, edge_node.opcua.notifications.read_samples)
            temperature = next(u for u in online["Filler"].current if u.name == "Temperature")
            assert temperature.timestamp == int(stamp.timestamp() * 1000)
            assert temperature.properties is not None
            assert {k: p.value for k, p in temperature.properties.items() if k in (PROP_QUALITY, PROP_STATUS_CODE)} \
                == {PROP_STATUS_CODE: 0x40900000}
            capper = {u.name: u for u in online["Capper"].current}
            # an unknown node is born Bad: is_null, Quality 0, BadNodeIdUnknown
            missing = capper["Missing"]
            assert missing.is_null and missing.properties is not None
            assert missing.properties[PROP_QUALITY].value == 0
            assert missing.properties[PROP_STATUS_CODE].value == 0x80340000
            assert source.stats.unknown_nodes == 1 and source.stats.monitored_items == 5
            # a line-level tag is a node metric (device None): its value read at connect is the
            # current value (the NBIRTH carries it), not a change
            assert [u.value for u in sink.current("State")] == ["Idle"] and sink.data("State") == []

            source_ts = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=3)
            await server.write("Line1/Filler/Speed", 42.5, source_ts=source_ts)
            speed = await sink.wait_for(lambda: [u for u in sink.data("Speed", "Filler") if u.value == 42.5])
            assert speed[0].timestamp == int(source_ts.timestamp() * 1000)  # SourceTimestamp

            await server.write("Line1/Filler/Speed", 500.0)  # outside 0..100: published Bad (issue 12)
            spike = await sink.wait_for(lambda: [u for u in sink.data("Speed", "Filler") if u.is_null])
            assert spike[0].properties is not None and spike[0].properties[PROP_QUALITY].value == 0
            assert spike[0].properties[PROP_QUALITY_REASON].value == "out_of_range"
            assert spike[0].properties[PROP_RAW_VALUE].value == "500.0"
            assert source.validation_stats.out_of_range == 1

            await server.write("Line1/Filler/GoodCount", None, status=0x808C0000)  # BadSensorFailure
            bad = await sink.wait_for(lambda: [u for u in sink.data("GoodCount", "Filler") if u.is_null])
            assert bad[0].properties[PROP_QUALITY].value == 0  # type: ignore[index]
            assert bad[0].properties[PROP_STATUS_CODE].value == 0x808C0000  # type: ignore[index]

            await server.write("Line1/Filler/GoodCount", 7, status=0x40900000)  # UncertainLastUsableValue
            uncertain = await sink.wait_for(lambda: [u for u in sink.data("GoodCount", "Filler") if u.value == 7])
            assert uncertain[0].properties[PROP_STATUS_CODE].value == 0x40900000  # type: ignore[index]
            # first value after a Bad episode says GOOD (192) explicitly; Uncertain shows in StatusCode
            assert uncertain[0].properties[PROP_QUALITY].value == 192  # type: ignore[index]


async def test_server_side_absolute_deadband(tmp_path: Path) -> None:
    async with TestOpcUaServer() as server:
        sink = RecordingSink()
        async with running_source(make_config(server), sink, tmp_path) as source:
            await asyncio.wait_for(source.connected.wait(), 10)
            assert source.stats.server_deadband_refused == 0  # asyncua applies Absolute deadbands
            await asyncio.sleep(0.3)
            for value in (20.4, 20.8, 25.0):
                await server.write("Line1/Filler/Temperature", value)
                await asyncio.sleep(0.15)
            await sink.wait_for(lambda: [u for u in sink.data("Temperature", "Filler") if u.value == 25.0])
            values = [u.value for u in sink.data("Temperature", "Filler")]
            assert 20.4 not in values and 20.8 not in values


async def test_server_restart_device_death_then_rebirth_with_fresh_subscriptions(tmp_path: Path) -> None:
    server = TestOpcUaServer()
    await server.start()
    sink = RecordingSink()
    try:
        async with running_source(make_config(server), sink, tmp_path) as source:
            await asyncio.wait_for(source.connected.wait(), 10)
            await server.write("Line1/Capper/Speed", 6.0)
            await sink.wait_for(lambda: sink.data("Speed", "Capper"))
            first_client = source.connection.client

            await server.stop()
            await sink.wait_for(lambda: sink.kinds("Capper") == ["online", "offline"])
            assert sink.kinds("Filler") == ["online", "offline"]
            # the line-level tag cannot die with a device: it turns Bad (BadNoCommunication)
            state = await sink.wait_for(lambda: [u for u in sink.data("State") if u.is_null])
            assert state[0].properties[PROP_STATUS_CODE].value == 0x80310000  # type: ignore[index]
            await asyncio.sleep(0.5)  # a few refused reconnects with backoff
            assert source.stats.connect_failures >= 1

            await server.start()  # same port, values back to their initial state
            await sink.wait_for(lambda: sink.kinds("Capper") == ["online", "offline", "online"], timeout=15)
            rebirth = [e for k, e in sink.events if k == "online" and e.device_id == "Capper"][-1]
            assert {u.name: u.value for u in rebirth.current}["Speed"] == 5.0
            assert source.connection.client is not first_client  # a new Client, not a reused one
            assert source.stats.connects == 2 and source.stats.disconnects == 1

            # the new subscription delivers changes
            await server.write("Line1/Capper/Speed", 7.5)
            await sink.wait_for(lambda: [u for u in sink.data("Speed", "Capper") if u.value == 7.5])
            assert [u.value for u in sink.current("State")][-1] == "Idle"  # node metric recovered
    finally:
        await server.stop()


async def _secure_server(tmp_path: Path, **kwargs: Any) -> TestOpcUaServer:
    return await TestOpcUaServer(secure_dir=tmp_path / "server-pki", users={"edge": "s3cret"}, **kwargs).start()


async def test_sign_and_encrypt_with_generated_certificate_trust_list_and_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = await _secure_server(tmp_path)
    try:
        trusted = tmp_path / "trusted"
        trusted.mkdir()
        assert server.cert_path is not None
        (trusted / "server.der").write_bytes(server.cert_path.read_bytes())
        monkeypatch.setenv("TEST_OPCUA_PASSWORD", "s3cret")
        extra = f"""    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    trust_dir: {trusted}
    username: edge
    password_env: TEST_OPCUA_PASSWORD"""
        sink = RecordingSink()
        data_dir = tmp_path / "edge"
        async with running_source(make_config(server, extra), sink, data_dir) as source:
            await asyncio.wait_for(source.connected.wait(), 15)
            assert (data_dir / "pki" / "own" / "client_cert.der").exists()  # generated on first run
            assert (data_dir / "pki" / "own" / "client_key.pem").exists()
            await server.write("Line1/Filler/Speed", 33.0)
            await sink.wait_for(lambda: [u for u in sink.data("Speed", "Filler") if u.value == 33.0])
            policy = source.connection.client.security_policy  # type: ignore[union-attr]
            assert policy.URI.endswith("#Basic256Sha256") and int(policy.Mode) == 3  # SignAndEncrypt
    finally:
        await server.stop()


async def test_untrusted_server_certificate_is_refused_and_saved(tmp_path: Path) -> None:
    server = await _secure_server(tmp_path)
    try:
        extra = f"""    security_policy: Basic256Sha256
    security_mode: Sign
    trust_dir: {tmp_path / 'empty-trust'}
    username: edge
    password: s3cret"""
        sink = RecordingSink()
        data_dir = tmp_path / "edge"
        async with running_source(make_config(server, extra), sink, data_dir) as source:
            await sink.wait_for(lambda: source.stats.connect_failures >= 1, timeout=15)
            assert not source.connected.is_set() and sink.events == []
            assert list((data_dir / "pki" / "rejected").glob("*.der")), "rejected cert saved for review"
            assert "Untrusted" in source.stats.last_error or "BadCertificate" in source.stats.last_error
    finally:
        await server.stop()


async def test_wrong_password_never_connects(tmp_path: Path) -> None:
    server = await _secure_server(tmp_path)
    try:
        extra = """    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
    username: edge
    password: wrong"""
        sink = RecordingSink()
        async with running_source(make_config(server, extra), sink, tmp_path / "edge") as source:
            await sink.wait_for(lambda: source.stats.connect_failures >= 1, timeout=15)
            assert not source.connected.is_set() and sink.events == []
    finally:
        await server.stop()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    from edge_node.backoff import Backoff

    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    high = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [low.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]  # half of the ceiling
    assert [high.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # the ceiling
    high.reset()
    assert high.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(0, 1)


@pytest.mark.parametrize("queue_size", [1, 5])
async def test_queue_size_keeps_changes_within_one_publishing_interval(tmp_path: Path, queue_size: int) -> None:
    """Three writes within 40 ms, publishing every 400 ms: a server queue of 1 keeps only the newest
    value per interval (the server conflates, by design; a publish may fall between two writes),
    a queue of 5 reports all three, in order."""
    async with TestOpcUaServer() as server:
        config = make_config(server, endpoint_extra=f"    queue_size: {queue_size}")
        slow = config.opcua[0].model_copy(update={"publishing_interval_ms": 400})
        config = config.model_copy(update={"opcua": [slow]})
        sink = RecordingSink()
        async with running_source(config, sink, tmp_path) as source:
            await asyncio.wait_for(source.connected.wait(), 10)
            await asyncio.sleep(0.5)
            for value in (1.0, 2.0, 3.0):
                await server.write("Line1/Capper/Speed", value)
                await asyncio.sleep(0.02)
            await sink.wait_for(lambda: [u for u in sink.data("Speed", "Capper") if u.value == 3.0])
            await asyncio.sleep(0.5)
            values = [u.value for u in sink.data("Speed", "Capper") if u.value in (1.0, 2.0, 3.0)]
            if queue_size == 1:
                assert len(values) < 3 and values[-1] == 3.0, values
            else:
                assert values == [1.0, 2.0, 3.0]
