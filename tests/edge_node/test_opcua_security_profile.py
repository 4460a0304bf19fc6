"""OPC UA security profile (issue 13, item 8) against real asyncua servers on free loopback ports.

* ``security_profile: production`` (the default of a hand-written config) refuses security policy
  None, a secure endpoint without a trust list and a trust_dir missing on disk, at config load:
  ``uns edge check`` and ``uns edge run`` exit 2 with ``file:line: path: message``; each is allowed
  only by its explicit per-endpoint switch.
* An unknown server certificate is refused at connect: the source stays down, counts the
  rejection, and the log and ``last_error`` name the endpoint, the subject and the OPC UA
  thumbprint; once the certificate is copied into the trust dir the next reconnect succeeds.
* ``write_credentials``: the command writer logs in as its own OPC UA user. On a server where only
  that user may write (the test server's per-user role, the simulator's ``read_only`` users), a
  signed command through the whole path (Mosquitto, executor, audit) is confirmed with the write
  account; with the read account alone it fails with the server's BadUserAccessDenied, recorded
  as the write status, and nothing changes on the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from cryptography import x509
from typer.testing import CliRunner

from edge_node.commands.opcua_writer import OpcUaWriter
from edge_node.config import EdgeConfig, SecurityProfile, loads_edge_config
from tests.edge_node.opcua_test_server import TestOpcUaServer
from tests.edge_node.recording_sink import RecordingSink
from tests.edge_node.running import running, running_source

pytestmark = pytest.mark.timeout(60)

BAD_USER_ACCESS_DENIED = 0x801F0000
LINE = "line: {enterprise: acme, site: plant1, area: packaging, line: line1}\n"
TAGS = """tags:
  - {node_id: "ns=2;s=Line1/Filler/Speed", metric: Speed, cell: Filler}
"""


def _cli(*args: str) -> Any:
    from unshub.cli.main import app

    return CliRunner().invoke(app, list(args))


def _write_plant(tmp_path: Path, endpoint: str, profile: str | None = None) -> Path:
    path = tmp_path / "plant.yaml"
    head = LINE + (f"security_profile: {profile}\n" if profile is not None else "")
    path.write_text(head + "opcua:\n" + endpoint + TAGS)
    return path


# -- config check ---------------------------------------------------------------------------------


def test_production_is_the_default_and_refuses_policy_none_at_check_and_run(tmp_path: Path) -> None:
    plant = _write_plant(tmp_path, "  - name: plc1\n    url: opc.tcp://127.0.0.1:4840\n")
    expected = (f"{plant}:3: opcua[0].security_policy: endpoint 'plc1': security_profile production refuses "
                "security policy None (no authentication of the server, no signing, no encryption); use "
                "Basic256Sha256 with Sign or SignAndEncrypt, or set allow_insecure: true on this endpoint")
    for command in ("check", "run"):
        result = _cli("edge", command, "--config", str(plant))
        assert result.exit_code == 2, result.output
        assert expected in result.output, result.output
        assert "Traceback" not in result.output


def test_policy_none_passes_only_when_allowed_or_demo(tmp_path: Path) -> None:
    endpoint = "  - name: plc1\n    url: opc.tcp://127.0.0.1:4840\n"
    allowed = _write_plant(tmp_path, endpoint + "    allow_insecure: true\n", "production")
    result = _cli("edge", "check", "--config", str(allowed))
    assert result.exit_code == 0 and ": OK" in result.output, result.output
    demo = _write_plant(tmp_path, endpoint, "demo")
    result = _cli("edge", "check", "--config", str(demo))
    assert result.exit_code == 0 and ": OK" in result.output, result.output


def test_production_secure_endpoint_needs_an_existing_trust_dir(tmp_path: Path) -> None:
    secure = "  - name: plc1\n    url: opc.tcp://127.0.0.1:4840\n    security_policy: Basic256Sha256\n" \
             "    security_mode: Sign\n"
    no_trust = _write_plant(tmp_path, secure)
    result = _cli("edge", "check", "--config", str(no_trust))
    assert result.exit_code == 2, result.output
    assert (f"{no_trust}:3: opcua[0].trust_dir: endpoint 'plc1': security_profile production needs a trust_dir "
            "holding the server's certificate (or trust_unknown_server_certificates: true)") in result.output

    missing = _write_plant(tmp_path, secure + "    trust_dir: pki/trusted\n")
    result = _cli("edge", "check", "--config", str(missing))
    assert result.exit_code == 2, result.output
    assert (f"{missing}:7: opcua[0].trust_dir: endpoint 'plc1': trust_dir {tmp_path / 'pki' / 'trusted'} is not a "
            "directory (security_profile production): create it and copy the server's certificate into it"
            ) in result.output

    (tmp_path / "pki" / "trusted").mkdir(parents=True)
    result = _cli("edge", "check", "--config", str(missing))
    assert result.exit_code == 0, result.output

    unknown_ok = _write_plant(tmp_path, secure + "    trust_unknown_server_certificates: true\n")
    result = _cli("edge", "check", "--config", str(unknown_ok))
    assert result.exit_code == 0, result.output


def test_uns_init_writes_the_demo_profile_explicitly(tmp_path: Path) -> None:
    """The demo stack keeps working under the production default because it says `demo` itself."""
    from edge_node.config import load_edge_config
    from unshub.cli.stack import write_stack_config

    write_stack_config(tmp_path / "stack")
    text = (tmp_path / "stack" / "plant.yaml").read_text()
    assert "\nsecurity_profile: demo\n" in text
    config = load_edge_config(tmp_path / "stack" / "plant.yaml")
    assert config.security_profile is SecurityProfile.DEMO
    assert [(ep.security_policy.value, ep.allow_insecure) for ep in config.opcua] == [("None", False)]


def test_browse_starter_says_what_it_allows(tmp_path: Path) -> None:
    """`uns edge browse` writes production with the exception the browse needed, visibly in the file."""
    from edge_node.config import OpcUaEndpointConfig
    from edge_node.opcua.browse import BrowseResult, starter_tag_map

    plain = starter_tag_map(BrowseResult(), OpcUaEndpointConfig(url="opc.tcp://h:1"))
    assert plain["security_profile"] == "production"
    assert plain["opcua"][0]["allow_insecure"] is True and "trust_unknown_server_certificates" not in plain["opcua"][0]
    secure = OpcUaEndpointConfig(url="opc.tcp://h:1", security_policy="Basic256Sha256", security_mode="Sign")
    unpinned = starter_tag_map(BrowseResult(), secure)["opcua"][0]
    assert unpinned["trust_unknown_server_certificates"] is True and "allow_insecure" not in unpinned
    pinned = starter_tag_map(BrowseResult(), secure.model_copy(update={"trust_dir": tmp_path}))["opcua"][0]
    assert pinned["trust_dir"] == str(tmp_path) and "trust_unknown_server_certificates" not in pinned


def test_write_credentials_default_to_the_read_account() -> None:
    base = LINE + "security_profile: demo\nopcua:\n  - url: opc.tcp://h:1\n    username: reader\n" \
                  "    password: r-pw\n"
    shared = loads_edge_config(base + TAGS)
    assert shared.security_profile is SecurityProfile.DEMO
    assert shared.opcua[0].writer_credentials() == shared.opcua[0].read_credentials()
    assert shared.opcua[0].writer_credentials().username == "reader"  # type: ignore[union-attr]
    split = loads_edge_config(base + "    write_credentials: {username: writer, password_env: W_PW}\n" + TAGS)
    creds = split.opcua[0].writer_credentials()
    assert creds is not None and (creds.username, creds.password_env) == ("writer", "W_PW")
    with pytest.raises(Exception, match=r"t.yaml:7: opcua\[0\].write_credentials: give password or password_env"):
        loads_edge_config(base + "    write_credentials: {username: w, password: a, password_env: B}\n" + TAGS,
                          source="t.yaml")


# -- server certificates ---------------------------------------------------------------------------


def _config(server: TestOpcUaServer, trust_dir: Path | None, extra: str = "", base: Path | None = None) -> EdgeConfig:
    trust = f"    trust_dir: {trust_dir}\n" if trust_dir is not None else ""
    return loads_edge_config(f"""{LINE}opcua:
  - name: plc1
    url: {server.url}
    security_policy: Basic256Sha256
    security_mode: SignAndEncrypt
{trust}    keepalive_interval_s: 0.2
    reconnect_min_s: 0.1
    reconnect_max_s: 0.3
    publishing_interval_ms: 50
    sampling_interval_ms: 0
{extra}{TAGS}""", base_dir=base or (trust_dir.parent if trust_dir is not None else None))


async def test_unknown_server_certificate_is_refused_until_trusted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = await TestOpcUaServer(secure_dir=tmp_path / "server-pki").start()
    try:
        assert server.cert_path is not None
        der = server.cert_path.read_bytes()
        thumb = hashlib.sha1(der).hexdigest()  # noqa: S324 - the OPC UA thumbprint
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        trust_dir = tmp_path / "trusted"
        trust_dir.mkdir()
        config = _config(server, trust_dir)
        assert config.security_profile is SecurityProfile.PRODUCTION
        sink = RecordingSink()
        caplog.set_level(logging.ERROR, logger="edge_node.opcua_security")
        async with running_source(config, sink, tmp_path / "edge") as source:
            await sink.wait_for(lambda: source.stats.certificate_rejections >= 2, timeout=20)
            # down, nothing announced, every failed attempt was this refusal
            assert not source.connected.is_set() and not source.stats.connected
            assert sink.events == [] and source.stats.connects == 0
            assert source.stats.connect_failures >= source.stats.certificate_rejections >= 2
            assert source.stats.last_error.startswith(
                f"UntrustedServerCertificate: endpoint plc1: OPC UA server certificate refused (subject "
                f"{subject!r}, thumbprint {thumb}): not in the trust list {trust_dir}; saved to "), \
                source.stats.last_error
            logged = [r.getMessage() for r in caplog.records if r.name == "edge_node.opcua_security"]
            assert logged and all(f"thumbprint {thumb}" in m and m.startswith("endpoint plc1:") for m in logged)
            rejected = list((tmp_path / "edge" / "pki" / "rejected").glob("*.der"))
            assert [p.read_bytes() for p in rejected] == [der]

            # the operator reviews the saved certificate and moves it into the trust list
            rejected[0].rename(trust_dir / "plc1.der")
            await asyncio.wait_for(source.connected.wait(), 20)
            failures = source.stats.certificate_rejections
            await server.write("Line1/Filler/Speed", 42.0)
            await sink.wait_for(lambda: [u for u in sink.data("Speed", "Filler") if u.value == 42.0])
            assert source.stats.connects == 1 and source.stats.certificate_rejections == failures
    finally:
        await server.stop()


@pytest.mark.parametrize("with_trust_dir", [True, False], ids=["empty-trust-dir", "no-trust-dir"])
async def test_trust_unknown_server_certificates_connects_and_logs_the_thumbprint(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, with_trust_dir: bool) -> None:
    server = await TestOpcUaServer(secure_dir=tmp_path / "server-pki").start()
    try:
        assert server.cert_path is not None
        thumb = hashlib.sha1(server.cert_path.read_bytes()).hexdigest()  # noqa: S324
        trust_dir = tmp_path / "trusted" if with_trust_dir else None
        if trust_dir is not None:
            trust_dir.mkdir()
        config = _config(server, trust_dir, "    trust_unknown_server_certificates: true\n", base=tmp_path)
        assert config.security_profile is SecurityProfile.PRODUCTION
        caplog.set_level(logging.WARNING, logger="edge_node.opcua_security")
        async with running_source(config, RecordingSink(), tmp_path / "edge") as source:
            await asyncio.wait_for(source.connected.wait(), 20)
            assert source.stats.certificate_rejections == 0 and source.stats.connect_failures == 0
        warned = [r.getMessage() for r in caplog.records if "trust_unknown_server_certificates" in r.getMessage()]
        trust_list = str(trust_dir) if trust_dir is not None else "(no trust_dir)"
        assert warned and warned[0].startswith("endpoint plc1: server certificate (subject ")
        assert f"thumbprint {thumb}) is not in the trust list {trust_list}; accepted" in warned[0], warned[0]
    finally:
        await server.stop()


# -- separate write account ------------------------------------------------------------------------


async def _write_as(config: EdgeConfig, data_dir: Path, value: float) -> int:
    writer = OpcUaWriter(config.opcua[0], data_dir)
    async with running(writer):
        await asyncio.wait_for(writer.connected.wait(), 20)
        return await writer.write("ns=2;s=Line1/Filler/Speed", ua.Variant(value, ua.VariantType.Double))


async def test_command_writes_use_the_write_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # only "writer" may write (asyncua's Admin role); the variables' access level is read-only for others
    server = await TestOpcUaServer(secure_dir=tmp_path / "server-pki", users={"reader": "r-pw", "writer": "w-pw"},
                                   admin_users=frozenset({"writer"}), writable=False).start()
    try:
        assert server.cert_path is not None
        trust_dir = tmp_path / "trusted"
        trust_dir.mkdir()
        (trust_dir / "server.der").write_bytes(server.cert_path.read_bytes())
        monkeypatch.setenv("TEST_OPCUA_WRITE_PW", "w-pw")
        read_only = _config(server, trust_dir, "    username: reader\n    password: r-pw\n")
        split = _config(server, trust_dir, "    username: reader\n    password: r-pw\n    write_credentials: "
                                           "{username: writer, password_env: TEST_OPCUA_WRITE_PW}\n")
        speed = server.nodes["Line1/Filler/Speed"]

        # without write_credentials the writer uses the read account: the server refuses the write
        assert await _write_as(read_only, tmp_path / "edge", 55.0) == BAD_USER_ACCESS_DENIED
        assert await speed.read_value() == 10.0

        # with them, the command session logs in as "writer" and the write lands; the subscription
        # session (still "reader") sees the new value
        sink = RecordingSink()
        async with running_source(split, sink, tmp_path / "edge") as source:
            await asyncio.wait_for(source.connected.wait(), 20)
            assert await _write_as(split, tmp_path / "edge", 55.0) == 0
            assert await speed.read_value() == 55.0
            await sink.wait_for(lambda: [u for u in sink.data("Speed", "Filler") if u.value == 55.0])
            # the read session itself still may not write
            client = source.connection.client
            assert client is not None
            codes = await client.uaclient.write_attributes(
                [ua.NodeId.from_string(server.node_id("Line1/Filler/Speed"))],
                [ua.DataValue(ua.Variant(66.0, ua.VariantType.Double))], ua.AttributeIds.Value)
            assert int(codes[0].value) == BAD_USER_ACCESS_DENIED
            assert await speed.read_value() == 55.0
    finally:
        await server.stop()


async def test_simulator_read_only_user_and_separate_write_account(tmp_path: Path) -> None:
    """`uns sim run --read-only-user` refuses the Write service to that user: the writer returns the code."""
    from simulator.config import SecurityConfig, SimulatorConfig, UserConfig
    from simulator.server import SimulatedLineServer
    from tests.support.net import free_port

    security = SecurityConfig(modes=["Basic256Sha256_Sign"], data_dir=tmp_path / "sim-pki", allow_anonymous=False,
                              users=[UserConfig(username="reader", password="r-pw", read_only=True),
                                     UserConfig(username="writer", password="w-pw")])
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), tick_s=0.1, security=security))
    await sim.start()
    try:
        trust_dir = tmp_path / "trusted"
        trust_dir.mkdir()
        (trust_dir / "sim.der").write_bytes((tmp_path / "sim-pki" / "server_cert.der").read_bytes())
        endpoint = f"""{LINE}opcua:
  - name: sim
    url: {sim.endpoint}
    security_policy: Basic256Sha256
    security_mode: Sign
    trust_dir: {trust_dir}
    username: reader
    password: r-pw
"""
        setpoint = "nsu=urn:uns-hub:simulator;s=Line1/Filler/SpeedSetpoint"
        tags = f'tags:\n  - {{node_id: "{setpoint}", metric: SpeedSetpoint, cell: Filler}}\n'
        shared = loads_edge_config(endpoint + tags, base_dir=tmp_path)
        split = loads_edge_config(endpoint + "    write_credentials: {username: writer, password: w-pw}\n" + tags,
                                  base_dir=tmp_path)

        async def write_and_read(config: EdgeConfig, value: float) -> tuple[int, Any]:
            writer = OpcUaWriter(config.opcua[0], tmp_path / "edge")
            async with running(writer):
                await asyncio.wait_for(writer.connected.wait(), 20)
                code = await writer.write(setpoint, ua.Variant(value, ua.VariantType.Double))
                return code, (await writer.read(setpoint)).value

        path = "Line1/Filler/SpeedSetpoint"
        before = sim.model.sample(path).value
        assert before != 1234.0
        # the read account: the whole Write service is refused, nothing changes, and the writer
        # reports the status instead of raising
        assert await write_and_read(shared, 1234.0) == (BAD_USER_ACCESS_DENIED, before)
        assert sim.model.sample(path).value == before
        # the write account
        assert await write_and_read(split, 1234.0) == (0, 1234.0)
        for _ in range(100):  # the simulator takes written setpoints into its model on its next tick
            if sim.model.sample(path).value == 1234.0:
                break
            await asyncio.sleep(0.05)
        assert sim.model.sample(path).value == 1234.0
    finally:
        await sim.stop()


# -- the whole command path with a separate write account -------------------------------------------


def _split_accounts_sim() -> dict[str, Any]:
    from simulator.config import SecurityConfig, UserConfig

    # the rig's own checking client stays anonymous; the edge logs in with the two accounts
    return {"security": SecurityConfig(users=[UserConfig(username="edge-read", password="r-pw", read_only=True),
                                              UserConfig(username="edge-write", password="w-pw")])}


@pytest.mark.mosquitto
@pytest.mark.parametrize("split", [True, False], ids=["write-account", "read-account-only"])
async def test_signed_command_is_written_with_the_write_account(mosquitto: Any, tmp_path: Path,
                                                                split: bool) -> None:
    from tests.commands_e2e.rig import running_rig
    from uns.commands.model import Outcome, ReasonCode
    from unshub.command_client import CommandClient

    edge_opcua: dict[str, Any] = {"username": "edge-read", "password": "r-pw"}
    if split:
        edge_opcua["write_credentials"] = {"username": "edge-write", "password": "w-pw"}
    async with running_rig(tmp_path, mosquitto.url, sim_config=_split_accounts_sim(), edge_opcua=edge_opcua) as rig, \
            CommandClient(rig.broker_url) as client:
        before = await rig.read("Line1/Filler/SpeedSetpoint")
        assert before != 150.0
        result = await rig.submit(client, "Filler", "SpeedSetpoint", 150)
        if split:
            assert result.outcome is Outcome.CONFIRMED, result
            assert result.write_status_code == 0 and result.readback_value == 150.0
            assert result.old_value == before
            assert await rig.read("Line1/Filler/SpeedSetpoint") == 150.0
            assert [r["event"] for r in rig.audit_events(result.command_id)] == ["written", "readback_ok"]
        else:  # the read account may not write: refused by the server, nothing changed, audited
            assert result.outcome is Outcome.FAILED and result.reason is ReasonCode.WRITE_FAILED, result
            # a service fault for the whole Write: its StatusCode is the result, not an "edge error"
            assert result.write_status_code == BAD_USER_ACCESS_DENIED
            assert result.message == ("OPC UA write of nsu=urn:uns-hub:simulator;s=Line1/Filler/SpeedSetpoint "
                                      "answered 0x801F0000")
            assert await rig.read("Line1/Filler/SpeedSetpoint") == before
            assert [r["event"] for r in rig.audit_events(result.command_id)] == ["written", "failed"]
        # subscriptions run on the read account either way
        assert rig.app.sources[0].stats.connects == 1
