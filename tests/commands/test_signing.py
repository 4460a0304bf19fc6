"""Signatures: keys, what a signature binds, and the two-person rule for critical commands."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from uns.commands.checker import AllowlistChecker
from uns.commands.model import ReasonCode, SignatureMeaning
from uns.commands.signing import (
    KeyFileError,
    UserRegistry,
    generate_private_key,
    load_private_key,
    registry_entry,
    write_private_key,
)

from .conftest import T0, MakeRequest, Users

RECIPE, COUNT = "Recipe/Select", "Filler/Count"
IDLE = 4


def _reason(checker: AllowlistChecker, request: object, now: int = T0) -> ReasonCode | None:
    return checker.check(request, IDLE, now).reason  # type: ignore[arg-type]


def test_critical_with_two_users_passes(checker: AllowlistChecker, make: MakeRequest) -> None:
    assert _reason(checker, make(RECIPE, "SKU-14", sign_as=("alice", "bob"))) is None


def test_critical_needs_a_second_signature(checker: AllowlistChecker, make: MakeRequest) -> None:
    decision = checker.check(make(RECIPE, "SKU-14"), IDLE, T0)
    assert decision.reason is ReasonCode.SECOND_SIGNATURE_REQUIRED and decision.critical


def test_same_user_twice_is_refused(checker: AllowlistChecker, make: MakeRequest, users: Users) -> None:
    request = users.sign(make(RECIPE, "SKU-14"), "alice", SignatureMeaning.APPROVED, T0 + 5000)
    assert _reason(checker, request) is ReasonCode.SAME_USER_SECOND_SIGNATURE


def test_second_signature_after_the_window_is_refused(checker: AllowlistChecker, make: MakeRequest,
                                                      users: Users) -> None:
    request = make(RECIPE, "SKU-14")
    late = users.sign(request, "bob", SignatureMeaning.APPROVED, T0 + 600_001)
    decision = checker.check(late, IDLE, T0 + 600_002)
    assert decision.reason is ReasonCode.SIGNATURE_EXPIRED and "window" in decision.message
    in_time = users.sign(request, "bob", SignatureMeaning.APPROVED, T0 + 600_000)
    assert _reason(checker, in_time, T0 + 600_000) is None


def test_second_signer_must_approve(checker: AllowlistChecker, make: MakeRequest, users: Users) -> None:
    request = users.sign(make(RECIPE, "SKU-14"), "bob", SignatureMeaning.AUTHORED, T0)
    assert _reason(checker, request) is ReasonCode.SECOND_SIGNATURE_REQUIRED


def test_command_changed_after_signing_is_refused(checker: AllowlistChecker, make: MakeRequest) -> None:
    signed = make(RECIPE, "SKU-14", sign_as=("alice", "bob"))
    tampered = signed.model_copy(update={"value": "SKU-12"})
    decision = checker.check(tampered, IDLE, T0)
    assert decision.reason is ReasonCode.SIGNATURE_INVALID and "changed after it was signed" in decision.message


def test_unsigned_and_not_by_requester(checker: AllowlistChecker, make: MakeRequest) -> None:
    assert _reason(checker, make(COUNT, 1, sign_as=())) is ReasonCode.SIGNATURE_MISSING
    assert _reason(checker, make(COUNT, 1, sign_as=("bob",))) is ReasonCode.SIGNATURE_MISSING


def test_unregistered_user_and_forged_value(checker: AllowlistChecker, make: MakeRequest, users: Users) -> None:
    by_carol = make(COUNT, 1, requested_by="carol", sign_as=("carol",))
    decision = checker.check(by_carol, None, T0)
    assert decision.reason is ReasonCode.SIGNATURE_INVALID and "not in the user registry" in decision.message
    good = make(COUNT, 1)
    sig = good.signatures[0]
    forged_time = good.model_copy(update={"signatures": (sig.model_copy(update={"signed_at_ms": T0 + 1}),)})
    assert "does not verify" in checker.check(forged_time, None, T0).message
    # bob's signature relabelled as alice's: key id no longer matches alice's registered key
    as_alice = make(COUNT, 1, sign_as=())
    bob_sig = users.sign(as_alice, "bob").signatures[0]
    relabelled = as_alice.with_signature(bob_sig.model_copy(update={"user_id": "alice", "full_name": "Alice Archer"}))
    assert _reason(checker, relabelled) is ReasonCode.SIGNATURE_INVALID


def test_meaning_is_bound(checker: AllowlistChecker, make: MakeRequest) -> None:
    request = make(RECIPE, "SKU-14", sign_as=("alice", "bob"))
    approval = request.signatures[1]
    reviewed = approval.model_copy(update={"meaning": SignatureMeaning.REVIEWED})
    swapped = request.model_copy(update={"signatures": (request.signatures[0], reviewed)})
    assert _reason(checker, swapped) is ReasonCode.SIGNATURE_INVALID


def test_future_dated_signature(checker: AllowlistChecker, make: MakeRequest) -> None:
    request = make(COUNT, 1, at=T0 + 120_000)
    assert _reason(checker, request, T0 + 120_000) is None
    assert _reason(checker, request.model_copy(update={"created_at_ms": T0, "valid_until_ms": T0 + 300_000,
                                                       "signatures": ()}), T0) is ReasonCode.SIGNATURE_MISSING


def test_deactivated_user(checker: AllowlistChecker, make: MakeRequest, users: Users) -> None:
    registry = users.registry.model_copy(update={"users": {
        **users.registry.users, "alice": users.registry.users["alice"].model_copy(update={"active": False})}})
    strict = AllowlistChecker(checker.allowlist, registry)
    assert "deactivated" in strict.check(make(COUNT, 1), None, T0).message


def test_key_file_mode_passphrase_and_registry(tmp_path: Path) -> None:
    key = generate_private_key()
    path = tmp_path / "alice.key"
    write_private_key(path, key, b"correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private_key(path, key)
    assert load_private_key(path, b"correct horse").public_key() == key.public_key()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(path, b"wrong")
    with pytest.raises(KeyFileError):
        load_private_key(path, None)
    registry_path = tmp_path / "users.yaml"
    import yaml

    registry_path.write_text(yaml.safe_dump(registry_entry("alice", "Alice Archer", key.public_key())))
    assert UserRegistry.load(registry_path).users["alice"].full_name == "Alice Archer"
    registry_path.write_text("users:\n  alice: {full_name: A, public_key: 'ed25519:AAAA'}\n")
    with pytest.raises(ValueError, match=r"users.yaml:2: users.alice.public_key: an Ed25519 public key has 32 bytes"):
        UserRegistry.load(registry_path)
    registry_path.write_text("users:\n  alice:\n    full_name: A\n    public_key: 'ed25519:AAAA'\n    activ: true\n")
    with pytest.raises(ValueError, match=r"users.yaml:5: users.alice.activ: unknown field \(typo\?\)"):
        UserRegistry.load(registry_path)
