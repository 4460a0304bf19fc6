"""A real Mosquitto broker on a free loopback port, started and stopped by the test."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .net import free_port, wait_for_port, wait_for_port_free
from .procs import stop_process


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str
    port: int
    kind: str  # "mosquitto" or "embedded"
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


@contextmanager
def mosquitto_broker(workdir: Path, *, port: int | None = None, extra_conf: str = "") -> Iterator[BrokerEndpoint]:
    binary = mosquitto_binary()
    if binary is None:
        raise RuntimeError("mosquitto is not installed: run scripts/test, which installs it")
    if port is None:
        port = free_port()
    else:  # a restart on the port of a broker just killed: its socket may not be released yet
        wait_for_port_free(port)
    conf = workdir / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        "set_tcp_nodelay true\n"
        "max_queued_messages 0\n"
        "max_inflight_messages 0\n"
        f"{extra_conf}\n"
    )
    log = open(workdir / f"mosquitto-{port}.log", "wb")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        if proc.poll() is not None:  # something else answered on the port; this broker is gone
            raise RuntimeError(f"mosquitto exited with {proc.returncode} on port {port}: see {log.name}")
        yield BrokerEndpoint("127.0.0.1", port, "mosquitto", proc.pid)
    finally:
        stop_process(proc)
        log.close()
