"""The batch-decision entries of uns.audit.decisions: classification, identity, config hashes,
and that they chain and verify like command records."""

from __future__ import annotations

import hashlib
from pathlib import Path

from uns.audit.chain import AuditLog
from uns.audit.decisions import Actor, AuthMethod, DecisionAudit, classify_context
from uns.audit.query import AuditReader
from uns.audit.record import AuditEvent
from uns.audit.verify import verify

RUNNING = {"batch_id": "B-1", "phase": "fill", "ended": False}


def test_classification_of_context_assertions() -> None:
    assert classify_context(None, {"batch_id": "B-1"}) is AuditEvent.BATCH_STARTED
    assert classify_context({"batch_id": "B-1", "ended": True}, {"batch_id": "B-2"}) is AuditEvent.BATCH_STARTED
    assert classify_context(RUNNING, {"batch_id": "B-2", "phase": "fill"}) is AuditEvent.BATCH_STARTED
    assert classify_context(RUNNING, {"batch_id": "B-1", "phase": "cap"}) is AuditEvent.BATCH_PHASE
    assert classify_context(RUNNING, {"batch_id": "B-1", "phase": "fill", "target_quantity": 5}) \
        is AuditEvent.CONTEXT_ASSERTED
    assert classify_context(RUNNING, {"batch_id": "B-1", "ended": True}) is AuditEvent.BATCH_ENDED
    assert classify_context(None, {"batch_id": None}) is AuditEvent.CONTEXT_ASSERTED


def test_broker_identity_is_the_acl_binding_or_says_unattributed() -> None:
    assert Actor.broker_user("line-app") == Actor("mqtt:line-app", AuthMethod.BROKER_ACL)
    assert Actor.broker_user(None) == Actor("mqtt:unattributed", AuthMethod.UNATTRIBUTED)


def test_decisions_chain_and_verify(tmp_path: Path) -> None:
    config = tmp_path / "adapter.yaml"
    config.write_text("host: {}\n")
    with AuditLog(tmp_path / "audit.sqlite") as log:
        audit = DecisionAudit(log, "mes-adapter")
        audit.config_loaded([("adapter_config", config), ("allowlist", tmp_path / "missing.yaml")])
        audit.context({"line": "a/b/c/d", "seq": 0, "batch_id": "B-1", "asserted_by": "x"}, None,
                      Actor("alice", AuthMethod.API_TOKEN, printed_name="Alice"), "api")
        audit.reason_code(Actor.service("mes-adapter"), line="a/b/c/d", batch_id="B-1", stop_id="S-1",
                          code="jam", previous_code=None)
        audit.requeue("C-1", Actor("bob", AuthMethod.API_TOKEN), line="a/b/c/d", batch_id="B-1", attempts_before=3)
    assert verify(tmp_path / "audit.sqlite").ok
    with AuditReader(tmp_path / "audit.sqlite") as reader:
        rows = [r.fields() for r in reader.events()]
    assert [(r["event"], r["actor_user_id"], r["outcome"]) for r in rows] == [
        ("config_loaded", "service:mes-adapter", "loaded"), ("config_loaded", "service:mes-adapter", "unreadable"),
        ("batch_started", "alice", "accepted"), ("reason_code_set", "service:mes-adapter", "recorded"),
        ("outbox_requeued", "bob", "requeued")]
    assert rows[0]["details"] == {"role": "adapter_config", "path": str(config),
                                  "sha256": hashlib.sha256(config.read_bytes()).hexdigest()}
    assert rows[1]["details"]["sha256"] is None
    assert (rows[3]["requested_value"], rows[3]["details"]) == ("jam", {"stop_id": "S-1"})
