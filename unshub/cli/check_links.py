"""What ``uns check`` verifies across the files of one stack folder, once each file is valid alone.

Why: each file can be valid while the deployment cannot work. The symptoms are far from the
cause: an edge node whose ``primary_host_id`` is not the adapter's ``host.host_id`` waits forever
for a STATE that never comes (it never births); a broker URL whose user is missing from
``users.yaml``, has another password, or is scoped to other Sparkplug ids loops on "Not
authorized" while the reason is only in ``broker.log``. Each such link is reported at the line
of the file that would have to change, in the ``file:line: path: message`` form of every check.
Every tag map in the folder is linked, not only ``plant.yaml``: a browsed ``plant-own.yaml`` is
what ``uns up -c`` runs against the same broker and adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uns.yaml_marks import Loc, format_loc, load_marked_file


def _data(path: Path) -> Any:
    return load_marked_file(path).data


def _issue(path: Path, loc: Loc, message: str) -> str:
    return f"{load_marked_file(path).where(loc)}: {format_loc(loc)}: {message}"


def stack_links(folder: Path, passed: set[Path]) -> list[str]:
    """Problems between the stack files in ``folder`` that each passed their own check."""
    adapter, broker, users = (folder / n for n in ("adapter.yaml", "broker.yaml", "users.yaml"))
    # plant.yaml and every other tag map kept beside it (a browsed `plant-own.yaml` for `uns up -c`)
    tag_maps = [path for path in sorted(passed) if path.parent == folder and path.name.startswith("plant")
                and path.suffix == ".yaml"]
    issues: list[str] = []
    for plant in tag_maps:
        if adapter in passed:
            issues += _primary_host(plant, adapter)
        if broker in passed and users in passed:
            issues += _edge_users(plant, users, _broker_port(broker))
    if broker in passed and users in passed and adapter in passed:
        issues += _host_user(adapter, users, _broker_port(broker))
    return issues


def _broker_port(broker: Path) -> int | None:
    return ((_data(broker) or {}).get("tcp") or {}).get("port")


def _primary_host(plant: Path, adapter: Path) -> list[str]:
    from mes_adapter.host.config import HostConfig

    wanted = ((_data(plant) or {}).get("sparkplug") or {}).get("primary_host_id")
    host_id = ((_data(adapter) or {}).get("host") or {}).get("host_id", HostConfig().host_id)
    if wanted is None or wanted == host_id:
        return []
    where = load_marked_file(adapter).where(("host", "host_id"))
    return [_issue(plant, ("sparkplug", "primary_host_id"),
                   f"{wanted!r} is not the adapter's host id {host_id!r} ({where}): the edge node waits for that "
                   "host's STATE and never births")]


def _users(users: Path) -> dict[str, Any]:
    from broker.passwords import load_password_file

    return load_password_file(users).users


def _login(url: str, broker_port: int | None) -> tuple[str, str] | None:
    """(user, password) of a URL that points at this folder's broker (its TCP port), else None."""
    from uns.mqtt_url import BrokerURLError, parse_broker_url

    try:
        parsed = parse_broker_url(url)
    except BrokerURLError:
        return None
    if parsed.username is None or broker_port is None or parsed.port != broker_port:
        return None  # another broker: its users are not in this folder
    return parsed.username, parsed.password or ""


def _account(users: Path, user: str, password: str, role: str, hint: str) -> str | None:
    """Why ``user``/``password`` cannot log in with ``role`` (None: it can)."""
    from broker.passwords import verify_password

    record = _users(users).get(user)
    if record is None:
        return f"user {user!r} is not in {users}; add it with `uns broker passwd {users} {user} {hint}`"
    if not verify_password(record.hash, password):
        return f"the password of user {user!r} does not match {users}; reset it with `uns broker passwd`"
    if record.role != role:
        return f"user {user!r} has role {record.role!r} in {users}, not {role!r}"
    return None


def _edge_users(plant: Path, users: Path, broker_port: int | None) -> list[str]:
    from edge_node.config import load_edge_config

    group, edge = load_edge_config(plant).sparkplug_ids()
    issues = []
    for index, url in enumerate(((_data(plant) or {}).get("sparkplug") or {}).get("brokers") or []):
        login = _login(url, broker_port) if isinstance(url, str) else None
        if login is None:
            continue
        loc = ("sparkplug", "brokers", index)
        problem = _account(users, *login, role="edge", hint=f"--role edge --group {group} --edge {edge}")
        record = _users(users).get(login[0])
        if problem is None and record is not None and (record.group, record.edge) != (group, edge):
            problem = (f"user {login[0]!r} may publish for {record.group}/{record.edge} only, not this node's "
                       f"{group}/{edge}: the broker refuses its Will and every birth")
        if problem:
            issues.append(_issue(plant, loc, problem))
    return issues


def _host_user(adapter: Path, users: Path, broker_port: int | None) -> list[str]:
    url = ((_data(adapter) or {}).get("host") or {}).get("broker_url")
    login = _login(url, broker_port) if isinstance(url, str) else None
    if login is None:
        return []
    problem = _account(users, *login, role="host", hint="--role host")
    return [_issue(adapter, ("host", "broker_url"), problem)] if problem else []
