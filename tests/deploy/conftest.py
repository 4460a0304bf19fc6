"""Fixtures of the deployment tests: a stack folder written once by the real `uns init`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.procs import uns_command


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `uns init` (argon2 hashes take a while) on free ports; each test edits its own copy."""
    root = tmp_path_factory.mktemp("init")
    ports = [str(free_port()) for _ in range(6)]
    subprocess.run(uns_command("init", "--out", str(root / "conf"), "--mqtt-port", ports[0], "--ws-port", ports[1],
                               "--opcua-port", ports[2], "--http-port", ports[3], "--edge-metrics-port", ports[4],
                               "--broker-metrics-port", ports[5]),
                   check=True, capture_output=True, timeout=120)
    return root / "conf"


@pytest.fixture
def conf(template: Path, tmp_path: Path) -> Path:
    """A copy of the template to break."""
    return Path(shutil.copytree(template, tmp_path / "conf"))
