"""Every refusal reason of the allowlist checker, and what is allowed."""

from __future__ import annotations

import pytest

from uns.commands.checker import AllowlistChecker
from uns.commands.model import ReasonCode

from .conftest import T0, MakeRequest

IDLE, EXECUTE, STOPPED = 4, 6, 2
SPEED, RECIPE, TEMP, COUNT = "Filler/SpeedSetpoint", "Recipe/Select", "Filler/TempSetpoint", "Filler/Count"


def test_allowed_write(checker: AllowlistChecker, make: MakeRequest) -> None:
    decision = checker.check(make(SPEED, 120.5), EXECUTE, T0 + 1000)
    assert decision.allowed and decision.reason is None
    assert decision.rule_id == "packaging:line1/filler/Filler/SpeedSetpoint"
    assert decision.allowlist_version == "2025-01-15.1" and decision.machine_state == "Execute"


def test_state_given_by_name(checker: AllowlistChecker, make: MakeRequest) -> None:
    assert checker.check(make(SPEED, 10), "held", T0).allowed


@pytest.mark.parametrize(("metric", "value", "reason"), [
    (SPEED, "120", ReasonCode.WRONG_TYPE),
    (SPEED, True, ReasonCode.WRONG_TYPE),
    (SPEED, None, ReasonCode.WRONG_TYPE),
    (COUNT, 5.5, ReasonCode.WRONG_TYPE),
    (COUNT, 2**31, ReasonCode.WRONG_TYPE),
    (SPEED, 600.5, ReasonCode.OUT_OF_RANGE),
    (SPEED, -1, ReasonCode.OUT_OF_RANGE),
    (TEMP, 90.5, ReasonCode.OUT_OF_RANGE),
    (SPEED, 120.3, ReasonCode.OFF_STEP),
])
def test_value_refusals(checker: AllowlistChecker, make: MakeRequest, metric: str, value: object,
                        reason: ReasonCode) -> None:
    decision = checker.check(make(metric, value), EXECUTE, T0)
    assert not decision.allowed and decision.reason is reason, decision.message
    assert metric in decision.message


def test_not_in_enum(checker: AllowlistChecker, make: MakeRequest) -> None:
    decision = checker.check(make(RECIPE, "SKU-99", sign_as=("alice", "bob")), IDLE, T0)
    assert decision.reason is ReasonCode.NOT_IN_ENUM and "SKU-99" in decision.message


def test_not_allowlisted(checker: AllowlistChecker, make: MakeRequest) -> None:
    decision = checker.check(make("Filler/Secret", 1, device="filler"), EXECUTE, T0)
    assert decision.reason is ReasonCode.NOT_ALLOWLISTED and "Filler/Secret" in decision.message
    # same metric name on another device is another target
    assert checker.check(make(SPEED, 10, device="capper"), EXECUTE, T0).reason is ReasonCode.NOT_ALLOWLISTED


def test_wrong_machine_state(checker: AllowlistChecker, make: MakeRequest) -> None:
    request = make(RECIPE, "SKU-14", sign_as=("alice", "bob"))
    decision = checker.check(request, EXECUTE, T0)
    assert decision.reason is ReasonCode.WRONG_MACHINE_STATE and "Execute" in decision.message
    assert checker.check(request, None, T0).reason is ReasonCode.WRONG_MACHINE_STATE  # unknown → no write
    assert checker.check(request, 99, T0).reason is ReasonCode.WRONG_MACHINE_STATE
    assert checker.check(request, STOPPED, T0).allowed


def test_state_source_tells_caller_what_to_read(checker: AllowlistChecker, make: MakeRequest) -> None:
    source = checker.state_source(make(SPEED, 1))
    assert source is not None and (source.device_id, source.metric) == ("filler", "Status/StateCurrent")
    assert checker.state_source(make(COUNT, 1)) is None


def test_rate_limited_then_window_slides(checker: AllowlistChecker, make: MakeRequest) -> None:
    assert checker.check(make(SPEED, 1), EXECUTE, T0).allowed
    assert checker.check(make(SPEED, 2), EXECUTE, T0 + 10_000).allowed
    third = checker.check(make(SPEED, 3), EXECUTE, T0 + 20_000)
    assert third.reason is ReasonCode.RATE_LIMITED and "next slot in 40000 ms" in third.message
    assert checker.check(make(SPEED, 4), EXECUTE, T0 + 60_000).allowed  # the first slot expired


def test_refusals_and_dry_runs_take_no_slot(checker: AllowlistChecker, make: MakeRequest) -> None:
    for _ in range(3):
        assert checker.check(make(SPEED, 1), EXECUTE, T0, consume=False).allowed
        assert not checker.check(make(SPEED, 1), STOPPED, T0).allowed
    assert checker.check(make(SPEED, 1), EXECUTE, T0).allowed
    assert checker.check(make(SPEED, 1), EXECUTE, T0).allowed


def test_expired(checker: AllowlistChecker, make: MakeRequest) -> None:
    request = make(COUNT, 5)
    assert checker.check(request, None, request.valid_until_ms).allowed
    decision = checker.check(request, None, request.valid_until_ms + 1)
    assert decision.reason is ReasonCode.EXPIRED


def test_validity_is_capped_by_the_rule(checker: AllowlistChecker, make: MakeRequest) -> None:
    """A requester cannot extend its own deadline beyond the rule's validity_s (300 s default)."""
    request = make(COUNT, 5).model_copy(update={"valid_until_ms": T0 + 3_600_000})
    assert checker.check(request, None, T0 + 301_000).reason is ReasonCode.EXPIRED


def test_method_call_arguments(checker: AllowlistChecker, make: MakeRequest) -> None:
    def check(args: object) -> ReasonCode | None:
        return checker.check(make("Batch/Start", args, device=None, sign_as=("alice", "bob")), None, T0).reason

    assert check({"order": "WO-1", "product": "SKU-12", "quantity": 500}) is None
    assert check({"order": "WO-1", "product": "SKU-12", "quantity": 0}) is ReasonCode.OUT_OF_RANGE
    assert check({"order": "WO-1", "product": "SKU-99", "quantity": 5}) is ReasonCode.NOT_IN_ENUM
    assert check({"order": "WO-1", "product": "SKU-12"}) is ReasonCode.WRONG_TYPE
    assert check({"order": "WO-1", "product": "SKU-12", "quantity": 5, "x": 1}) is ReasonCode.WRONG_TYPE
    assert check("WO-1") is ReasonCode.WRONG_TYPE


def test_float_setpoint_is_normalized_to_float32(make: MakeRequest) -> None:
    request = make(TEMP, 72.4)
    assert request.value != 72.4 and abs(request.value - 72.4) < 1e-5
