"""One command's life in the audit trail, as the host records it: every step, every field.

The fields: who, what, when, where, old value, new value, why.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from uns.audit.chain import AuditLog
from uns.audit.verify import verify
from uns.commands import audit_events as ae
from uns.commands.checker import AllowlistChecker
from uns.commands.model import CommandResult, Outcome, ReasonCode

from .conftest import T0, MakeRequest

CONTEXT = ae.AuditContext(source="mes-adapter", client_id="hmi-7", isa95_path="acme/dublin/packaging/line1/filler",
                          opcua_endpoint="opc.tcp://plc1:4840", batch_id="B-17", work_order_id="WO-4711")


def test_critical_command_lifecycle(tmp_path: Path, checker: AllowlistChecker, make: MakeRequest) -> None:
    request = make("Recipe/Select", "SKU-14", sign_as=("alice", "bob"))
    _, rule = checker.rule_for(request)  # type: ignore[misc]
    refused = checker.check(request, "Execute", T0)
    allowed = checker.check(request, "Idle", T0)
    result = CommandResult(command_id=request.command_id, outcome=Outcome.CONFIRMED,
                           command_hash=request.command_hash(),
                           group_id=request.group_id, edge_node_id=request.edge_node_id, device_id=request.device_id,
                           metric=request.metric, old_value="SKU-12", requested_value="SKU-14",
                           readback_value="SKU-14", old_status_code=0, write_status_code=0, readback_status_code=0,
                           readback_source_ts_ms=T0 + 40, received_at_ms=T0 + 10, completed_at_ms=T0 + 50)
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        log.append(ae.requested(request, CONTEXT))
        for signature in request.signatures:
            log.append(ae.signed(request, signature, CONTEXT))
        log.append(ae.refused(request, refused, CONTEXT, rule))
        log.append(ae.dispatched(request, allowed, CONTEXT, rule))
        log.append(ae.result_entry(request, result, CONTEXT, rule, event=ae.AuditEvent.WRITTEN))
        log.append(ae.result_entry(request, result, CONTEXT, rule))
    assert verify(path).ok
    rows = [json.loads(b) for (b,) in sqlite3.connect(path).execute("SELECT body FROM audit_record ORDER BY seq")]
    assert [r["event"] for r in rows] == ["requested", "signed", "signed", "refused", "dispatched", "written",
                                          "readback_ok"]
    assert {r["command_id"] for r in rows} == {str(request.command_id)}
    assert all(r["payload_sha256"] == request.command_hash() and r["reason"] == "test change" for r in rows)
    signed = rows[2]
    assert (signed["actor_user_id"], signed["actor_printed_name"], signed["signature_meaning"]) == \
        ("bob", "Bob Baker", "approved")
    assert rows[3]["reason_code"] == ReasonCode.WRONG_MACHINE_STATE and rows[3]["outcome"] == "refused"
    dispatched = rows[4]
    assert dispatched["second_signer_user_id"] == "bob" and dispatched["actor_printed_name"] == "Alice Archer"
    assert dispatched["allowlist_rule_id"] == "packaging:line1/filler/Recipe/Select"
    assert dispatched["allowlist_version"] == "2025-01-15.1" and len(dispatched["signatures"]) == 2
    assert dispatched["target"]["node_id"] == "ns=2;s=Filler.Recipe" and dispatched["client_id"] == "hmi-7"
    closing = rows[6]
    values = (closing["old_value"], closing["requested_value"], closing["readback_value"])
    assert values == ("SKU-12", "SKU-14", "SKU-14")
    assert closing["outcome"] == "confirmed" and closing["batch_id"] == "B-17"
