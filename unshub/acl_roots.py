"""Let the adapter's broker user publish the UNS under a tag map's enterprise in ``mosquitto.acl``.

Why: `uns init` renders ``mosquitto.acl`` for the stack's own enterprise (Mosquitto's ACL file can only
allow whole namespaces, see ``broker.mosquitto_acl``). A map given to ``uns up -c`` may name another
enterprise; Mosquitto then drops the UNS mirror's messages for it *without telling the client*, and the
UNS stays empty for that line with no error anywhere. The embedded broker's roles are not bound to an
enterprise, so only this file needs the extra namespace.

How: Mosquitto merges repeated ``user`` sections of one name, so the new namespace is appended as a
second block for the same user (the file stays as `uns init` wrote it above it, backed up first and
the change printed). A second start finds the namespace and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from uns.private_file import backup_file


def host_write_filters(acl_text: str, username: str) -> set[str]:
    """Every ``topic write`` filter of ``username``'s sections (Mosquitto merges them all)."""
    filters: set[str] = set()
    current: str | None = None
    for raw in acl_text.splitlines():
        line = raw.strip()
        if line.startswith("user "):
            current = line[5:].strip()
        elif line.startswith("pattern "):
            current = None
        elif current == username and line.startswith("topic write "):
            filters.add(line[len("topic write "):].strip())
    return filters


def covers_root(filters: set[str], root: str) -> bool:
    """Whether one of ``filters`` lets a client publish anywhere under ``root/``."""
    return "#" in filters or f"{root}/#" in filters


def widen_host_acl(folder: Path, username: str, root: str) -> list[str]:
    """Append ``username``'s (role ``host``) write lines for ``root`` to ``folder/mosquitto.acl`` when
    they are missing; return what was done, for `uns up` to print."""
    from broker.mosquitto_acl import AclUser, render_acl_users
    from broker.policy import DEFAULT_ROLES
    from unshub.edge_users import rewrite_keeping_mode

    acl = folder / "mosquitto.acl"
    if not acl.exists() or not root:
        return []
    text = acl.read_text(encoding="utf-8")
    if f"\nuser {username}\n" not in f"\n{text}" or covers_root(host_write_filters(text, username), root):
        return []  # not this stack's adapter user, or the namespace is already there
    block = render_acl_users(DEFAULT_ROLES, [AclUser(username, "host")], uns_roots=(root,))
    wanted = [line for line in block.strip("\n").splitlines()
              if line.startswith(("#", "user ")) or line.startswith(f"topic write {root}/")]
    wanted[0] = f"# role host: the UNS under {root}/ too (added by `uns up -c` for a tag map under {root}/)"
    backup = backup_file(acl)
    rewrite_keeping_mode(acl, text.rstrip("\n") + "\n\n" + "\n".join(wanted) + "\n")
    return [f"let broker user {username!r} publish the UNS under '{root}/' in {acl} (used with "
            f"--broker-engine mosquitto); the previous file is kept in {backup}"]
