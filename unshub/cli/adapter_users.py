"""``uns adapter users``: the dashboard's named users (``auth.users_file``: argon2id hashes, roles).

    uns adapter users add    --file users.yaml alice --role operator --full-name "Alice Martin"
    uns adapter users list   --file users.yaml
    uns adapter users passwd --file users.yaml alice
    uns adapter users remove --file users.yaml alice

The password comes from a hidden prompt (asked twice) or, for scripts, from the environment
variable named by ``--password-env`` (never from an argument: it would sit in the shell history
and the process list). Every rewrite first copies the previous file beside it and says where; a
duplicate user id, an unknown one or an unknown role is refused with exit 2 and nothing written.
The adapter reads the file at start, so each change tells the user to restart it.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

users_app = typer.Typer(name="users", no_args_is_help=True,
                        help="Dashboard users (auth.users_file): add, list, passwd, remove.")

_FILE = typer.Option(..., "--file", "-f", help="the users file (auth.users_file in adapter.yaml)")
_USER = typer.Argument(..., help="user id: what the user types to log in (same as in the signer registry)")
_PASSWORD_ENV = typer.Option(None, "--password-env", metavar="NAME",
                             help="read the password from this environment variable instead of a prompt")
_APPLY = "restart the adapter to apply (it reads the users file at start)"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"uns adapter users: {message}", err=True)
    return typer.Exit(2)


def _password(user: str, env: str | None) -> str:
    if env is None:
        return str(typer.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True))
    value = os.environ.get(env)
    if not value:
        raise _fail(f"--password-env {env}: the environment variable is not set or empty")
    return value


def _saved(file: Path, content: object, done: str) -> None:
    from mes_adapter.auth import UsersFile
    from mes_adapter.users_admin import save

    assert isinstance(content, UsersFile)
    try:
        backup = save(file, content)
    except OSError as exc:
        raise _fail(f"{file}: cannot write: {exc}") from None
    if backup is not None:
        typer.echo(f"backed up the previous users file to {backup}")
    typer.echo(f"{done} in {file}; {_APPLY}")


@users_app.command("add")
def add(
    user: str = _USER,
    file: Path = _FILE,
    role: str = typer.Option(..., "--role", help="viewer, operator, supervisor, engineer, or qa"),
    full_name: str = typer.Option(..., "--full-name", help="shown in the dashboard and under signatures"),
    password_env: str | None = _PASSWORD_ENV,
) -> None:
    """Add a user; refused if the user id is already in the file."""
    from mes_adapter.users_admin import UsersFileError, add_user, check_new, load

    try:
        content = load(file, missing_ok=True)
        check_new(content, user, role, full_name)  # refuse before asking for a password
        content = add_user(content, user, _password(user, password_env), role, full_name)
    except UsersFileError as exc:
        raise _fail(str(exc)) from None
    _saved(file, content, f"added user {user!r} ({role.strip().lower()})")


@users_app.command("passwd")
def passwd(user: str = _USER, file: Path = _FILE, password_env: str | None = _PASSWORD_ENV) -> None:
    """Set a new password for a user already in the file."""
    from mes_adapter.users_admin import UsersFileError, load, require_user, set_password

    try:
        content = load(file)
        require_user(content, user)  # refuse an unknown user before asking for a password
        content = set_password(content, user, _password(user, password_env))
    except UsersFileError as exc:
        raise _fail(str(exc)) from None
    _saved(file, content, f"changed the password of {user!r}")


@users_app.command("remove")
def remove(user: str = _USER, file: Path = _FILE) -> None:
    """Remove a user (the previous file is kept as a backup)."""
    from mes_adapter.users_admin import UsersFileError, load, remove_user

    try:
        content = remove_user(load(file), user)
    except UsersFileError as exc:
        raise _fail(str(exc)) from None
    _saved(file, content, f"removed user {user!r}")


@users_app.command("list")
def list_users(file: Path = _FILE) -> None:
    """One line per user: id, role, active, full name (never the hashes)."""
    from mes_adapter.users_admin import UsersFileError, load

    try:
        content = load(file)
    except UsersFileError as exc:
        raise _fail(str(exc)) from None
    for user_id, account in sorted(content.users.items()):
        state = "active" if account.active else "inactive"
        typer.echo(f"{user_id}\t{account.role.label}\t{state}\t{account.full_name}")
