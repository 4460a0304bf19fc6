"""Broker users for the tag maps ``uns up -c`` runs: one per Sparkplug edge node, scoped to its ids.

Why: the embedded broker (and the generated Mosquitto ACL) lets an ``edge`` user publish only for
the group and edge node id it was created for. A map for another line (another server, another
name) therefore needs its own user, and before this module the user had to create it by hand
(``uns broker passwd ... --role edge --group G --edge E``), or the edge looped on "Not authorized".

The user is named after the ids (:func:`edge_user_name`) and written the way ``uns init`` writes
the stack's own ``edge`` user: an argon2id entry with role ``edge`` and its scope in
``users.yaml``, and, when the folder has the Mosquitto files, a PBKDF2 line in
``mosquitto.passwd`` and a block rendered from the same role table in ``mosquitto.acl``. Nothing is
rewritten silently: each file is backed up first (:func:`uns.private_file.backup_file`) and every
change is returned as a sentence for ``uns up`` to print. A user that exists with the password
the caller knows (kept in the derived tag map of the previous run) and the right scope is used as
it is: a second ``uns up`` writes nothing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from uns.private_file import backup_file, write_private


@dataclass
class EdgeLogin:
    """The login a tag map's edge node uses, and what was written for it (sentences)."""

    username: str
    password: str
    changes: list[str] = field(default_factory=list)


def edge_user_name(group_id: str, edge_node_id: str) -> str:
    """``edge-<group>-<edge node>`` with every character outside ``[A-Za-z0-9_.-]`` as ``_``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{group_id}-{edge_node_id}")
    return f"edge-{clean}"


def _fits(folder: Path, username: str, password: str | None, group_id: str, edge_node_id: str) -> bool:
    from broker.passwords import load_password_file, verify_password

    record = load_password_file(folder / "users.yaml").users.get(username)
    return (password is not None and record is not None and record.role == "edge"
            and (record.group, record.edge) == (group_id, edge_node_id) and verify_password(record.hash, password))


def ensure_edge_user(folder: Path, group_id: str, edge_node_id: str, *, known_password: str | None,
                     uns_roots: tuple[str, ...]) -> EdgeLogin:
    """The stack's broker user for ``group_id``/``edge_node_id``: created (or its password reset when
    the known one no longer matches) in ``folder``'s users files, each backed up first."""
    from broker.passwords import load_password_file, save_password_file, with_user

    username = edge_user_name(group_id, edge_node_id)
    if _fits(folder, username, known_password, group_id, edge_node_id):
        assert known_password is not None
        return EdgeLogin(username, known_password)
    password = secrets.token_urlsafe(18)
    users_file = folder / "users.yaml"
    content = load_password_file(users_file)
    verb = "reset the password of" if username in content.users else "created"
    backup = backup_file(users_file)
    save_password_file(users_file, with_user(content, username, password, "edge", group_id, edge_node_id))
    login = EdgeLogin(username, password, [
        f"{verb} broker user {username!r} (role edge, may publish for {group_id}/{edge_node_id} only) in "
        f"{users_file}; the previous file is kept in {backup}"])
    login.changes += _mosquitto(folder, login, group_id, edge_node_id, uns_roots)
    return login


def _mosquitto(folder: Path, login: EdgeLogin, group_id: str, edge_node_id: str,
               uns_roots: tuple[str, ...]) -> list[str]:
    """The same user in ``mosquitto.passwd`` and ``mosquitto.acl``, when the folder has them."""
    from broker.mosquitto_acl import AclUser, render_acl_users
    from broker.policy import DEFAULT_ROLES
    from unshub.cli.stack import mosquitto_password_hash

    changes = []
    passwd = folder / "mosquitto.passwd"
    if passwd.exists():
        kept = [line for line in passwd.read_text(encoding="utf-8").splitlines()
                if line.split(":", 1)[0] != login.username]
        backup = backup_file(passwd)
        rewrite_keeping_mode(passwd, "".join(f"{line}\n" for line in kept)
                 + f"{login.username}:{mosquitto_password_hash(login.password)}\n")
        changes.append(f"wrote its password hash to {passwd}; the previous file is kept in {backup}")
    acl = folder / "mosquitto.acl"
    if acl.exists():
        text = acl.read_text(encoding="utf-8")
        if f"\nuser {login.username}\n" not in f"\n{text}":
            backup = backup_file(acl)
            block = render_acl_users(DEFAULT_ROLES, [AclUser(login.username, "edge", group_id, edge_node_id)],
                                     uns_roots=uns_roots)
            rewrite_keeping_mode(acl, text.rstrip("\n") + "\n\n" + block.lstrip("\n"))
            changes.append(f"added its topics to {acl}; the previous file is kept in {backup}")
    return changes


def rewrite_keeping_mode(path: Path, text: str) -> None:
    """Replace ``path`` atomically keeping its mode (Mosquitto's files hold hashes only and must stay
    readable by the user Mosquitto becomes, as `uns init` wrote them)."""
    mode = path.stat().st_mode & 0o777
    write_private(path, text)
    path.chmod(mode)
