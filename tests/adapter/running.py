"""``uns adapter run`` as a subprocess on free loopback ports (stopped by PID, always)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.procs import running, uns_command

from .setup import AdapterFiles, write_files


@contextmanager
def adapter_process(workdir: Path, broker_url: str) -> Iterator[tuple[str, AdapterFiles, subprocess.Popen]]:
    port = free_port()
    files = write_files(workdir, broker_url, port)
    log_path = workdir / "adapter.log"
    cmd = uns_command("adapter", "run", "--config", str(files.directory / "adapter.yaml"))
    with running(cmd, log_path=log_path, env={"PYTHONUNBUFFERED": "1"}, stop_signal=signal.SIGTERM) as proc:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"adapter did not become ready; log:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base, files, proc
