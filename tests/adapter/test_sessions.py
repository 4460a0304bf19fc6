"""Dashboard sessions (issue 18 item 6): argon2id users, expiry, logout, no user enumeration.
The clock is passed in: expiry is asserted at exact instants, never by waiting."""

from __future__ import annotations

import pytest

from mes_adapter.auth import AuthError, Role, SessionStore, UserAccount
from uns.passwords import hash_password

HASH = hash_password("s3cret-pass")


def _store(ttl_s: float = 60.0, active: bool = True) -> SessionStore:
    return SessionStore({"alice": UserAccount(hash=HASH, role=Role.SUPERVISOR, full_name="Alice Martin",
                                              active=active)}, ttl_s)


def test_session_lives_until_its_expiry_and_ends_at_logout() -> None:
    store = _store()
    session_id, session = store.login("alice", "s3cret-pass", 1_000)
    assert session.expires_ms == 61_000
    who = store.principal(session_id, 60_999)
    assert (who.user_id, who.full_name, who.role) == ("alice", "Alice Martin", Role.SUPERVISOR)
    with pytest.raises(AuthError) as expired:
        store.principal(session_id, 61_000)
    assert (expired.value.status, expired.value.reason) == (401, "session_expired")
    again, _ = store.login("alice", "s3cret-pass", 70_000)
    assert again != session_id
    assert store.logout(again) is True
    with pytest.raises(AuthError) as gone:
        store.principal(again, 70_001)
    assert (gone.value.status, gone.value.reason) == (401, "no_session")


@pytest.mark.parametrize(("user", "password", "active"), [
    ("alice", "wrong", True), ("mallory", "s3cret-pass", True), ("alice", "s3cret-pass", False)])
def test_bad_credentials_say_nothing_about_which_part_was_wrong(user: str, password: str, active: bool) -> None:
    with pytest.raises(AuthError) as refused:
        _store(active=active).login(user, password, 1_000)
    assert (refused.value.status, refused.value.reason, refused.value.message) == (
        401, "bad_credentials", "wrong user name or password")


def test_a_users_file_hash_must_be_argon2() -> None:
    with pytest.raises(ValueError, match="argon2"):
        UserAccount(hash="plain", role=Role.VIEWER, full_name="X")
