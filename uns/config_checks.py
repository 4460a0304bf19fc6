"""File-system checks of a validated config, reported like every other config error.

Pydantic validates what a file *says*; whether the files it names exist and load, and whether its
data directory is a directory we can write, is only known on the machine that runs it. These
checks are the step that ``check`` and ``run`` of each service share (``check`` = ``run`` minus
starting), so a config that ``check`` passes is never refused by ``run`` for a file problem, and
``run`` refuses it before anything starts instead of with a traceback halfway through.

Each problem is one ``file:line: field: message`` line, the same shape :mod:`uns.yaml_marks`
gives a syntax or validation error, located at the field that names the path. The line table is
read from the config file only when there is a problem to locate (see
:class:`~uns.yaml_marks.MarkedDocument`), so a clean 10,000-tag map costs nothing extra.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from uns.errors import UnsError
from uns.yaml_marks import ConfigError, Loc, MarkedDocument, format_loc, load_marked_file

T = TypeVar("T")

#: locates a field: ``loc -> "file:line"`` (or ``"command line"`` for an option)
Where = Callable[[Loc], str]


def file_locator(path: Path) -> Where:
    """``loc -> "file:line"`` for ``path``, parsing it for lines only on the first call."""
    document: MarkedDocument | None = None

    def where(loc: Loc) -> str:
        nonlocal document
        if document is None:
            try:
                document = load_marked_file(path)
            except ConfigError:
                return str(path)  # it loaded a moment ago; without lines the file name still helps
        return document.where(loc)

    return where


class PortInUseError(UnsError, RuntimeError):
    """A port a service (or the stack) needs is taken by another process.

    Here, next to :func:`port_in_use`, because both a service (the simulator) and the composition
    root (``uns up``) raise it, and a service may import the core only."""


def port_in_use(host: str, port: int) -> bool:
    """Another socket listens on ``host:port`` (IPv4 or IPv6, as ``host`` resolves).

    Only ``EADDRINUSE`` counts: an address that is not on this machine or a privileged port is
    another problem, which the service's own bind reports as it is, not as "in use". Binds with
    ``SO_REUSEADDR`` like asyncio's servers do, so a port in TIME_WAIT after a restart is free."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False  # the service's bind names the unknown host itself
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False


class ConfigChecks:
    """Collects every problem before raising once, so one run lists all of them."""

    def __init__(self, where: Where) -> None:
        self.where = where
        self.issues: list[str] = []
        #: every problem once, in the file where it is (a named file's own problems, not a header)
        self.flat: list[str] = []

    @classmethod
    def of_file(cls, path: Path) -> ConfigChecks:
        return cls(file_locator(path))

    def fail(self, loc: Loc, message: str, nested: list[str] | None = None) -> None:
        """One problem at ``loc``; ``nested``: the problems of the file it names, in their own file."""
        issue = f"{self.where(loc)}: {format_loc(loc)}: {message}"
        self.issues.append(issue)
        self.flat.extend(nested if nested is not None else [issue])

    def existing_file(self, loc: Loc, path: Path, missing_hint: str = "") -> bool:
        """``path`` is a readable regular file; ``missing_hint`` says how to create a missing one."""
        if not path.exists():
            self.fail(loc, f"{path} does not exist" + (f"; {missing_hint}" if missing_hint else ""))
        elif not path.is_file():
            self.fail(loc, f"{path} is not a file")
        elif not os.access(path, os.R_OK):
            self.fail(loc, f"{path} is not readable by this user")
        else:
            return True
        return False

    def loads(self, loc: Loc, path: Path, loader: Callable[[Path], T], missing_hint: str = "") -> T | None:
        """``loader(path)`` if the file exists and is valid; else the problem, with the loader's own
        ``file:line`` errors indented under the field that names the file."""
        if not self.existing_file(loc, path, missing_hint):
            return None
        try:
            return loader(path)
        except ConfigError as exc:
            self.fail(loc, f"{path} is invalid:\n  " + "\n  ".join(exc.issues), nested=exc.flat)
        except (ValueError, OSError) as exc:
            self.fail(loc, f"{path} is invalid:\n  " + "\n  ".join(str(exc).splitlines()))
        return None

    def writable_dir(self, loc: Loc, path: Path) -> bool:
        """``path`` is a directory we can write, or can be created as one (the service creates it)."""
        # an existing path must itself be a writable directory; a missing one, its nearest existing ancestor
        target, not_dir = path, f"{path} is not a directory"
        not_writable = f"directory {path} is not writable by this user"
        if not path.exists():
            target = path.parent
            while not target.exists():
                target = target.parent
            not_dir = f"{path} cannot be created: {target} is not a directory"
            not_writable = f"{path} cannot be created: {target} is not writable by this user"
        if not target.is_dir():
            self.fail(loc, not_dir)
            return False
        if not os.access(target, os.W_OK | os.X_OK):
            self.fail(loc, not_writable)
            return False
        return True

    def file_in_writable_dir(self, loc: Loc, path: Path) -> bool:
        """``path`` (a database or log the service writes) is a file or can be created as one."""
        if path.exists() and not path.is_file():
            self.fail(loc, f"{path} is not a file")
            return False
        return self.writable_dir(loc, path.parent)

    def free_port(self, loc: Loc, host: str, port: int | None, service: str) -> bool:
        """Nothing listens on ``host:port`` yet (0 or None: nothing to bind). ``run`` only: a port
        held by another process is no fault of the file, and may be free again when ``run`` starts."""
        if not port or not port_in_use(host, port):
            return True
        self.fail(loc, f"port {port} on {host} is already in use, so {service} cannot listen on it; "
                       "stop whatever holds it or choose another port")
        return False

    def raise_if_any(self) -> None:
        if self.issues:
            raise ConfigError("\n".join(self.issues), self.issues, self.flat)


__all__ = ["ConfigChecks", "PortInUseError", "Where", "file_locator", "port_in_use"]
