"""Start a node-opcua server script of tests/interop/node-opcua and wait for its READY line.

The scripts print ``READY <endpoint> <ns index> <ns uri>`` once listening (see common.js there).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.procs import REPO, stop_process

SERVER_DIR = REPO / "tests" / "interop" / "node-opcua"


def _ready_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith(b"READY"):
            return line
    return b""


@contextlib.contextmanager
def node_opcua(script: str, workdir: Path) -> Iterator[tuple[str, int, str]]:
    """(endpoint, namespace index, namespace uri) of ``script`` running on a free loopback port."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    if not (SERVER_DIR / "node_modules" / "node-opcua-server").exists():
        pytest.fail("tests/interop/node-opcua/node_modules is missing: run scripts/test (npm install)")
    log_path = workdir / f"{script}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([node, script, str(free_port()), str(workdir / "pki")], cwd=SERVER_DIR,
                                stdout=subprocess.PIPE, stderr=log)
        try:
            ready = _ready_line(proc, 60.0)
            if not ready:
                pytest.fail(f"{script} did not start: {log_path.read_text()[-2000:]}")
            _, url, ns_index, ns_uri = ready.decode().split()
            yield url, int(ns_index), ns_uri
        finally:
            stop_process(proc)
