"""A managed Mosquitto for ``uns up --broker-engine mosquitto``: find it, check it, know it is up.

Why a second engine: the embedded broker (amqtt) carries a few thousand messages/s on one core,
Mosquitto ten times that (bench/README.md). A plant that wants Mosquitto on the same machine gets
it from ``uns up`` with the config ``uns init`` already writes (``mosquitto.conf``, ``.passwd``,
``.acl``: the same users and roles as the embedded broker), supervised like every other service.

What this module decides, without starting anything:

* **Which binary**: ``mosquitto`` on ``PATH``, else the Debian package's ``/usr/sbin/mosquitto``
  (``/usr/sbin`` is not on a normal user's ``PATH``). Missing: :class:`MosquittoMissingError`,
  whose message names the package to install.
* **What the config needs** (:func:`read_conf`, :func:`conf_problems`): the listener of the
  stack's MQTT port, and the password and ACL files it names. Started as root, Mosquitto drops to
  the ``user`` of its config (default ``mosquitto``) *before* it reads those files, so a folder
  under ``/root`` or a 0700 temporary folder makes it exit at start with a terse log line; it is
  reported here instead, with the fix.
* **Ready** (:func:`mqtt_answers`): a real MQTT CONNECT answered with a CONNACK, anonymous (the
  generated config's read-only demo access). A refusal (``allow_anonymous false``) is an answer
  too: the broker is up and has read its security files.

Mosquitto publishes its counters on ``$SYS/#``; it has no HTTP ``/metrics`` like the embedded broker.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from uns.mqtt_wire import ConnectRefusedError, MqttWireError, PublisherConnection
from unshub.errors import HubError

__all__ = ["FALLBACK_PATHS", "DEBIAN_PACKAGE", "MosquittoConf", "MosquittoMissingError", "conf_problems",
           "find_mosquitto", "mosquitto_version", "mqtt_answers", "read_conf"]

#: where the Debian/Ubuntu package installs the broker (``/usr/sbin`` is not on a normal user's PATH)
FALLBACK_PATHS: tuple[str, ...] = ("/usr/sbin/mosquitto",)
DEBIAN_PACKAGE = "mosquitto"


class MosquittoMissingError(HubError):
    """No Mosquitto binary on PATH nor where the Debian package puts it."""


def find_mosquitto() -> str:
    """The Mosquitto binary to run, or :class:`MosquittoMissingError` saying how to install it."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in FALLBACK_PATHS:
        if os.access(path, os.X_OK):
            return path
    looked = ", ".join(("PATH", *FALLBACK_PATHS))
    raise MosquittoMissingError(
        f"--broker-engine mosquitto needs the mosquitto broker, which is not installed (looked in {looked}). "
        f"Install the Debian/Ubuntu package `{DEBIAN_PACKAGE}` (sudo apt-get install {DEBIAN_PACKAGE}; "
        "other systems: https://mosquitto.org/download/), or run with --broker-engine embedded.")


def mosquitto_version(binary: str) -> str:
    """``mosquitto version 2.0.11`` as the binary prints it (``-h``), or ``""`` if it does not say."""
    try:
        done = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("mosquitto version"):
            return line.strip()
    return ""


@dataclass(frozen=True)
class MosquittoConf:
    """What ``uns up`` needs to know of a ``mosquitto.conf`` (other options are Mosquitto's business)."""

    path: Path
    #: ``listener <port> [host]`` lines, in order
    listeners: list[int] = field(default_factory=list)
    #: ``password_file`` / ``acl_file``, as written (relative paths resolve against the working directory)
    files: dict[str, Path] = field(default_factory=dict)
    #: ``user``: whom Mosquitto becomes when started as root
    user: str = "mosquitto"


def read_conf(path: Path) -> MosquittoConf:
    """Parse the options of ``path`` that matter here; a missing file is a ``FileNotFoundError``."""
    listeners: list[int] = []
    files: dict[str, Path] = {}
    user = "mosquitto"
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2:
            continue
        key, value = words[0], words[1]
        if key == "listener" and value.isdigit():
            listeners.append(int(value))
        elif key in ("password_file", "acl_file"):
            files[key] = Path(" ".join(words[1:]))
        elif key == "user":
            user = value
    return MosquittoConf(path, listeners, files, user)


def _may(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    """The classic permission check (owner, else group, else other) for one of r=4, x=1."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _blocked(path: Path, uid: int, gids: set[int]) -> str | None:
    """Why user ``uid`` cannot read ``path`` (None: it can)."""
    path = path.absolute()
    for folder in reversed(path.parents):
        if not _may(folder.stat(), uid, gids, 1):
            return f"it cannot enter {folder} (mode {stat.filemode(folder.stat().st_mode)})"
    if not _may(path.stat(), uid, gids, 4):
        return f"it cannot read the file (mode {stat.filemode(path.stat().st_mode)})"
    return None


def _drop_user(name: str) -> tuple[str, int, set[int]] | None:
    """The account Mosquitto becomes when started as root (it falls back to ``nobody``)."""
    for candidate in (name, "nobody"):
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        groups = {g.gr_gid for g in grp.getgrall() if candidate in g.gr_mem} | {entry.pw_gid}
        return candidate, entry.pw_uid, groups
    return None


def conf_problems(conf: MosquittoConf, mqtt_port: int, *, euid: int | None = None) -> list[str]:
    """Everything that would make Mosquitto fail to serve the stack, in words (empty: none found)."""
    problems: list[str] = []
    if mqtt_port not in conf.listeners:
        problems.append(f"{conf.path}: no `listener {mqtt_port}` line, but the edge node and the adapter "
                        f"connect to port {mqtt_port} (stack.yaml's mqtt port)")
    euid = os.geteuid() if euid is None else euid
    drop = _drop_user(conf.user) if euid == 0 and conf.user != "root" else None
    for key, file in conf.files.items():
        if not file.is_file():
            problems.append(f"{conf.path}: {key} {file} does not exist")
            continue
        if drop is None:
            continue
        name, uid, gids = drop
        why = _blocked(file, uid, gids)
        if why:
            problems.append(
                f"{conf.path}: {key} {file}: Mosquitto started as root runs as user `{name}`, and {why}. "
                f"Use a --data-dir that user can reach (e.g. under /var/lib or /srv), or make the folders "
                f"on the way searchable (chmod o+x)")
    return problems


def mqtt_answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """A broker on ``host:port`` answers an anonymous MQTT 3.1.1 CONNECT with a CONNACK."""
    connection = PublisherConnection()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(connection.connect(f"uns-up-ready-{os.getpid()}", keepalive_s=10))
            while True:
                data = sock.recv(256)
                if not data:
                    return False
                if connection.receive_data(data):
                    sock.sendall(connection.disconnect())
                    return True
    except ConnectRefusedError:
        return True  # anonymous access is off: the broker answered, with its security files loaded
    except (OSError, MqttWireError):
        return False
