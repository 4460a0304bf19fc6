"""Interop: the edge's condition path (event filter, ConditionRefresh, mapping) against node-opcua.

node-opcua (tests/interop/node-opcua/alarms_server.js) implements Part 9 itself; its differences
from our simulator are listed in docs/alarms.md (a new alarm is also unconfirmed, a limit alarm
back to normal reports LimitState as a Bad StatusCode, only the newest EventId is accepted). The
OPC UA source runs with its alarm book into a recording sink; an independent asyncua event
client (the one the simulator's condition tests use) reads the same events, and every metric
group the edge produces must equal what that client saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from edge_node.alarms import METRICS, AlarmBook
from edge_node.commands.executor import CommandExecutor
from edge_node.config import EdgeConfig, loads_edge_config
from edge_node.opcua.source import OpcUaSource
from tests.edge_node.recording_sink import RecordingSink
from tests.simulator.condition_client import ACKNOWLEDGE, call_condition, subscribe, wait_for
from tests.simulator.node_opcua import node_opcua
from uns.audit.chain import AuditLog
from uns.commands.allowlist import Allowlist
from uns.commands.checker import AllowlistChecker, build_request
from uns.commands.model import CommandResult, Outcome, SignatureMeaning
from uns.commands.signing import UserRegistry, generate_private_key, public_key_text, sign_command
from uns.commands.wire import command_metric
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import now_ms

pytestmark = [pytest.mark.node, pytest.mark.timeout(90)]

TEMPERATURE_ALARM = "Line1/Filler/TemperatureAlarm"
DOOR_ALARM = "Line1/Filler/DoorAlarm"


@pytest.fixture
def alarms_server(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    with node_opcua("alarms_server.js", tmp_path) as server:
        yield server


async def _write(client: Client, ns: int, path: str, value: float | bool) -> None:
    vtype = ua.VariantType.Boolean if isinstance(value, bool) else ua.VariantType.Double
    await client.get_node(ua.NodeId(path, ns)).write_value(ua.DataValue(ua.Variant(value, vtype)))


def edge_config(server: tuple[str, int, str], tmp_path: Path, more_conditions: str = "") -> EdgeConfig:
    """The edge's view of the node-opcua server: its Temperature tag and TemperatureAlarm (by
    SourceNode: node-opcua's SourceName is the qualified "1:Filler"), plus ``more_conditions``."""
    url, ns, uri = server
    return loads_edge_config(f"""
line: {{enterprise: acme, site: plant1, area: packaging, line: line1}}
security_profile: demo  # loopback test server with security policy None
data_dir: {tmp_path / "edge"}
opcua:
  - url: {url}
    keepalive_interval_s: 0.5
    publishing_interval_ms: 50
    alarms:
      conditions:
        - {{cell: Filler, name: TemperatureAlarm, source_node: "nsu={uri};s=Line1/Filler"}}
{more_conditions}tags:
  - {{node_id: "ns={ns};s=Line1/Filler/Temperature", metric: Temperature, cell: Filler}}
""")


def expected(event: dict[str, Any], ns: int) -> dict[str, object]:
    """The metric group an event seen by the independent client must become."""
    limit = event.get("LimitState/CurrentState")
    return {"Active": event["ActiveState/Id"], "Acked": event["AckedState/Id"],
            "Confirmed": event["ConfirmedState/Id"], "Retain": event["Retain"], "Severity": event["Severity"],
            "Message": event["Message"].Text, "State": limit.Text if isinstance(limit, ua.LocalizedText) else "",
            "ConditionId": f"ns={ns};s={event['NodeId'].Identifier}", "EventId": event["EventId"].hex()}


def last_group(sink: RecordingSink, name: str) -> dict[str, object]:
    """The newest value of each metric of condition ``name`` the source handed over (births or data)."""
    out: dict[str, object] = {}
    for k, e in sink.events:
        updates = e.current if k == "online" else [e] if k == "data" else []
        for u in updates:
            if u.name.startswith(f"Alarms/{name}/"):
                out[u.name.rpartition("/")[2]] = u.value
    return out


async def test_edge_receives_refreshes_and_maps_node_opcua_conditions(
        alarms_server: tuple[str, int, str], tmp_path: Path) -> None:
    url, ns, uri = alarms_server
    config = edge_config(alarms_server, tmp_path, '        - {cell: Filler, name: DoorAlarm}\n')
    async with Client(url) as client:
        _, seen = await subscribe(client)
        await _write(client, ns, "Line1/Filler/DoorOpen", True)  # raised before the edge connects
        await wait_for(lambda: len(seen.of(DOOR_ALARM)) == 1)
        sink = RecordingSink()
        book = AlarmBook(config.opcua[0].alarms, config.device_of_cell)  # type: ignore[arg-type]
        source = OpcUaSource(config.opcua[0], [(t, config.device_id(t)) for t in config.tags], sink,
                             data_dir=tmp_path, alarm_book=book)
        task = asyncio.create_task(source.run())
        try:
            await asyncio.wait_for(source.connected.wait(), 20)
            # the DBIRTH's values come from ConditionRefresh: the door alarm as node-opcua retains it
            online = [e for k, e in sink.events if k == "online"]
            assert [e.device_id for e in online] == ["Filler"]
            assert sorted(u.name for u in online[0].current if u.name.startswith("Alarms/")) == sorted(
                f"Alarms/{n}/{s}" for n in ("TemperatureAlarm", "DoorAlarm") for s, _ in METRICS)
            assert last_group(sink, "DoorAlarm") == expected(seen.of(DOOR_ALARM)[0], ns)
            assert last_group(sink, "DoorAlarm")["Confirmed"] is False  # node-opcua: new = unconfirmed too
            assert last_group(sink, "TemperatureAlarm") == {
                "Active": False, "Acked": True, "Confirmed": True, "Retain": False, "Severity": 0, "Message": "",
                "State": "", "ConditionId": "", "EventId": ""}
            assert book.stats.refreshes == 1

            await _write(client, ns, "Line1/Filler/Temperature", 27.0)
            await wait_for(lambda: len(seen.of(TEMPERATURE_ALARM)) == 1)
            high = seen.of(TEMPERATURE_ALARM)[0]
            await sink.wait_for(lambda: last_group(sink, "TemperatureAlarm") == expected(high, ns))
            assert last_group(sink, "TemperatureAlarm")["State"] == "High"

            await call_condition(client, ns, TEMPERATURE_ALARM, ACKNOWLEDGE, high["EventId"], "seen")
            await wait_for(lambda: len(seen.of(TEMPERATURE_ALARM)) == 2)
            acked = seen.of(TEMPERATURE_ALARM)[1]
            await sink.wait_for(lambda: last_group(sink, "TemperatureAlarm") == expected(acked, ns))
            assert last_group(sink, "TemperatureAlarm")["Acked"] is True

            await _write(client, ns, "Line1/Filler/Temperature", 20.0)
            await wait_for(lambda: len(seen.of(TEMPERATURE_ALARM)) == 3)
            normal = seen.of(TEMPERATURE_ALARM)[2]
            assert normal["LimitState/CurrentState"] == ua.StatusCode(ua.StatusCodes.BadStateNotActive)
            await sink.wait_for(lambda: last_group(sink, "TemperatureAlarm") == expected(normal, ns))
            assert last_group(sink, "TemperatureAlarm")["State"] == ""  # the Bad StatusCode is no limit state
            # only configured conditions of known sources arrived, none malformed
            assert (book.stats.events, book.stats.malformed, book.stats.unknown_sources,
                    book.stats.unknown_conditions) == (4, 0, 0, 0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class _Results:
    """The executor's result publisher: keeps every CommandResult it is given."""

    def __init__(self) -> None:
        self.results: list[CommandResult] = []

    async def publish_json(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        self.results.append(CommandResult.from_bytes(payload))
        return True


async def test_the_edge_acknowledges_a_node_opcua_condition_with_its_newest_event_id(
        alarms_server: tuple[str, int, str], tmp_path: Path) -> None:
    """Interop (issue 15): the executor's Acknowledge against a Part 9 implementation we did not
    write. node-opcua accepts only the newest EventId (the edge calls with the newest it received),
    and answers a second Acknowledge with Good while changing nothing: the outcome follows
    AckedState read back, which is still true."""
    url, ns, _ = alarms_server
    key = generate_private_key()
    users = UserRegistry.model_validate({"users": {"alice": {"full_name": "Alice Archer",
                                                             "public_key": public_key_text(key.public_key())}}})
    allowlist = Allowlist.model_validate({"version": "interop-1", "lines": [{
        "group_id": "acme:plant1", "edge_node_id": "packaging:line1", "metrics": [
            {"device_id": "Filler", "metric": "Alarms/TemperatureAlarm/Acknowledge", "readback_timeout_s": 1,
             "condition": {"name": "TemperatureAlarm", "method": "acknowledge"}}]}]})
    config = edge_config(alarms_server, tmp_path)
    endpoint = config.opcua[0]
    book = AlarmBook(endpoint.alarms, config.device_of_cell)  # type: ignore[arg-type]
    sink, results = RecordingSink(), _Results()
    source = OpcUaSource(endpoint, [(t, config.device_id(t)) for t in config.tags], sink, data_dir=tmp_path,
                         alarm_book=book)
    audit = AuditLog(tmp_path / "audit.db")
    executor = CommandExecutor(
        group_id="acme:plant1", edge_node_id="packaging:line1", mapping=config.mapping,
        checker=AllowlistChecker(allowlist, users), audit=audit, publisher=results, endpoints=[endpoint],
        data_dir=tmp_path / "edge", endpoint_of_device=lambda _: endpoint.name, state_nodes={},
        conditions=book.latest)

    async def acknowledge(comment: str) -> CommandResult:
        request = build_request(allowlist, group_id="acme:plant1", edge_node_id="packaging:line1",
                                device_id="Filler", metric="Alarms/TemperatureAlarm/Acknowledge", value=comment,
                                requested_by="alice", reason=comment, now_ms=now_ms())
        request = request.with_signature(sign_command(request, key, user_id="alice", full_name="Alice Archer",
                                                      meaning=SignatureMeaning.AUTHORED, now_ms=now_ms()))
        before = len(results.results)
        await executor.handle("Filler", [command_metric(request, datatype=DataType.String)])
        await wait_for(lambda: len(results.results) > before)
        return results.results[-1]

    task = asyncio.create_task(source.run())
    await executor.start()
    try:
        await asyncio.wait_for(source.connected.wait(), 20)
        await executor.wait_ready(20)
        async with Client(url) as client:
            _, seen = await subscribe(client)
            await _write(client, ns, "Line1/Filler/Temperature", 27.0)  # High
            await wait_for(lambda: len(seen.of(TEMPERATURE_ALARM)) == 1)
            high = seen.of(TEMPERATURE_ALARM)[0]
            await sink.wait_for(lambda: last_group(sink, "TemperatureAlarm")["EventId"] == high["EventId"].hex())

            done = await acknowledge("seen by the MES")
            assert (done.outcome, done.reason, done.old_value, done.readback_value, done.write_status_code) == (
                Outcome.CONFIRMED, None, False, True, 0), done
            assert high["EventId"].hex() in done.message
            await wait_for(lambda: len(seen.of(TEMPERATURE_ALARM)) == 2)
            acked = seen.of(TEMPERATURE_ALARM)[1]
            assert (acked["AckedState/Id"], acked["Comment"].Text) == (True, "seen by the MES")

            # node-opcua answers Good to a second Acknowledge and changes nothing: AckedState is the truth
            await sink.wait_for(lambda: last_group(sink, "TemperatureAlarm")["EventId"] == acked["EventId"].hex())
            again = await acknowledge("again")
            assert (again.outcome, again.write_status_code, again.old_value, again.readback_value) == (
                Outcome.CONFIRMED, 0, True, True), again
        trail = [e for e in audit_events(audit) if e["command_id"] == str(done.command_id)]
        assert [e["event"] for e in trail] == ["written", "readback_ok"]
    finally:
        await executor.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        audit.close()


def audit_events(audit: AuditLog) -> list[dict[str, Any]]:
    import json
    import sqlite3

    db = sqlite3.connect(f"file:{audit.path}?mode=ro", uri=True)
    try:
        return [json.loads(body) for (body,) in db.execute("SELECT body FROM audit_record ORDER BY seq")]
    finally:
        db.close()
