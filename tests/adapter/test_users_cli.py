"""Issue 18 item 6: ``uns adapter users add|list|passwd|remove`` through the real ``uns`` command.

What the command writes is read back by the adapter's own loader (``UsersFile.load``) and checked
with the adapter's own login (``SessionStore``): the file it makes is the file the adapter reads.
Nothing is silently overwritten: a rewrite leaves a backup beside the file and says so; a duplicate
user, an unknown user or role, and a missing password variable are refused with nothing written.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from mes_adapter.auth import AuthError, Role, SessionStore, UsersFile
from tests.support.procs import uns_command

PASSWORD = "correct horse battery staple"


def _uns(*args: str, password: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "UNS_TEST_PW"}
    if password is not None:
        env["UNS_TEST_PW"] = password
    return subprocess.run(uns_command("adapter", "users", *args), capture_output=True, text=True, env=env,
                          input=stdin, timeout=60, check=False)


def _backups(folder: Path) -> list[Path]:
    return sorted(folder.glob("users.yaml.bak-*"))


def _logs_in(users: Path, user: str, password: str) -> bool:
    store = SessionStore(UsersFile.load(users).users, ttl_s=60)
    try:
        store.login(user, password, now_ms=0)
    except AuthError:
        return False
    return True


def test_add_list_passwd_remove_keep_a_backup_of_every_rewrite(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    done = _uns("add", "--file", str(users), "alice", "--role", "operator", "--full-name", "Alice Martin",
                "--password-env", "UNS_TEST_PW", password=PASSWORD)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (f"added user 'alice' (operator) in {users}; restart the adapter to apply "
                           "(it reads the users file at start)\n")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert _backups(tmp_path) == []  # a new file has nothing to back up
    loaded = UsersFile.load(users).users
    assert list(loaded) == ["alice"]
    alice = loaded["alice"]
    assert (alice.role, alice.full_name, alice.active) == (Role.OPERATOR, "Alice Martin", True)
    assert alice.hash.startswith("$argon2id$")
    assert _logs_in(users, "alice", PASSWORD) and not _logs_in(users, "alice", "wrong")

    # the prompt (asked twice) instead of the environment
    first = users.read_text()
    done = _uns("add", "--file", str(users), "bob", "--role", "supervisor", "--full-name", "Bob Chef",
                stdin="bob's pw\nbob's pw\n")
    assert done.returncode == 0, done.stderr
    [backup] = _backups(tmp_path)
    assert done.stdout.endswith(f"backed up the previous users file to {backup}\nadded user 'bob' (supervisor) "
                                f"in {users}; restart the adapter to apply (it reads the users file at start)\n")
    assert backup.read_text() == first and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert _logs_in(users, "bob", "bob's pw")

    listed = _uns("list", "--file", str(users))
    assert (listed.returncode, listed.stdout) == (0, "alice\toperator\tactive\tAlice Martin\n"
                                                     "bob\tsupervisor\tactive\tBob Chef\n")

    done = _uns("passwd", "--file", str(users), "alice", "--password-env", "UNS_TEST_PW", password="new one")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"changed the password of 'alice' in {users}")
    assert len(_backups(tmp_path)) == 2
    assert _logs_in(users, "alice", "new one") and not _logs_in(users, "alice", PASSWORD)
    assert _logs_in(users, "bob", "bob's pw")  # the other user is untouched

    done = _uns("remove", "--file", str(users), "bob")
    assert done.returncode == 0, done.stderr
    assert list(UsersFile.load(users).users) == ["alice"]
    assert len(_backups(tmp_path)) == 3


@pytest.mark.parametrize(("args", "password", "message"), [
    (["add", "alice", "--role", "viewer", "--full-name", "Other Alice", "--password-env", "UNS_TEST_PW"], "pw",
     "user 'alice' already exists; change the password with `uns adapter users passwd`, or remove the user first"),
    (["add", "carol", "--role", "boss", "--full-name", "Carol", "--password-env", "UNS_TEST_PW"], "pw",
     "unknown role 'boss'; use one of ['viewer', 'operator', 'supervisor', 'engineer', 'qa']"),
    (["add", "carol smith", "--role", "viewer", "--full-name", "Carol", "--password-env", "UNS_TEST_PW"], "pw",
     "user id 'carol smith' must be 1-128 characters with no whitespace"),
    (["add", "carol", "--role", "viewer", "--full-name", "Carol", "--password-env", "UNS_TEST_PW"], None,
     "--password-env UNS_TEST_PW: the environment variable is not set or empty"),
    (["passwd", "carol", "--password-env", "UNS_TEST_PW"], "pw",
     "user 'carol' is not in the users file (users: alice)"),
    (["remove", "carol"], None, "user 'carol' is not in the users file (users: alice)"),
])
def test_refusals_write_nothing(tmp_path: Path, args: list[str], password: str | None, message: str) -> None:
    users = tmp_path / "users.yaml"
    assert _uns("add", "--file", str(users), "alice", "--role", "operator", "--full-name", "Alice",
                "--password-env", "UNS_TEST_PW", password=PASSWORD).returncode == 0
    before = users.read_text()
    done = _uns(*args[:1], "--file", str(users), *args[1:], password=password)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"uns adapter users: {message}\n")
    assert users.read_text() == before
    assert _backups(tmp_path) == []


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    users = tmp_path / "users.yaml"
    done = _uns("list", "--file", str(users))
    assert (done.returncode, done.stderr) == (2, f"uns adapter users: {users}: users file does not exist; create it "
                                                 f"with `uns adapter users add --file {users} USER --role ROLE "
                                                 "--full-name NAME`\n")
    users.write_text("users:\n  alice:\n    hash: plain\n    role: operator\n    full_name: A\n")
    done = _uns("add", "--file", str(users), "bob", "--role", "viewer", "--full-name", "B",
                "--password-env", "UNS_TEST_PW", password="pw")
    assert done.returncode == 2
    assert done.stderr.startswith(f"uns adapter users: {users}:3: users.alice.hash:")
    assert "argon2" in done.stderr
    assert users.read_text().endswith("full_name: A\n") and _backups(tmp_path) == []
