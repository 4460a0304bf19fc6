"""Cancelling an order's start under way (issue 19 leftovers, item 1), with the real stack.

An order whose StartBatch command waits for a signature is cancelled by a supervisor through the
command path: the order is ``received`` again, the command ``cancelled``, the PLC untouched. Then
the adapter restarts while a second start waits for its signature: the command is gone with the
adapter's memory, the order is still ``starting`` and says why, nothing pretends a batch runs, and
the start can be cancelled. A start the PLC confirmed is refused a cancel. Every cancel is in the
audit chain (``uns audit verify`` passes over it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.e2e.stack import Stack, running_stack, wait_until
from tests.e2e.test_orders_genealogy import ORDER, _read_tags, _sign
from tests.faults.rig import restart
from uns.audit.query import AuditReader

UNS = str(Path(sys.executable).with_name("uns"))


def _nodes_online(stack: Stack) -> bool:
    return any(line.get("nodes_online") for line in (stack.api("GET", "/api/lines", role="viewer")[1] or []))


def _plc_batch(stack: Stack) -> str:
    batch, = asyncio.run(_read_tags(stack.opcua, "Line1/CurrentBatch"))
    return batch


def test_a_start_is_cancelled_before_and_after_an_adapter_restart_and_never_after_the_plc_ran_it(
        tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        line = stack.line
        plc_before = _plc_batch(stack)
        assert plc_before != "WO-4711"
        assert stack.api("POST", "/api/orders", {**ORDER, "line": line})[0] == 201

        # -- a start waiting for its signature, cancelled by a supervisor
        status, started = stack.api("POST", "/api/orders/WO-4711/start")
        assert status == 202, started
        first = started["command"]["request"]["command_id"]
        status, body = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": "wrong shift"})
        assert (status, body["reason"]) == (403, "role_required"), body
        status, body = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": ""}, role="supervisor")
        assert status == 422, body
        status, order = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": "wrong shift"},
                                  role="supervisor")
        assert status == 200, order
        assert (order["status"], order["command_id"], order["detail"]) == (
            "received", None, f"start cancelled by demo-supervisor: wrong shift (start command cancelled, "
                              f"command {first})")
        _, command = stack.api("GET", f"/api/commands/{first}", role="viewer")
        assert (command["status"], command["message"]) == ("cancelled", "cancelled by demo-supervisor: wrong shift")
        status, body = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": "again"}, role="supervisor")
        assert (status, body["reason"]) == (409, "order_not_starting"), body
        # the cancelled command can no longer be signed
        status, body = stack.api("POST", f"/api/commands/{first}/sign", _sign(stack, started["command"]))
        assert (status, body["reason"]) == (409, "not_open"), body

        # -- a second start, then the adapter restarts before anyone signed it
        status, started = stack.api("POST", "/api/orders/WO-4711/start")
        assert status == 202 and started["order"]["status"] == "starting", started
        second = started["command"]["request"]["command_id"]
        restart(stack, "adapter")
        wait_until(lambda: _nodes_online(stack), 60, "edge node online again after the adapter restart")
        _, order = stack.api("GET", "/api/orders/WO-4711", role="viewer")
        assert (order["status"], order["command_id"], order["detail"]) == (
            "starting", second, f"start command {second} was never sent and the adapter restarted since: nobody "
                                "can sign it any more; cancel the start (POST /api/orders/WO-4711/cancel)")
        # nothing false: no batch, the PLC untouched, the command shown as far as it went
        assert stack.api("GET", f"/api/batches?line={line}", role="viewer") == (200, [])
        _, state = stack.api("GET", f"/api/lines/{line}/state", role="viewer")
        assert state["current_batch"] is None, state
        _, command = stack.api("GET", f"/api/commands/{second}", role="viewer")
        assert (command["from_audit"], command["status"]) == (True, "requested"), command
        assert _plc_batch(stack) == plc_before
        status, body = stack.api("POST", "/api/orders/WO-4711/start")
        assert (status, body["reason"]) == (409, "order_already_started"), body
        status, order = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": "adapter restarted"},
                                  role="supervisor")
        assert status == 200, order
        assert (order["status"], order["detail"]) == (
            "received", f"start cancelled by demo-supervisor: adapter restarted (start command lost, "
                        f"command {second})")
        _, command = stack.api("GET", f"/api/commands/{second}", role="viewer")
        assert (command["status"], command["audit"][-1]["actor_user_id"]) == (
            "order_start_cancelled", "demo-supervisor"), command

        # -- a third start runs; its cancel is refused: the PLC holds the parameters
        status, started = stack.api("POST", "/api/orders/WO-4711/start")
        assert status == 202, started
        third = started["command"]["request"]["command_id"]
        status, signed = stack.api("POST", f"/api/commands/{third}/sign", _sign(stack, started["command"]))
        assert status == 200, signed
        wait_until(lambda: stack.api("GET", "/api/orders/WO-4711", role="viewer")[1]["status"] == "running", 30,
                   "order running")
        status, body = stack.api("POST", "/api/orders/WO-4711/cancel", {"reason": "too late"}, role="supervisor")
        assert (status, body["reason"], body["detail"]) == (
            409, "start_command_executed",
            f"order 'WO-4711': its start command {third} was executed (the PLC holds the batch parameters); end "
            "the batch instead of cancelling the start"), body
        assert _plc_batch(stack) == "WO-4711"
    audit_path = stack.folder.parent / "data" / "adapter" / "audit" / "audit.sqlite"
    with AuditReader(audit_path) as reader:
        cancels = [r.fields() for r in reader.events("order_start_cancelled")]
    assert [(r["command_id"], r["actor_user_id"], r["reason"], r["message"]) for r in cancels] == [
        (first, "demo-supervisor", "wrong shift", "start command cancelled"),
        (second, "demo-supervisor", "adapter restarted", "start command lost")]
    ok = subprocess.run([UNS, "audit", "verify", str(audit_path)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
