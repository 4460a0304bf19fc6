"""What ``uns up -c plant.yaml`` derives for the user's own tag map before anything starts.

Why: a tag map for a real server says which tags to read and where they belong (the ``line``
section); it should not also have to carry what the stack already knows. From the stack folder
`uns up` fills in, for that run only:

* **the broker login**: a broker URL that points at the stack's broker and names no user (or no
  ``sparkplug.brokers`` at all) gets a user created for the map's Sparkplug ids
  (:mod:`unshub.edge_users`); a URL that names a user is used as written (``uns check`` and the
  broker's refusal say what is wrong with it);
* **``primary_host_id``**: the adapter's ``host.host_id`` when the map has none, so the edge
  births once the adapter (the primary host) is online;
* **the MES line**: an entry for the map's line in ``mes.lines`` derived from the tag names
  (:mod:`unshub.mes_lines`) when the adapter config has none for it; one the user wrote wins;
* **the map's enterprise in ``mosquitto.acl``** for the adapter's broker user, when the map's line is
  under another enterprise than the stack's (:mod:`unshub.acl_roots`).

The user's files stay as they are: what runs is written beside them as ``<name>.uns-up.yaml``
(mode 0600: it holds the broker password), rewritten at every start and said so in its header.
The password of a user created for a map is read back from that file, so a second start reuses
the user and writes no users file. Every sentence of what was done, and of what the user must
still state, is returned for `uns up` to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from edge_node.config import EdgeConfig

#: the suffix of the files `uns up` derives at every start (`uns check` leaves them out)
DERIVED_SUFFIX = ".uns-up.yaml"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class OwnMap:
    """The configs to run and what `uns up` says about them."""

    edge_config: Path
    adapter_config: Path
    #: the map's line (``<enterprise>/<site>/<area>/<line>``)
    line: str
    lines: list[str] = field(default_factory=list)


def adapter_broker_user(adapter_data: dict[str, Any]) -> str | None:
    """The user the adapter logs in to the broker as (``host.broker_url``), if it names one."""
    url = (adapter_data.get("host") or {}).get("broker_url")
    return urlsplit(str(url)).username if url else None


def mosquitto_root_warning(folder: Path, adapter: Path, map_line: str, *, mosquitto: bool) -> str | None:
    """What to say when Mosquitto runs and its ACL still does not let the adapter publish the UNS
    under the map's enterprise (the adapter logs in as a user the stack's ``mosquitto.acl`` does not
    know, so :func:`unshub.acl_roots.widen_host_acl` could not add the namespace): Mosquitto drops a
    refused publish without telling the client, so the UNS would stay empty for this line with no
    error anywhere. The embedded broker's roles are not bound to an enterprise."""
    from unshub.acl_roots import covers_root, host_write_filters

    acl = folder / "mosquitto.acl"
    root = map_line.partition("/")[0]
    if not mosquitto or not root or not acl.exists():
        return None
    user = adapter_broker_user(yaml.safe_load(adapter.read_text(encoding="utf-8")) or {})
    if user and covers_root(host_write_filters(acl.read_text(encoding="utf-8"), user), root):
        return None
    return (f"with Mosquitto, {acl} does not let the adapter's broker user ({user or 'anonymous'}) publish under "
            f"'{root}/', this map's enterprise: Mosquitto drops the UNS mirror's messages for it without an error; "
            f"add 'topic write {root}/#' to that user's block, or use the embedded broker")


def derived_path(source: Path) -> Path:
    return source.with_name(source.stem + DERIVED_SUFFIX)


def _write_derived(source: Path, data: dict[str, Any], what: str) -> Path:
    from uns.private_file import write_private

    target = derived_path(source)
    write_private(target, f"# {what} derived from {source.name} by `uns up` at every start: edit {source.name}, "
                          "not this file\n" + yaml.safe_dump(data, sort_keys=False, width=120))
    return target


def _stack_broker(url: str, mqtt_port: int) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("mqtt", "tcp") and parts.hostname in _LOOPBACK and (parts.port or 1883) == mqtt_port
    except ValueError:
        return False


def _with_login(url: str, username: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{username}:{password}@{host}").geturl()


def _known_password(folder: Path, source: Path, username: str) -> str | None:
    """The password of ``username`` as `uns up` wrote it last time into a derived map: this map's
    first, then any other map's beside it or in the stack folder (two maps of the same ids share the
    user: resetting its password for one would lock the other out). Only one that still matches
    the users file counts."""
    from broker.passwords import load_password_file, verify_password

    users = folder / "users.yaml"
    record = load_password_file(users).users.get(username) if users.exists() else None
    if record is None:
        return None
    mine = derived_path(source)
    others = sorted({*source.parent.glob(f"*{DERIVED_SUFFIX}"), *folder.glob(f"*{DERIVED_SUFFIX}")} - {mine})
    for derived in [mine, *others]:
        try:
            data = yaml.safe_load(derived.read_text(encoding="utf-8")) or {}
        except (OSError, ValueError):
            continue
        for url in ((data.get("sparkplug") or {}).get("brokers") or []) if isinstance(data, dict) else []:
            parts = urlsplit(str(url))
            if parts.username == username and parts.password and verify_password(record.hash, parts.password):
                return parts.password
    return None


def prepare_own_map(folder: Path, tag_map: Path, adapter: Path, *, mqtt_port: int) -> OwnMap:
    """The edge and adapter configs to run for ``tag_map`` against the stack in ``folder``."""
    from edge_node.config import load_edge_config
    from mes_adapter.host.config import HostConfig
    from unshub.edge_users import edge_user_name, ensure_edge_user

    edge = load_edge_config(tag_map)
    out = OwnMap(tag_map, adapter, edge.line.topic)
    group, node = edge.sparkplug_ids()
    data = yaml.safe_load(tag_map.read_text(encoding="utf-8")) or {}
    adapter_data = yaml.safe_load(adapter.read_text(encoding="utf-8")) or {}
    host_id = (adapter_data.get("host") or {}).get("host_id") or HostConfig().host_id
    sparkplug = dict(data.get("sparkplug") or {})
    brokers = [str(url) for url in sparkplug.get("brokers") or [f"mqtt://127.0.0.1:{mqtt_port}"]]
    ours = [index for index, url in enumerate(brokers) if _stack_broker(url, mqtt_port)]
    changed = []
    if ours and not any(urlsplit(brokers[index]).username for index in ours):
        login = ensure_edge_user(folder, group, node,
                                 known_password=_known_password(folder, tag_map, edge_user_name(group, node)),
                                 uns_roots=(edge.line.enterprise, HostConfig().fallback_root))
        out.lines += login.changes
        for index in ours:
            brokers[index] = _with_login(brokers[index], login.username, login.password)
        sparkplug["brokers"] = brokers
        changed.append(f"broker user {login.username!r}")
    elif ours:
        out.lines.append(f"{tag_map.name}: its broker URL names a user: used as written (no user created)")
    else:
        out.lines.append(f"{tag_map.name}: no broker URL of this stack (mqtt://127.0.0.1:{mqtt_port}): "
                         "no broker user created")
    host_user = adapter_broker_user(adapter_data)
    if host_user:
        from unshub.acl_roots import widen_host_acl

        out.lines += widen_host_acl(folder, host_user, edge.line.enterprise)
    if "primary_host_id" not in sparkplug:
        sparkplug["primary_host_id"] = host_id
        changed.append(f"primary_host_id {host_id!r} (the adapter's host id: the edge births once it is online)")
    elif sparkplug["primary_host_id"] != host_id:
        out.lines.append(f"warning: {tag_map.name}: sparkplug.primary_host_id {sparkplug['primary_host_id']!r} is "
                         f"not the adapter's host id {host_id!r}: the edge waits for that host and never births here")
    if changed:
        out.edge_config = _write_derived(tag_map, {**data, "sparkplug": sparkplug}, "edge node config")
        out.lines.append(f"runs {out.edge_config.name}: {tag_map.name} with " + " and ".join(changed))
    out.lines += _mes_line(out, edge, adapter, adapter_data, tag_map)
    return out


def _mes_line(out: OwnMap, edge: EdgeConfig, adapter: Path, adapter_data: dict[str, Any], tag_map: Path) -> list[str]:
    """Derive the map's MES line into ``<adapter>.uns-up.yaml`` unless the adapter config has one."""
    from mes_adapter.lines import line_key
    from unshub.mes_lines import STILL_TO_STATE, derive_line

    line = edge.line.topic
    mes = dict(adapter_data.get("mes") or {})
    stated = [entry for entry in mes.get("lines") or [] if isinstance(entry, dict)
              and line_key(str(entry.get("line", ""))) == line]
    if stated:
        return [f"MES line {line}: as written in mes.lines of {adapter.name}"]
    derived = derive_line(edge)
    mes["lines"] = [*(mes.get("lines") or []), derived.entry]
    out.adapter_config = _write_derived(adapter, {**adapter_data, "mes": mes}, "MES adapter config")
    said = [f"MES line {line} derived from {tag_map.name} (no entry for it in mes.lines of {adapter.name}): "
            + (", ".join(derived.found) if derived.found else "no tag named like a counter, state, batch or speed")]
    said += [f"  not derived, several tags fit: {text}" for text in derived.ambiguous]
    said.append(f"  yours to state: {STILL_TO_STATE}; to change the derived entry, copy it from "
                f"{out.adapter_config.name} into mes.lines of {adapter.name} and edit it (yours then wins)")
    return said
