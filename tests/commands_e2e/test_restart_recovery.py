"""An edge restart loses no command silently: queued ones resume, open ones are closed and answered.

Real restarts of :class:`edge_node.app.EdgeNodeApp` on the same data dir, with the requester
(:class:`CommandClient`) connected to the broker throughout and waiting for its results:

* commands queued while the OPC UA server is down survive the restart in the command journal,
  run in arrival order once the server is back, and an overdue one ends ``expired``;
* the same after a crash: ``uns edge run`` in its own process, killed with SIGKILL;
* a command whose write reached OPC UA but whose read-back never finished (the edge stopped in
  between) is closed at start-up as ``failed`` with a message saying the value may be written.

Every command ends with a final record in the edge's audit chain, which verifies.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_node.app import EdgeNodeApp
from edge_node.commands.recovery import FINAL_EVENTS, MAY_HAVE_WRITTEN
from edge_node.config import load_edge_config
from simulator.config import SimulatorConfig
from simulator.server import SimulatedLineServer
from tests.commands_e2e.rig import (
    ALLOWLIST,
    EDGE,
    GROUP,
    NAMES,
    Rig,
    edge_config,
    running_rig,
    wait_for,
    write_rules,
)
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port
from uns.audit.verify import verify
from uns.commands.model import Outcome, ReasonCode, SignatureMeaning
from uns.commands.signing import generate_private_key
from unshub.command_client import CommandClient, Signer

pytestmark = [pytest.mark.mosquitto, pytest.mark.timeout(90)]


def events(rig: Rig, command_id: object) -> list[str]:
    return [r["event"] for r in rig.audit_events(command_id)]


def journal_rows(rig: Rig) -> int:
    db = sqlite3.connect(f"file:{rig.data_dir / 'commands' / 'journal.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM command_journal").fetchone()[0])
    finally:
        db.close()


async def restart_edge(rig: Rig) -> EdgeNodeApp:
    """Stop the edge app and start a new one on the same config and data dir (OPC UA may be down)."""
    config = rig.app.config
    await rig.app.stop()
    app = EdgeNodeApp(config)
    rig.app = app  # the rig stops whatever app it holds at the end
    await app.start()
    await app.client.wait_birthed(20)
    return app


async def test_queued_commands_survive_a_restart_and_run_in_order(mosquitto: BrokerEndpoint,
                                                                  tmp_path: Path) -> None:
    async with running_rig(tmp_path, mosquitto.url) as rig, CommandClient(rig.broker_url) as client:
        await client.resolve(GROUP, EDGE, "Filler", "SpeedSetpoint")  # learn the births while all is up
        await client.resolve(GROUP, EDGE, "Capper", "SpeedSetpoint")
        capper_before = await rig.read("Line1/Capper/SpeedSetpoint")
        executor = rig.app.commands.executor
        writer = executor.writers["simulator"]
        await rig.sim.stop()  # OPC UA down until we say so
        await wait_for(lambda: not writer.connected.is_set(), 20, rig=rig)

        first = asyncio.create_task(rig.submit(client, "Filler", "SpeedSetpoint", 222, validity_s=60, timeout=60),
                                    name="first")
        await wait_for(lambda: executor.stats.queued == 1, 20, rig=rig, watch=[first])
        short = asyncio.create_task(rig.submit(client, "Capper", "SpeedSetpoint", 77, validity_s=2.0, timeout=60),
                                    name="short")
        await wait_for(lambda: executor.stats.queued == 2, 20, rig=rig, watch=[first])
        second = asyncio.create_task(rig.submit(client, "Filler", "SpeedSetpoint", 333, validity_s=60, timeout=60),
                                     name="second")
        await wait_for(lambda: executor.stats.queued == 3, 20, rig=rig, watch=[first, second])
        await asyncio.sleep(0.1)  # the queued audit appends run in a thread
        assert journal_rows(rig) == 3

        await rig.app.stop()
        assert not any(t.done() for t in (first, short, second)), "nothing may be answered before the restart"
        await asyncio.sleep(2.0)  # the short one's deadline passes while the edge is down
        app = await restart_edge(rig)

        expired = await short  # the normal re-check at resume: overdue -> expired, at once
        assert (expired.outcome, expired.reason) == (Outcome.EXPIRED, ReasonCode.EXPIRED), expired
        assert not first.done() and not second.done()  # the others wait for OPC UA again
        await rig.sim.start()
        a, b = await first, await second
        assert a.outcome is Outcome.CONFIRMED and b.outcome is Outcome.CONFIRMED, (a, b)
        assert a.written_at_ms <= b.written_at_ms  # arrival order kept across the restart
        assert a.received_at_ms < b.received_at_ms  # received times are the original ones
        stats = app.commands.executor.stats
        assert stats.resumed == 3 and stats.closed_at_startup == 0

        assert events(rig, a.command_id) == ["queued", "queued", "written", "readback_ok"]
        resumed_note = rig.audit_events(a.command_id)[1]["message"]
        assert "edge restarted; resumed from the command journal" in resumed_note
        assert events(rig, expired.command_id) == ["queued", "expired"]
        await wait_for(lambda: journal_rows(rig) == 0, 20, rig=rig)
        await rig.reconnect_opcua()
        assert await rig.read("Line1/Filler/SpeedSetpoint") == 333.0
        assert await rig.read("Line1/Capper/SpeedSetpoint") == capper_before
    report = verify(rig.audit_db)
    assert report.ok, report.summary()


# the Labeler rule reads back StateCode, which never equals the speed: with a long timeout the
# edge is still polling the read-back when we stop it, right after the write
SLOW_READBACK = ALLOWLIST.replace("readback_timeout_s: 0.5", "readback_timeout_s: 60")


async def test_a_write_interrupted_by_a_restart_is_closed_as_maybe_written(mosquitto: BrokerEndpoint,
                                                                           tmp_path: Path) -> None:
    assert SLOW_READBACK != ALLOWLIST
    async with running_rig(tmp_path, mosquitto.url, rules=SLOW_READBACK) as rig, \
            CommandClient(rig.broker_url) as client:
        pending = asyncio.create_task(rig.submit(client, "Labeler", "SpeedSetpoint", 321, timeout=60))
        await wait_for(lambda: bool(rig.app.commands.executor.stats.received), 20)

        def written() -> bool:
            db = sqlite3.connect(f"file:{rig.audit_db}?mode=ro", uri=True)
            try:
                return db.execute("SELECT 1 FROM audit_record WHERE event='written'").fetchone() is not None
            finally:
                db.close()

        await wait_for(written, 20)
        app = await restart_edge(rig)  # the read-back is cut off; nothing was journaled (it ran at once)

        result = await pending
        assert (result.outcome, result.reason) == (Outcome.FAILED, ReasonCode.WRITE_FAILED), result
        assert result.message == MAY_HAVE_WRITTEN
        assert result.write_status_code == 0 and result.written_at_ms is not None  # from the written record
        assert result.requested_value == 321.0 and result.metric == "SpeedSetpoint" and result.device_id == "Labeler"
        records = rig.audit_events(result.command_id)
        assert [r["event"] for r in records] == ["written", "failed"]
        closing = records[-1]
        assert closing["details"]["closed_at_startup"] is True and closing["details"]["open_event"] == "written"
        assert closing["target"]["node_id"] == records[0]["target"]["node_id"]  # who/what/where carried over
        assert closing["old_value"] == records[0]["old_value"]
        assert app.commands.executor.stats.closed_at_startup == 1
        assert await rig.read("Line1/Labeler/SpeedSetpoint") == 321.0  # it had indeed been written

        # a third start finds nothing open: the closing record is final
        app = await restart_edge(rig)
        assert app.commands.executor.stats.closed_at_startup == 0
        assert all(r["event"] in FINAL_EVENTS for r in rig.audit_events(result.command_id)[-1:])
    report = verify(rig.audit_db)
    assert report.ok, report.summary()


async def test_queued_commands_survive_a_sigkill_of_the_edge_process(mosquitto: BrokerEndpoint,
                                                                     tmp_path: Path) -> None:
    """A crash, not a stop: ``uns edge run`` in its own process, killed with SIGKILL while commands
    wait for OPC UA; a new edge on the same data dir runs them once the server is back."""
    keys = {u: generate_private_key() for u in NAMES}
    allowlist, users = write_rules(tmp_path, keys)
    sim = SimulatedLineServer(SimulatorConfig(port=free_port(), tick_s=0.1))
    await sim.start()
    data_dir = tmp_path / "edge"
    config_path = tmp_path / "edge.yaml"
    config_path.write_text(yaml.safe_dump(edge_config(sim, mosquitto.url, data_dir, allowlist, users).model_dump(
        mode="json", exclude_unset=True, by_alias=True)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "unshub.cli.main", "edge", "run", "--config", str(config_path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    app: EdgeNodeApp | None = None
    journal = data_dir / "commands" / "journal.db"
    audit_db = data_dir / "audit" / "commands.db"

    def rows() -> int:
        if not journal.exists():
            return 0
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        try:
            return int(db.execute("SELECT COUNT(*) FROM command_journal").fetchone()[0])
        except sqlite3.OperationalError:  # the table is not created yet
            return 0
        finally:
            db.close()

    try:
        async with CommandClient(mosquitto.url) as client:
            signer = Signer("alice", NAMES["alice"], keys["alice"], SignatureMeaning.AUTHORED)
            await client.resolve(GROUP, EDGE, "Filler", "SpeedSetpoint")  # the edge process is born
            # whether or not its command session noticed yet, a command now has to wait (and is journaled)
            await sim.stop()

            def submit(value: float) -> asyncio.Task[Any]:
                return asyncio.create_task(client.submit(
                    group_id=GROUP, edge_node_id=EDGE, device_id="Filler", metric="SpeedSetpoint", value=value,
                    requested_by="alice", reason="sigkill test", signers=[signer], validity_s=60, timeout=60))

            first = submit(111)
            await wait_for(lambda: rows() == 1, 20)
            second = submit(112)
            await wait_for(lambda: rows() == 2, 20)
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.wait(), 10)
            assert proc.returncode == -signal.SIGKILL

            app = EdgeNodeApp(load_edge_config(config_path))  # the writer lock died with the process
            await app.start()
            await app.client.wait_birthed(20)
            await sim.start()
            a, b = await first, await second
            assert (a.outcome, b.outcome) == (Outcome.CONFIRMED, Outcome.CONFIRMED), (a, b)
            assert a.written_at_ms <= b.written_at_ms
            assert app.commands is not None and app.commands.executor.stats.resumed == 2
            await wait_for(lambda: rows() == 0, 20)
            db = sqlite3.connect(f"file:{audit_db}?mode=ro", uri=True)
            try:
                trail = [e for (e,) in db.execute("SELECT event FROM audit_record WHERE command_id=? ORDER BY seq",
                                                  (str(a.command_id),))]
            finally:
                db.close()
            assert trail == ["queued", "queued", "written", "readback_ok"]  # queued, killed, resumed, done
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        if app is not None:
            await app.stop()
        await sim.stop()
    report = verify(audit_db)
    assert report.ok, report.summary()
