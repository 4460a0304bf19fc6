"""A real PostgreSQL (the Debian ``postgresql`` package) in a temp dir on a free loopback port.

PostgreSQL refuses to run as root and CI runs as root: then ``initdb`` and ``postgres`` run as an
unprivileged user (Debian's ``postgres`` system user when the package made it, else ``nobody``) that owns
the temp dir. Only TCP on 127.0.0.1 (no Unix socket). ``stop`` signals the postmaster we started, by
PID; ``crash`` is an immediate shutdown (SIGQUIT: no checkpoint, crash recovery on the next start), for
the tests that restart the server mid-ingest. The server log is copied next to the test's files when it
stops, so a failure can be read after the temp dir is gone.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .net import free_port
from .procs import stop_process


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server binaries (``/usr/lib/postgresql/<major>/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _run_as() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and there is neither a 'postgres' nor a 'nobody' user to run PostgreSQL")


class PostgresServer:
    def __init__(self, log_dir: Path) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed: run scripts/test, which installs it "
                               "(apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.log_dir = log_dir
        # not under pytest's tmp_path: its parents are private to root and the server's user must reach it
        self.root = Path(tempfile.mkdtemp(prefix="uns-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.user = _run_as()
        self.proc: subprocess.Popen | None = None
        if self.user is not None:
            os.chown(self.root, *self.user)
        self._run([str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-locale", "--no-sync"])

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"

    def _kwargs(self) -> dict:
        kwargs: dict = {"cwd": self.root, "env": {"PATH": os.environ.get("PATH", ""), "LANG": "C"}}
        if self.user is not None:
            kwargs.update(user=self.user[0], group=self.user[1], extra_groups=[])
        return kwargs

    def _run(self, cmd: list[str]) -> None:
        with open(self.root / "initdb.log", "ab") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=120, **self._kwargs())
        if done.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({done.returncode}): {(self.root / 'initdb.log').read_text()}")

    def start(self, timeout: float = 120.0) -> None:
        import psycopg

        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "max_connections=40", "-c", "shared_buffers=64MB"],
                stdout=log, stderr=subprocess.STDOUT, **self._kwargs())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                with psycopg.connect(self.dsn):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {timeout}s: {self.log_path.read_text()[-2000:]}"
                                       ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, a checkpoint is written."""
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGINT, timeout=30)
            self.proc = None

    def crash(self) -> None:
        """Immediate shutdown (SIGQUIT): like a crash, the next start runs WAL recovery."""
        if self.proc is not None:
            stop_process(self.proc, sig=signal.SIGQUIT, timeout=30)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("postgres.log", "initdb.log"):
            if (self.root / name).exists():
                shutil.copy(self.root / name, self.log_dir / name)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server(log_dir: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(log_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()


def fresh_database(server: PostgresServer, name: str) -> str:
    """Drop and create database ``name`` on ``server``; its DSN (a test's own database on a shared server)."""
    import psycopg

    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return server.dsn.replace("dbname=postgres", f"dbname={name}")


class _Closing(Protocol):
    def close_all(self) -> None: ...


B = TypeVar("B", bound=_Closing)


@contextmanager
def on_backend(request: Any, build: Callable[[str, PostgresServer | None], B]) -> Iterator[B]:
    """The backend a ``params=["sqlite", "postgres"]`` fixture asked for, built over the module's
    ``pg_server`` when it is PostgreSQL; everything it opened is closed after the test."""
    server = request.getfixturevalue("pg_server") if request.param == "postgres" else None
    backend = build(request.param, server)
    try:
        yield backend
    finally:
        backend.close_all()
