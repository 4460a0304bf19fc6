"""NCMD/DCMD the edge's Sparkplug session cannot decode are refused, audited and answered, never dropped.

Sent by hand over Mosquitto the way a broken or hostile host would: a command addressed by an
alias the edge's birth never gave (tck-id-payloads-alias-data-cmd-requirement), by a metric name
no birth declared, and bytes that are not Sparkplug at all. Each must leave an audited refusal in
the edge's chain, a result on ``<line>/_cmd/result/<id>`` when the envelope names an id, nothing
written to OPC UA, and an edge that goes on executing good commands.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiomqtt import Client as Mqtt

from edge_node.commands.rejects import WHOLE_MESSAGE
from tests.commands_e2e.rig import EDGE, GROUP, Rig, running_rig, wait_for
from tests.support.mosquitto import BrokerEndpoint
from uns.audit.verify import verify
from uns.commands.model import CommandRequest, CommandResult, Outcome, ReasonCode
from uns.commands.wire import command_metric, result_filter
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Payload, now_ms
from uns.sparkplug.topic import MessageType, node_topic
from unshub.command_client import CommandClient, sign_request

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(60)]


def signed_request(rig: Rig, device: str | None, metric: str, value: Any) -> CommandRequest:
    now = now_ms()
    request = CommandRequest(command_id=uuid.uuid4(), group_id=GROUP, edge_node_id=EDGE, device_id=device,
                             metric=metric, value=value, requested_by="alice", reason="undecodable test",
                             created_at_ms=now, valid_until_ms=now + 30_000)
    return sign_request(request, [rig.signer("alice")], now)


def dcmd_bytes(request: CommandRequest, *, alias: int | None, datatype: DataType = DataType.Double) -> bytes:
    metric = command_metric(request, datatype=datatype, alias=alias, timestamp_ms=now_ms())
    return encode_payload(Payload([metric], timestamp=now_ms()), MessageType.DCMD)


def all_audit(rig: Rig) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{rig.audit_db}?mode=ro", uri=True)
    try:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM audit_record ORDER BY seq")]
    finally:
        db.close()


@asynccontextmanager
async def results_listener(rig: Rig, mosquitto: BrokerEndpoint) -> AsyncIterator[tuple[Mqtt, dict[str, Any]]]:
    """A requester's view: subscribed to the line's ``_cmd/result/+`` before anything is sent."""
    got: dict[str, Any] = {}
    async with Mqtt(mosquitto.host, mosquitto.port) as mqtt:
        await mqtt.subscribe(result_filter(rig.app.config.mapping, GROUP, EDGE), qos=1)

        async def read() -> None:
            async for message in mqtt.messages:
                result = CommandResult.from_bytes(bytes(message.payload))  # type: ignore[arg-type]
                got[str(result.command_id)] = (message.topic.value, result)

        reader = asyncio.create_task(read())
        try:
            yield mqtt, got
        finally:
            reader.cancel()


async def test_undecodable_commands_are_audited_and_answered(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    async with running_rig(tmp_path, mosquitto.url) as rig, results_listener(rig, mosquitto) as (mqtt, results):
        before = await rig.read("Line1/Filler/SpeedSetpoint")
        filler = node_topic(GROUP, MessageType.DCMD, EDGE, "Filler")
        # 1. an alias the birth never gave: the command cannot be rebuilt -> malformed_command
        by_alias = signed_request(rig, "Filler", "SpeedSetpoint", 444.0)
        await mqtt.publish(filler, dcmd_bytes(by_alias, alias=9999))
        # 2. a metric name no birth declared: nothing unborn can be allowlisted -> not_allowlisted
        by_name = signed_request(rig, "Filler", "Bogus", 1.0)
        await mqtt.publish(filler, dcmd_bytes(by_name, alias=None))
        # 3. not Sparkplug at all, on the NCMD topic: audited, but there is no one to answer
        await mqtt.publish(node_topic(GROUP, MessageType.NCMD, EDGE), b"\xff\xfe not protobuf")

        await wait_for(lambda: len(results) == 2)
        expected = {by_alias.command_id: ReasonCode.MALFORMED_COMMAND, by_name.command_id: ReasonCode.NOT_ALLOWLISTED}
        results_of_line = result_filter(rig.app.config.mapping, GROUP, EDGE)  # <line>/_cmd/result/+
        for command_id, reason in expected.items():
            topic, result = results[str(command_id)]
            assert (result.outcome, result.reason) == (Outcome.REFUSED, reason), result
            assert topic == results_of_line[:-1] + str(command_id)
            assert result.device_id == "Filler"

        executor = rig.app.commands.executor
        await wait_for(lambda: executor.stats.undecodable == 3)
        await asyncio.sleep(0.2)  # the last audit append runs in a thread
        refused = [r for r in all_audit(rig) if r["event"] == "refused"]
        by_id = {r["command_id"]: r for r in refused}
        assert by_id[str(by_alias.command_id)]["reason_code"] == "malformed_command"
        assert by_id[str(by_alias.command_id)]["target"]["metric"] == "alias 9999"
        assert by_id[str(by_alias.command_id)]["details"]["fault"] == "unknown_alias"
        assert by_id[str(by_name.command_id)]["reason_code"] == "not_allowlisted"
        assert by_id[str(by_name.command_id)]["target"]["metric"] == "Bogus"
        garbage = by_id[None]
        assert garbage["reason_code"] == "malformed_command" and garbage["target"]["metric"] == WHOLE_MESSAGE
        assert garbage["target"]["device_id"] is None and garbage["details"]["payload_size"] == 15
        assert rig.app.client.stats.bad_commands == 3
        assert (executor.stats.malformed, executor.stats.refused) == (2, 1)  # the outcome counters see them
        assert rig.app.client.stats.command_handler_errors == 0
        assert await rig.read("Line1/Filler/SpeedSetpoint") == before

        # the edge goes on: a good command is still executed
        async with CommandClient(rig.broker_url) as client:
            ok = await rig.submit(client, "Filler", "SpeedSetpoint", 155)
        assert ok.outcome is Outcome.CONFIRMED, ok
    assert verify(rig.audit_db).ok
