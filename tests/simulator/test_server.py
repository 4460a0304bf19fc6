"""The asyncua shell on loopback: browse, subscribe, methods, faults as StatusCodes, writes, restart."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.catalog import tag_catalog
from simulator.client import call_simulation, double, string
from simulator.config import NAMESPACE_URI, SecurityConfig, SimulatorConfig, UserConfig
from simulator.faults import BAD_SENSOR_FAILURE, UNCERTAIN_LAST_USABLE_VALUE
from simulator.server import VARIANT_TYPES, SimulatedLineServer
from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]


def fast_config(**overrides: Any) -> SimulatorConfig:
    values: dict[str, Any] = {"port": free_port(), "rate": 20.0, "tick_s": 0.05,
                              "acting_state_s": 0.1, "seed": 3}
    values.update(overrides)
    return SimulatorConfig(**values)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedLineServer]:
    server = SimulatedLineServer(fast_config(extra_tags=20, extra_rate_hz=20.0))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


class Collector:
    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.values.setdefault(node.nodeid.Identifier, []).append(val)


async def test_browse_subscribe_and_run_a_batch(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        assert ns == sim.namespace_index
        filler = await client.nodes.objects.get_child([f"{ns}:Line1", f"{ns}:Filler"])
        names = {(await child.read_browse_name()).Name for child in await filler.get_children()}
        assert {"GoodCount", "RejectCount", "Temperature", "FillTemperatureSetpoint"} <= names
        for spec in tag_catalog(sim.config, include_truth=True):
            node = client.get_node(f"ns={ns};s={spec.path}")
            variant_type = await node.read_data_type_as_variant_type()
            assert variant_type == VARIANT_TYPES[spec.datatype], spec.path

        collector = Collector()
        sub = await client.create_subscription(50, collector)
        await sub.subscribe_data_change([client.get_node(f"ns={ns};s=Line1/GoodCount"),
                                         client.get_node(f"ns={ns};s=Line1/Synthetic/Tag00003")])
        line = client.get_node(f"ns={ns};s=Line1")
        await line.call_method(f"{ns}:StartBatch", "WO-42", "Cola",
                               ua.Variant(30, ua.VariantType.UInt32))
        assert await client.get_node(f"ns={ns};s=Line1/CurrentBatch").read_value() == "WO-42"
        state = client.get_node(f"ns={ns};s=Line1/State")
        await wait_for(lambda: _equals(state, "Complete"), timeout=10.0)

        window = sim.model.batches[-1]
        assert window.good == 30 and window.end_reason == "quantity"
        truth_good = client.get_node(f"ns={ns};s=Simulation/Truth/BatchGood")
        assert await truth_good.read_value() == 30
        assert await client.get_node(f"ns={ns};s=Simulation/Truth/BatchReject").read_value() == window.reject
        await wait_for(lambda: collector.values.get("Line1/GoodCount", [None])[-1] == 30)
        goods = collector.values["Line1/GoodCount"]
        assert goods == sorted(goods)  # cumulative
        assert len(collector.values.get("Line1/Synthetic/Tag00003", [])) >= 3

        with pytest.raises(ua.UaStatusCodeError) as refused:
            await line.call_method(f"{ns}:StopBatch")
        assert refused.value.code == ua.StatusCodes.BadInvalidState
        await sub.delete()


async def _equals(node: Any, expected: Any) -> bool:
    return await node.read_value() == expected


async def test_faults_show_as_status_codes_and_setpoints_are_writable(sim: SimulatedLineServer) -> None:
    async with Client(sim.endpoint) as client:
        ns = sim.namespace_index
        temperature = client.get_node(f"ns={ns};s=Line1/Filler/Temperature")
        sim_obj = client.get_node(f"ns={ns};s=Simulation")
        fault_id = await sim_obj.call_method(f"{ns}:InjectFault", "bad_status", "Line1/Filler/Temperature",
                                             2.0, math.nan)
        assert fault_id >= 1
        bad = await temperature.read_data_value(raise_on_bad_status=False)
        assert bad.StatusCode.value == BAD_SENSOR_FAILURE
        assert bad.Value.Value is None

        # Python API on the running simulator, seen through OPC UA after a tick
        capper = client.get_node(f"ns={ns};s=Line1/Capper/Temperature")
        sim.model.inject_fault("uncertain", "Line1/Capper/Temperature", 2.0)
        await sim.tick_now()
        uncertain = await capper.read_data_value(raise_on_bad_status=False)
        assert uncertain.StatusCode.value == UNCERTAIN_LAST_USABLE_VALUE
        assert isinstance(uncertain.Value.Value, float)

        setpoint = client.get_node(f"ns={ns};s=Line1/Filler/SpeedSetpoint")
        await setpoint.write_value(ua.Variant(420.0, ua.VariantType.Double))
        await wait_for(lambda: sim.model.cell("Filler").speed_setpoint == 420.0)
        assert await setpoint.read_value() == 420.0
        recipe = client.get_node(f"ns={ns};s=Line1/Recipe")
        await recipe.write_value(ua.Variant("Cola-2L", ua.VariantType.String))
        await wait_for(lambda: sim.model.recipe == "Cola-2L")
        with pytest.raises(ua.UaStatusCodeError):
            await client.get_node(f"ns={ns};s=Line1/GoodCount").write_value(
                ua.Variant(5, ua.VariantType.UInt32))

        with pytest.raises(ua.UaStatusCodeError) as refused:
            await sim_obj.call_method(f"{ns}:InjectFault", "melt", "Line1/Filler/Temperature", 1.0, 0.0)
        assert refused.value.code == ua.StatusCodes.BadInvalidArgument

        await wait_for(lambda: _status(temperature, 0), timeout=5.0)


async def _status(node: Any, expected: int) -> bool:
    return (await node.read_data_value(raise_on_bad_status=False)).StatusCode.value == expected


async def test_restart_comes_back_on_the_same_endpoint(sim: SimulatedLineServer) -> None:
    ns = sim.namespace_index
    sim.model.start()
    # down 3 s: the probe below must land inside the outage, and the rebuild (now quicker than
    # the 1 s this used) runs on the test's own event loop, which can delay the probe
    await call_simulation(sim.endpoint, "RestartServer", double(3.0))
    await wait_for(lambda: not sim.listening, timeout=3.0)
    with pytest.raises((OSError, asyncio.TimeoutError, ua.UaError)):
        async with Client(sim.endpoint, timeout=1.0):
            pass
    before = sim.model.good_total
    await wait_for(lambda: sim.listening, timeout=30.0)  # rebuilds conditions + structures
    assert sim.model.good_total > before  # the line kept producing while the server was down
    async with Client(sim.endpoint) as client:
        assert await client.get_namespace_index(NAMESPACE_URI) == ns
        count = await client.get_node(f"ns={ns};s=Line1/GoodCount").read_value()
        assert count >= before

    await sim.restart(0.2)  # Python API: returns once serving again
    async with Client(sim.endpoint) as client:
        assert await client.get_node(f"ns={ns};s=Line1/State").read_value() == "Execute"
    assert sim.restarts == 2


async def test_cli_injects_a_fault(sim: SimulatedLineServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unshub.cli.main", "sim", "fault", "--endpoint", sim.endpoint,
        "bad-status", "--tag", "Line1/Labeler/Temperature", "--duration", "5",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "bad_status on Line1/Labeler/Temperature" in out.decode()
    assert sim.model.sample("Line1/Labeler/Temperature").status == BAD_SENSOR_FAILURE


async def test_secure_endpoint_with_users(tmp_path: Path) -> None:
    security = SecurityConfig(modes=["Basic256Sha256_SignAndEncrypt"], data_dir=tmp_path / "pki",
                              users=[UserConfig(username="op", password="s3cret")],
                              allow_anonymous=False)
    server = SimulatedLineServer(fast_config(security=security))
    await server.start()
    try:
        key, cert = tmp_path / "client_key.pem", tmp_path / "client_cert.der"
        await setup_self_signed_certificate(
            key, cert, "urn:uns-hub:test-client", "localhost",
            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"})
        assert (tmp_path / "pki" / "server_cert.der").is_file()

        async def connect(password: str) -> str:
            client = Client(server.endpoint, timeout=5.0)
            client.set_user("op")
            client.set_password(password)
            await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
            async with client:
                return await client.get_node(f"ns={server.namespace_index};s=Line1/State").read_value()

        assert await connect("s3cret") == "Idle"
        with pytest.raises(ua.UaStatusCodeError):
            await connect("wrong")
    finally:
        await server.stop()


def test_catalog_node_ids() -> None:
    config = SimulatorConfig(extra_tags=2)
    specs = {spec.path: spec for spec in tag_catalog(config)}
    spec = specs["Line1/Filler/GoodCount"]
    assert spec.node_id_string(2) == "ns=2;s=Line1/Filler/GoodCount"
    assert spec.expanded_node_id == "nsu=urn:uns-hub:simulator;s=Line1/Filler/GoodCount"
    assert (spec.datatype, spec.unit, spec.writable, spec.cell) == ("UInt32", "parts", False, "Filler")
    assert specs["Line1/Filler/FillTemperatureSetpoint"].writable
    assert "Line1/Synthetic/Tag00001" in specs
    assert not any(path.startswith("Simulation/") for path in specs)
    assert len(specs) == 10 + 3 * 8 + 2
    with pytest.raises(ValueError):
        SimulatorConfig(cells=[{"name": "Filler"}, {"name": "Filler"}])
    with pytest.raises(ValueError):
        SimulatorConfig(security={"modes": ["Basic256Sha256_Sign"]})  # needs data_dir
    assert isinstance(string("x"), ua.Variant)
