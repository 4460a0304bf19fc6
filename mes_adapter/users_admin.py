"""Editing the dashboard users file (``auth.users_file``) for ``uns adapter users``.

The adapter only reads the file (:class:`mes_adapter.auth.UsersFile`, once at start); this module is
the one writer. It never loses what was there: an edit is refused rather than guessed (a user id
already present, an unknown one, a role that is not a role), the previous file is copied beside it
before it is rewritten (comments and hand edits survive in the copy), and the new file replaces the
old one atomically with mode 0600, so a starting adapter never reads half a file. Passwords are
hashed with the same argon2id hasher as the broker's password file (:mod:`uns.passwords`).

Pure edits (:func:`add_user`, :func:`remove_user`, :func:`set_password`) return a new
:class:`UsersFile`; only :func:`save` touches the disk.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mes_adapter.auth import Role, UserAccount, UsersFile
from mes_adapter.errors import MesInputError
from uns.commands.yamlsource import ConfigError
from uns.private_file import backup_file, write_private

__all__ = ["UsersFileError", "add_user", "check_new", "load", "remove_user", "require_user", "save", "set_password"]

#: the longest user id the login form accepts (``POST /api/session``)
MAX_USER_ID = 128


class UsersFileError(MesInputError):
    """The edit was refused or the file cannot be read; nothing was written."""


def load(path: Path, *, missing_ok: bool = False) -> UsersFile:
    """The users file as the adapter reads it; an empty one if it is missing and ``missing_ok``."""
    if not path.exists():
        if missing_ok:
            return UsersFile()
        raise UsersFileError(f"{path}: users file does not exist; create it with "
                             f"`uns adapter users add --file {path} USER --role ROLE --full-name NAME`")
    try:
        return UsersFile.load(path)
    except (ConfigError, OSError) as exc:
        raise UsersFileError(str(exc)) from None


def _user_id(user_id: str) -> str:
    if not user_id or len(user_id) > MAX_USER_ID or any(c.isspace() for c in user_id):
        raise UsersFileError(f"user id {user_id!r} must be 1-{MAX_USER_ID} characters with no whitespace")
    return user_id


def require_user(content: UsersFile, user_id: str) -> UserAccount:
    account = content.users.get(user_id)
    if account is None:
        raise UsersFileError(f"user {user_id!r} is not in the users file (users: "
                             f"{', '.join(sorted(content.users)) or 'none'})")
    return account


def _hash(password: str) -> str:
    from uns.passwords import hash_password

    if not password:
        raise UsersFileError("the password must not be empty")
    return hash_password(password)


def check_new(content: UsersFile, user_id: str, role: str, full_name: str) -> tuple[Role, str]:
    """The parsed role and trimmed full name of a user that may be added; :class:`UsersFileError`
    for a user id already present (use :func:`set_password`), a bad id, role or name. Cheap: call
    it before asking for a password."""
    _user_id(user_id)
    if user_id in content.users:
        raise UsersFileError(f"user {user_id!r} already exists; change the password with "
                             f"`uns adapter users passwd`, or remove the user first")
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise UsersFileError(str(exc)) from None
    if not full_name.strip():
        raise UsersFileError("the full name must not be empty (it is shown, and printed under signatures)")
    return parsed, full_name.strip()


def add_user(content: UsersFile, user_id: str, password: str, role: str, full_name: str) -> UsersFile:
    """``content`` plus a new user (see :func:`check_new` for what is refused)."""
    parsed, name = check_new(content, user_id, role, full_name)
    account = UserAccount(hash=_hash(password), role=parsed, full_name=name)
    return UsersFile(users={**content.users, user_id: account})


def remove_user(content: UsersFile, user_id: str) -> UsersFile:
    require_user(content, user_id)
    return UsersFile(users={k: v for k, v in content.users.items() if k != user_id})


def set_password(content: UsersFile, user_id: str, password: str) -> UsersFile:
    account = require_user(content, user_id)
    return UsersFile(users={**content.users, user_id: account.model_copy(update={"hash": _hash(password)})})


def _text(content: UsersFile) -> str:
    rows = {user_id: {"hash": a.hash, "role": a.role.label, "full_name": a.full_name, "active": a.active}
            for user_id, a in sorted(content.users.items())}
    return ("# uns-hub dashboard users (auth.users_file); manage with `uns adapter users`\n"
            + yaml.safe_dump({"users": rows}, sort_keys=False, allow_unicode=True))


def save(path: Path, content: UsersFile) -> Path | None:
    """Write ``content`` atomically (mode 0600); the previous file, if any, is first copied to a
    backup (mode 0600: it holds the same hashes), whose path is returned."""
    backup = backup_file(path)
    write_private(path, _text(content))
    return backup
