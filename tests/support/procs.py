"""Start and stop the test's own processes, by PID, always."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def uns_command(*args: str) -> list[str]:
    """The ``uns`` console script of the running interpreter's environment."""
    return [str(VENV_BIN / "uns"), *args]


def stop_process(proc: subprocess.Popen, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal the process we started, wait, then SIGKILL if it does not go. Returns the exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGCONT)  # in case a test froze it
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    return proc.returncode


@contextmanager
def running(cmd: list[str], *, log_path: Path | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, stop_signal: int = signal.SIGTERM) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` for the duration of the block; its output goes to ``log_path`` if given."""
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or REPO)
    try:
        yield proc
    finally:
        stop_process(proc, sig=stop_signal)
        if log_path:
            out.close()
