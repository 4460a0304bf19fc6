"""The executor's verdicts as plain functions (no server, no broker): deadline, read-back, results."""

from __future__ import annotations

import uuid

from edge_node.commands.logic import (
    Observed,
    Pending,
    deadline_ms,
    is_good,
    readback_verdict,
    refusal_outcome,
    result_of,
)
from uns.commands.allowlist import Allowlist
from uns.commands.checker import AllowlistChecker, build_request
from uns.commands.model import Outcome, ReasonCode
from uns.commands.signing import UserRegistry

RULES = Allowlist.from_yaml("""
version: "u1"
lines:
  - group_id: "a:b"
    edge_node_id: "c:d"
    metrics:
      - {device_id: F, metric: SP, datatype: Double, tolerance: 0.5, readback_timeout_s: 1, validity_s: 10,
         write: {node_id: "ns=2;s=SP"}}
""")
T0 = 1_700_000_000_000


def request(value: float = 100.0, validity_s: float | None = None):  # type: ignore[no-untyped-def]
    return build_request(RULES, group_id="a:b", edge_node_id="c:d", device_id="F", metric="SP", value=value,
                         requested_by="alice", reason="t", now_ms=T0, validity_s=validity_s)


def rule():  # type: ignore[no-untyped-def]
    return RULES.find("a:b", "c:d", "F", "SP")[1]  # type: ignore[index]


def test_status_severity() -> None:
    assert is_good(0) and is_good(0x00960000)  # GoodLocalOverride
    assert not is_good(0x40900000) and not is_good(0x80740000) and not is_good(None)


def test_deadline_is_capped_by_rule_validity_like_the_checker() -> None:
    req = request()
    assert deadline_ms(req, rule()) == T0 + 10_000  # build_request already capped it
    long = req.model_copy(update={"valid_until_ms": T0 + 3_600_000})
    assert deadline_ms(long, rule()) == T0 + 10_000
    decision = AllowlistChecker(RULES, UserRegistry()).check(long, None, T0 + 10_001, consume=False)
    assert decision.reason is ReasonCode.EXPIRED and refusal_outcome(decision) is Outcome.EXPIRED


def test_readback_within_tolerance_confirms() -> None:
    assert readback_verdict(rule(), 100.0, [Observed(100.4, 0, T0)])[0] is Outcome.CONFIRMED


def test_last_good_readback_that_differs_is_a_mismatch() -> None:
    outcome, reason, message = readback_verdict(rule(), 100.0,
                                                [Observed(90.0, 0, T0), Observed(None, 0x80050000, None)])
    assert (outcome, reason) == (Outcome.MISMATCH, ReasonCode.READBACK_MISMATCH)
    assert "90.0" in message


def test_no_good_readback_is_a_timeout() -> None:
    outcome, reason, message = readback_verdict(rule(), 100.0, [Observed(None, 0x808A0000, None)])
    assert (outcome, reason) == (Outcome.TIMEOUT, ReasonCode.READBACK_TIMEOUT)
    assert "0x808A0000" in message
    assert readback_verdict(rule(), 100.0, [])[0] is Outcome.TIMEOUT


def test_uncertain_readback_does_not_confirm_even_if_equal() -> None:
    assert readback_verdict(rule(), 100.0, [Observed(100.0, 0x40900000, T0)])[0] is Outcome.TIMEOUT


def test_result_carries_old_written_and_readback_facts() -> None:
    req = request()
    decision = AllowlistChecker(RULES, UserRegistry()).check(req, None, T0, consume=False)
    line, r = RULES.find("a:b", "c:d", "F", "SP")  # type: ignore[misc]
    pending = Pending(request=req, rule=r, line=line, endpoint="e", received_at_ms=T0 + 1, deadline_ms=T0 + 10_000,
                      decision=decision, old=Observed(50.0, 0, T0 - 5), write_status_code=0, written_at_ms=T0 + 3,
                      readbacks=[Observed(100.0, 0, T0 + 4)])
    result = result_of(req, Outcome.CONFIRMED, None, "ok", received_at_ms=T0 + 1, completed_at_ms=T0 + 5,
                       pending=pending)
    assert (result.old_value, result.requested_value, result.readback_value) == (50.0, 100.0, 100.0)
    assert (result.old_source_ts_ms, result.written_at_ms, result.readback_source_ts_ms) == (T0 - 5, T0 + 3, T0 + 4)
    assert result.command_hash == req.command_hash() and isinstance(result.command_id, uuid.UUID)
