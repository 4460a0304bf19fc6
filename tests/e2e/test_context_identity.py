"""Issue 19 item 6: a batch context asserted over MQTT is audited as the broker user the broker's
ACL binds to the line's ``_context`` topic, on the embedded broker with real users.

Another authenticated user whose role does not cover that topic publishes a context first: the
broker drops it, so it never becomes a batch or an audit record; the bound user's assertion does,
attributed ``mqtt:<user>`` / ``broker-acl``, while the payload's free-text ``asserted_by`` stays a claim.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import aiomqtt
import yaml

from mes_adapter.context import context_topic
from tests.e2e.stack import running_stack, wait_until
from tests.support.procs import uns_command
from uns.audit.query import AuditReader
from uns.isa95 import NamespaceMapping

LINE = "acme/plant1/packaging/line1"
USERS = {"line1-context": ("ctx-password-1", "line1-context"), "line9-app": ("other-password-9", "line9-context")}


async def _publish(port: int, user: str, payload: dict) -> None:
    password = USERS[user][0]
    async with aiomqtt.Client(hostname="127.0.0.1", port=port, username=user, password=password,
                              identifier=f"test-{user}") as client:
        await client.publish(context_topic(NamespaceMapping(), LINE), json.dumps(payload).encode(), qos=1,
                             retain=True)


def test_mqtt_context_is_attributed_to_the_acl_bound_broker_user(tmp_path: Path) -> None:
    paths: dict[str, Path] = {}

    def configure(adapter: dict) -> None:
        folder = tmp_path / "config"
        adapter["mes"]["lines"][0]["context_publisher"] = "line1-context"
        broker_file = folder / "broker.yaml"
        broker = yaml.safe_load(broker_file.read_text())
        broker["roles"] = {
            "line1-context": {"publish": [f"{LINE}/_context/#"], "subscribe": [f"{LINE}/#"]},
            "line9-context": {"publish": ["acme/plant1/packaging/line9/_context/#"], "subscribe": [f"{LINE}/#"]},
        }
        broker_file.write_text(yaml.safe_dump(broker, sort_keys=False))
        for user, (password, role) in USERS.items():
            done = subprocess.run(uns_command("broker", "passwd", str(folder / broker["password_file"]), user,
                                              "--role", role, "--password-stdin"),
                                  input=password + "\n", capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        data_dir = Path(adapter["data_dir"])
        paths["audit"] = (data_dir if data_dir.is_absolute() else folder / data_dir) / "audit" / "audit.sqlite"

    with running_stack(tmp_path, adapter_overrides=configure) as stack:
        assert stack.line == LINE
        now = int(time.time() * 1000)
        asyncio.run(_publish(stack.mqtt_port, "line9-app", {"seq": 0, "since_ms": now, "batch_id": "B-INTRUDER",
                                                             "asserted_by": "line1-context"}))
        asyncio.run(_publish(stack.mqtt_port, "line1-context", {"seq": 0, "since_ms": now, "batch_id": "B-CTX",
                                                                 "work_order_id": "WO-9", "asserted_by": "Jo (MES)"}))

        def running() -> str | None:
            _, state = stack.api("GET", f"/api/lines/{LINE}/state", role="viewer")
            batch = (state or {}).get("current_batch")
            return batch["batch_id"] if batch else None

        assert wait_until(running, 20, "the asserted batch running") == "B-CTX"
        _, batches = stack.api("GET", f"/api/batches?line={LINE}", role="viewer")
        assert [b["batch_id"] for b in batches] == ["B-CTX"]
        with AuditReader(paths["audit"]) as reader:
            decided = [r.fields() for r in reader.events("batch_started", "batch_phase", "batch_ended",
                                                          "context_asserted")]
    assert [(r["event"], r["actor_user_id"], r["auth_method"], r["batch_id"], r["work_order_id"])
            for r in decided] == [("batch_started", "mqtt:line1-context", "broker-acl", "B-CTX", "WO-9")]
    assert decided[0]["details"]["claimed_asserted_by"] == "Jo (MES)"
    assert decided[0]["details"]["via"] == "uns"
