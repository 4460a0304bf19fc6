"""A captured, validly signed DCMD published again is refused ``replayed``, never written twice.

Real parts throughout: the simulator's OPC UA server, the edge app with its executor and command
journal, Mosquitto, and a requester (:class:`CommandClient`). The attacker is a plain MQTT client
with the rights of a host (it may publish DCMD): it records the exact bytes of command D, lets
command E change the setpoint, then publishes D's bytes again. Issue 13, item 2: before the
ledger of seen command ids, the setpoint went back to D's value and the audit log held
``written``/``readback_ok`` twice for the same command id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiomqtt import Client as Mqtt

from edge_node.app import EdgeNodeApp
from tests.commands_e2e.rig import EDGE, GROUP, Rig, running_rig, wait_for
from tests.support.mosquitto import BrokerEndpoint
from uns.audit.verify import verify
from uns.commands.model import CommandResult, Outcome, ReasonCode
from uns.commands.wire import result_filter
from uns.sparkplug.topic import MessageType, node_topic
from unshub.command_client import CommandClient

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(90)]

SETPOINT = "Line1/Filler/SpeedSetpoint"
FILLER_DCMD = node_topic(GROUP, MessageType.DCMD, EDGE, "Filler")


@asynccontextmanager
async def wiretap(rig: Rig, broker: BrokerEndpoint) -> AsyncIterator[tuple[Mqtt, list[bytes], list[CommandResult]]]:
    """The attacker's client: records every DCMD to the Filler and every result of the line."""
    dcmds: list[bytes] = []
    results: list[CommandResult] = []
    async with Mqtt(broker.host, broker.port) as mqtt:
        await mqtt.subscribe(FILLER_DCMD, qos=1)
        await mqtt.subscribe(result_filter(rig.app.config.mapping, GROUP, EDGE), qos=1)

        async def read() -> None:
            async for message in mqtt.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                if message.topic.value == FILLER_DCMD:
                    dcmds.append(payload)
                else:
                    results.append(CommandResult.from_bytes(payload))

        reader = asyncio.create_task(read())
        try:
            yield mqtt, dcmds, results
        finally:
            reader.cancel()


def records(rig: Rig, command_id: object) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("reason_code")) for r in rig.audit_events(command_id)]


async def replay_and_expect_refusal(rig: Rig, mqtt: Mqtt, captured: bytes, command_id: object,
                                    results: list[CommandResult]) -> CommandResult:
    """Publish the captured bytes again; the edge answers ``refused: replayed`` on the result topic."""
    seen = len(results)
    await mqtt.publish(FILLER_DCMD, captured, qos=1)
    await wait_for(lambda: any(r.command_id == command_id for r in results[seen:]))
    (answer,) = [r for r in results[seen:] if r.command_id == command_id]
    return answer


async def capture_d_then_run_e(rig: Rig, client: CommandClient, dcmds: list[bytes]) -> tuple[Any, Any, bytes]:
    """Command D (322) is confirmed and its DCMD bytes recorded; command E (333) overwrites it."""
    d = await rig.submit(client, "Filler", "SpeedSetpoint", 322, validity_s=60)
    assert d.outcome is Outcome.CONFIRMED, d
    await wait_for(lambda: len(dcmds) == 1)
    e = await rig.submit(client, "Filler", "SpeedSetpoint", 333, validity_s=60)
    assert e.outcome is Outcome.CONFIRMED, e
    assert await rig.read(SETPOINT) == 333.0
    return d, e, dcmds[0]


async def test_a_replayed_command_is_refused_and_the_plc_keeps_its_value(mosquitto: BrokerEndpoint,
                                                                        tmp_path: Path) -> None:
    async with running_rig(tmp_path, mosquitto.url) as rig, wiretap(rig, mosquitto) as (mqtt, dcmds, results), \
            CommandClient(rig.broker_url) as client:
        d, e, captured = await capture_d_then_run_e(rig, client, dcmds)

        answer = await replay_and_expect_refusal(rig, mqtt, captured, d.command_id, results)
        assert (answer.outcome, answer.reason) == (Outcome.REFUSED, ReasonCode.REPLAYED), answer
        assert "already received" in (answer.message or "") and "same command" in (answer.message or "")
        assert await rig.read(SETPOINT) == 333.0, "the replayed command was written to the PLC"
        await wait_for(lambda: len(records(rig, d.command_id)) == 3)
        assert records(rig, d.command_id) == [("written", None), ("readback_ok", None), ("refused", "replayed")]
        assert records(rig, e.command_id) == [("written", None), ("readback_ok", None)]

        stats = rig.app.commands.executor.stats
        assert (stats.confirmed, stats.replayed, stats.refused, stats.journal_errors) == (2, 1, 1, 0)
    assert verify(rig.audit_db).ok


async def test_a_replay_after_an_edge_restart_is_refused(mosquitto: BrokerEndpoint, tmp_path: Path) -> None:
    async with running_rig(tmp_path, mosquitto.url) as rig, wiretap(rig, mosquitto) as (mqtt, dcmds, results), \
            CommandClient(rig.broker_url) as client:
        d, _, captured = await capture_d_then_run_e(rig, client, dcmds)

        # a new edge process on the same data dir: the ids it took in are on disk, not in memory
        config = rig.app.config
        await rig.app.stop()

        rig.app = EdgeNodeApp(config)
        await rig.app.start()
        await rig.app.client.wait_birthed(20)
        await rig.app.commands.executor.wait_ready(20)

        answer = await replay_and_expect_refusal(rig, mqtt, captured, d.command_id, results)
        assert (answer.outcome, answer.reason) == (Outcome.REFUSED, ReasonCode.REPLAYED), answer
        assert await rig.read(SETPOINT) == 333.0, "the replayed command was written to the PLC"
        await wait_for(lambda: len(records(rig, d.command_id)) == 3)
        assert records(rig, d.command_id) == [("written", None), ("readback_ok", None), ("refused", "replayed")]
        stats = rig.app.commands.executor.stats
        assert (stats.confirmed, stats.replayed, stats.refused) == (0, 1, 1)

        # the new process still executes new commands
        f = await rig.submit(client, "Filler", "SpeedSetpoint", 344, validity_s=60)
        assert f.outcome is Outcome.CONFIRMED, f
        assert await rig.read(SETPOINT) == 344.0
    assert verify(rig.audit_db).ok
