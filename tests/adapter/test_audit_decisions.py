"""Batch decisions in the audit chain (issue 19 item 6): who asserted, started, re-phased and ended a
batch over real HTTP and over MQTT, the config files loaded at start, then `uns audit verify` on the
chain, and a tampered record named by it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiomqtt
import yaml

from mes_adapter.context import context_topic
from mes_adapter.timefmt import now_ms
from tests.audit.conftest import attacker
from tests.support.mosquitto import BrokerEndpoint
from tests.support.net import free_port
from uns.audit.decisions import file_sha256
from uns.audit.query import AuditReader
from uns.isa95 import NamespaceMapping

from .conftest import eventually, serve
from .edge import LINE
from .setup import auth, write_files

UNS = str(Path(sys.executable).with_name("uns"))


def _records(path: Path) -> list[dict]:
    with AuditReader(path) as reader:
        return [r.fields() for r in reader.events()]


async def test_batch_decisions_are_chained_with_identity_and_tampering_is_named(
        tmp_path: Path, mosquitto: BrokerEndpoint) -> None:
    files = write_files(tmp_path, mosquitto.url, free_port())
    files.config["mes"]["lines"][0]["context_publisher"] = "line-app"
    (files.directory / "adapter.yaml").write_text(yaml.safe_dump(files.config, sort_keys=False))
    audit_path = files.directory / "data" / "audit" / "audit.sqlite"
    async with serve(files, mosquitto) as running:
        client = running.client
        start = await client.post(f"/api/lines/{LINE}/batch/start",
                                  json={"batch_id": "B-1", "work_order_id": "WO-1", "product_id": "SKU-12"},
                                  headers=auth("operator"))
        assert start.status_code == 201, start.text
        phase = await client.post(f"/api/lines/{LINE}/batch/phase", json={"phase": "filling"},
                                  headers=auth("supervisor"))
        assert phase.status_code == 200, phase.text
        end = await client.post(f"/api/lines/{LINE}/batch/end", json={"batch_id": "B-1"}, headers=auth("operator"))
        assert end.status_code == 200, end.text
        # another plant app asserts the next batch over MQTT; its payload claims to be someone else
        topic = context_topic(NamespaceMapping(), LINE)
        payload = {"seq": 3, "since_ms": now_ms(), "batch_id": "B-2", "work_order_id": "WO-2",
                   "asserted_by": "mallory-says-she-is-qa"}
        async with aiomqtt.Client(hostname="127.0.0.1", port=mosquitto.port, identifier="line-app-test") as mqtt:
            await mqtt.publish(topic, json.dumps(payload).encode(), qos=1, retain=True)

        async def b2_running() -> bool:
            state = (await client.get(f"/api/lines/{LINE}/state", headers=auth("viewer"))).json()
            return bool(state["current_batch"]) and state["current_batch"]["batch_id"] == "B-2"

        await eventually(b2_running)
    # the adapter stopped: the chain is sealed by its closing checkpoint
    records = _records(audit_path)
    decisions = [r for r in records if r["event"] != "config_loaded"]
    assert [(r["event"], r["actor_user_id"], r["auth_method"], r["batch_id"]) for r in decisions] == [
        ("batch_started", "alice", "api-token", "B-1"),
        ("batch_phase", "bob", "api-token", "B-1"),
        ("batch_ended", "alice", "api-token", "B-1"),
        ("batch_started", "mqtt:line-app", "broker-acl", "B-2"),
    ]
    assert decisions[0]["actor_printed_name"] == "Alice Operator"
    assert decisions[0]["target"]["isa95_path"] == LINE and decisions[0]["work_order_id"] == "WO-1"
    assert decisions[0]["details"]["assertion"]["product_id"] == "SKU-12"
    assert decisions[1]["old_value"] == {"batch_id": "B-1", "phase": None, "ended": False}
    assert decisions[1]["details"]["assertion"]["phase"] == "filling"
    # the free-text field is kept as a claim, never as the actor
    assert decisions[3]["details"]["via"] == "uns"
    assert decisions[3]["details"]["claimed_asserted_by"] == "mallory-says-she-is-qa"
    configs = [(r["details"]["role"], r["details"]["path"], r["details"]["sha256"])
               for r in records if r["event"] == "config_loaded"]
    adapter_yaml = (files.directory / "adapter.yaml").resolve()
    assert configs == [
        ("adapter_config", str(adapter_yaml), file_sha256(adapter_yaml)),
        ("allowlist", str(files.directory / "allowlist.yaml"), file_sha256(files.directory / "allowlist.yaml")),
        ("signers", str(files.directory / "signers.yaml"), file_sha256(files.directory / "signers.yaml")),
    ]
    assert all(r["actor_user_id"] == "service:mes-adapter" and r["auth_method"] == "service"
               for r in records[:3])

    ok = await asyncio.to_thread(subprocess.run, [UNS, "audit", "verify", str(audit_path)],
                                 capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith(f"OK: {len(records)} records")

    started_seq = records.index(decisions[0]) + 1
    with attacker(audit_path) as db:  # someone rewrites who started B-1
        db.execute("UPDATE audit_record SET body=replace(body, '\"alice\"', '\"bob\"') WHERE seq=?", (started_seq,))
    broken = await asyncio.to_thread(subprocess.run, [UNS, "audit", "verify", str(audit_path)],
                                     capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert broken.stdout.startswith(f"BROKEN at record seq {started_seq}: edited"), broken.stdout
