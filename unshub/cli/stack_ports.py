"""Change the ports of an existing stack folder without touching anything else in it.

Why a text edit and not a regeneration: the folder is the user's (its header says "edit
freely"): comments, a changed token, a hand-added line, and every password, API token and
signing key must survive ``uns up --http-port 8090``. So each port is changed on the one line
that holds it (located with :mod:`uns.yaml_marks`), and the result is parsed again and compared
with the old data: if anything but the ports would differ, or a port is not where the generator
put it (the user moved or changed it), nothing is written and the caller is told which line to
edit by hand (or to reset with ``--fresh``).

Every rewrite (a port change or ``--fresh``) first copies the whole folder to a timestamped
sibling (:func:`backup_folder`), so a user can always get the previous files back.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from uns.private_file import backup_name
from uns.yaml_marks import Loc, format_loc, load_marked_yaml
from unshub.cli.stack import StackPorts
from unshub.errors import HubError

#: how `uns up` names each port in its messages (and its option)
PORT_OPTIONS = {"mqtt": "--mqtt-port", "ws": "--ws-port", "opcua": "--opcua-port", "http": "--http-port",
                "edge_http": "--edge-metrics-port", "broker_http": "--broker-metrics-port"}


class PortChangeRefusedError(HubError):
    """A port cannot be changed in place; ``str()`` says where and how to apply it by hand."""


@dataclass(frozen=True)
class Spot:
    """One place in a generated file that holds a port: a bare number or the port of a URL."""

    file: str
    loc: Loc
    port: str  # a StackPorts field name
    url: bool = False


@dataclass(frozen=True)
class Edit:
    file: str
    loc: Loc
    port: str
    old: int
    new: int


def _spots(old: StackPorts) -> Iterator[Spot]:
    """Where `uns init` (local profile) puts each port; lists of brokers and servers are matched by
    their port, so a broker or server the user added on another port is left alone."""
    for name in PORT_OPTIONS:
        yield Spot("stack.yaml", ("ports", name), name)
    yield Spot("stack.yaml", ("broker_url",), "mqtt", url=True)
    yield Spot("stack.yaml", ("opcua_endpoint",), "opcua", url=True)
    yield Spot("broker.yaml", ("tcp", "port"), "mqtt")
    yield Spot("broker.yaml", ("websocket", "port"), "ws")
    yield Spot("broker.yaml", ("http", "port"), "broker_http")
    yield Spot("plant.yaml", ("http", "port"), "edge_http")
    yield Spot("adapter.yaml", ("host", "broker_url"), "mqtt", url=True)
    yield Spot("adapter.yaml", ("http", "port"), "http")


def _list_spots(file: str, data: Any, old: StackPorts, hosts: dict[str, str | None]) -> Iterator[Spot]:
    """The stack's broker and simulator in the edge's lists: same host and port as ``stack.yaml``
    says (a PLC on another host that happens to use port 4840 is not ours to change)."""
    if file != "plant.yaml" or not isinstance(data, dict):
        return
    brokers = (data.get("sparkplug") or {}).get("brokers") or []
    for index, url in enumerate(brokers):
        if isinstance(url, str) and _host_port(url) == (hosts["mqtt"], old.mqtt):
            yield Spot(file, ("sparkplug", "brokers", index), "mqtt", url=True)
    for index, server in enumerate(data.get("opcua") or []):
        url = server.get("url") if isinstance(server, dict) else None
        if isinstance(url, str) and _host_port(url) == (hosts["opcua"], old.opcua):
            yield Spot(file, ("opcua", index, "url"), "opcua", url=True)


def _host_port(url: str) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def _url_port(url: str) -> int | None:
    return _host_port(url)[1]


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc
    return parts._replace(netloc=f"{host}:{port}").geturl()


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(loc)
    return data


def _set(data: Any, loc: Loc, value: Any) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value


def _replace_on_line(line: str, old: str, new: str) -> str | None:
    """``line`` with the one occurrence of ``old`` (a whole token, outside a comment) replaced."""
    code, hash_, comment = line.partition(" #")
    pattern = re.compile(r"(?<![\w.:/@-])" + re.escape(old) + r"(?![\w.])")
    if len(pattern.findall(code)) != 1:
        return None
    return pattern.sub(lambda _: new, code) + hash_ + comment


def plan_port_change(folder: Path, old: StackPorts, new: StackPorts) -> dict[str, tuple[str, list[Edit]]]:
    """The new text of every file that holds a changed port, with the edits made in it.

    Raises :class:`PortChangeRefusedError` (nothing written) when a port is not where it should be."""
    changed = {name for name in PORT_OPTIONS if getattr(old, name) != getattr(new, name)}
    by_file: dict[str, list[Spot]] = {}
    for spot in _spots(old):
        by_file.setdefault(spot.file, []).append(spot)
    problems: list[str] = []
    plans: dict[str, tuple[str, list[Edit]]] = {}
    stack = yaml.safe_load((folder / "stack.yaml").read_text(encoding="utf-8")) or {}
    hosts = {"mqtt": _host_port(str(stack.get("broker_url", "")))[0],
             "opcua": _host_port(str(stack.get("opcua_endpoint", "")))[0]}
    for file in ("stack.yaml", "broker.yaml", "plant.yaml", "adapter.yaml"):
        path = folder / file
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        document = load_marked_yaml(text, source=str(path))
        spots = [*by_file.get(file, []), *_list_spots(file, document.data, old, hosts)]
        lines = text.splitlines(keepends=True)
        expected = yaml.safe_load(text)
        edits: list[Edit] = []
        for spot in spots:
            if spot.port not in changed:
                continue
            where = f"{path}:{document.line_of(spot.loc) or 1}: {format_loc(spot.loc)}"
            try:
                value = _get(document.data, spot.loc)
            except KeyError:
                problems.append(f"{where}: missing, so its port cannot be changed to {getattr(new, spot.port)}")
                continue
            old_port, new_port = getattr(old, spot.port), getattr(new, spot.port)
            if spot.url:
                if not isinstance(value, str) or _url_port(value) != old_port:
                    problems.append(f"{where}: {value!r} does not use port {old_port} (stack.yaml's {spot.port})")
                    continue
                old_text, new_value = value, _with_port(value, new_port)
                new_text = new_value
            else:
                if value != old_port:
                    problems.append(f"{where}: is {value!r}, not {old_port} (stack.yaml's {spot.port})")
                    continue
                old_text, new_text, new_value = str(old_port), str(new_port), new_port
            number = document.lines.get(spot.loc)
            replaced = None if number is None else _replace_on_line(lines[number - 1], old_text, new_text)
            if replaced is None:
                problems.append(f"{where}: the value is not on one line of its own; change it by hand")
                continue
            lines[number - 1] = replaced
            _set(expected, spot.loc, new_value)
            edits.append(Edit(file, spot.loc, spot.port, old_port, new_port))
        if not edits:
            continue
        new_text_all = "".join(lines)
        if yaml.safe_load(new_text_all) != expected:  # anything but the ports moved: never write that
            problems.append(f"{path}: the ports could not be changed without touching other values")
            continue
        plans[file] = (new_text_all, edits)
    mosquitto = folder / "mosquitto.conf"
    if "mqtt" in changed and mosquitto.exists():
        text = mosquitto.read_text(encoding="utf-8")
        pattern = re.compile(rf"^(listener\s+){old.mqtt}(\s)", re.MULTILINE)
        if len(pattern.findall(text)) == 1:
            plans["mosquitto.conf"] = (pattern.sub(rf"\g<1>{new.mqtt}\g<2>", text),
                                       [Edit("mosquitto.conf", ("listener",), "mqtt", old.mqtt, new.mqtt)])
        else:
            problems.append(f"{mosquitto}: no single `listener {old.mqtt} ...` line to change")
    if problems:
        options = " ".join(f"{PORT_OPTIONS[name]} {getattr(new, name)}" for name in sorted(changed))
        raise PortChangeRefusedError(
            "uns up: the ports were not changed (no file was written):\n  " + "\n  ".join(problems)
            + f"\nEdit these lines and the ports of {folder / 'stack.yaml'} by hand, run `uns up` without "
              f"{options} to keep the current ports, or reset the folder with `uns up --fresh {options}` "
              "(new passwords, tokens and keys; the old folder is backed up first).")
    return plans


def backup_folder(folder: Path) -> Path:
    """Copy ``folder`` (secrets included, modes kept) to ``<folder>-backup-<UTC time>`` beside it."""
    target = backup_name(folder, "-backup-")
    shutil.copytree(folder, target, symlinks=True)
    os.chmod(target, 0o700)  # it holds the same secrets as the folder
    return target


def _write_keeping_mode(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o777
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.chmod(temp, mode)
    os.replace(temp, path)


def change_ports(folder: Path, old: StackPorts, new: StackPorts) -> tuple[Path, list[Edit]]:
    """Apply :func:`plan_port_change` after backing the folder up; returns the backup and the edits."""
    plans = plan_port_change(folder, old, new)
    backup = backup_folder(folder)
    edits: list[Edit] = []
    for file, (text, file_edits) in plans.items():
        _write_keeping_mode(folder / file, text)
        edits += file_edits
    return backup, edits


def describe_change(old: StackPorts, new: StackPorts, edits: list[Edit], backup: Path) -> list[str]:
    """What `uns up` prints after a port change: the ports, every line changed, the backup."""
    ports = ", ".join(f"{name} {getattr(old, name)} -> {getattr(new, name)}" for name in PORT_OPTIONS
                      if getattr(old, name) != getattr(new, name))
    lines = [f"changed ports ({ports}); nothing else in the config was touched:"]
    for edit in edits:  # port numbers only: the URLs hold passwords
        lines.append(f"  {edit.file}: {format_loc(edit.loc)} {edit.old} -> {edit.new}")
    lines.append(f"the previous files are kept in {backup}")
    return lines
