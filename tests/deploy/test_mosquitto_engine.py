"""What `uns up --broker-engine mosquitto` decides before starting Mosquitto (unshub/mosquitto.py).

Readiness is a real MQTT CONNECT against a real Mosquitto (answered, refused, nothing listening);
the config checks run on the file `uns init` writes; the root caveat (Mosquitto reads its password
and ACL files as the `mosquitto` user) is checked against the real account on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.mosquitto import mosquitto_binary, mosquitto_broker
from tests.support.net import free_port
from tests.support.procs import uns_command
from unshub import mosquitto
from unshub.mosquitto import MosquittoMissingError, conf_problems, find_mosquitto, mqtt_answers, read_conf


def test_binary_on_path_first_then_the_debian_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "mosquitto"
    own.write_text("#!/bin/sh\n")
    own.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_mosquitto() == str(own)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(mosquitto, "FALLBACK_PATHS", (str(own),))
    assert find_mosquitto() == str(own)
    monkeypatch.setattr(mosquitto, "FALLBACK_PATHS", (str(tmp_path / "absent"),))
    with pytest.raises(MosquittoMissingError, match=r"Install the Debian/Ubuntu package `mosquitto` "
                                                    r"\(sudo apt-get install mosquitto;"):
        find_mosquitto()


def test_readiness_is_a_real_mqtt_connect(tmp_path: Path) -> None:
    assert mosquitto_binary(), "mosquitto is missing: scripts/test installs it"
    assert not mqtt_answers(free_port())  # nothing listens
    with mosquitto_broker(tmp_path) as broker:
        assert mqtt_answers(broker.port)
    # anonymous access off: the CONNACK refusal still proves the broker is up and has its files loaded
    with mosquitto_broker(tmp_path, extra_conf="allow_anonymous false\n") as broker:
        assert mqtt_answers(broker.port)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`uns init` into a folder the `mosquitto` user can traverse (0755 from / down)."""
    base = Path(tempfile.mkdtemp(prefix="uns-engine-"))
    base.chmod(0o755)
    port = free_port()
    done = subprocess.run(uns_command("init", "--out", str(base / "config"), "--mqtt-port", str(port)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    yield base / "config"
    shutil.rmtree(base, ignore_errors=True)


def test_the_generated_conf_serves_the_stack(generated: Path) -> None:
    conf = read_conf(generated / "mosquitto.conf")
    port = conf.listeners[0]
    assert conf.files == {"password_file": generated / "mosquitto.passwd", "acl_file": generated / "mosquitto.acl"}
    assert conf.user == "mosquitto"
    assert conf_problems(conf, port, euid=0) == []
    assert conf_problems(conf, port + 1, euid=os.geteuid()) == [
        f"{conf.path}: no `listener {port + 1}` line, but the edge node and the adapter connect to port "
        f"{port + 1} (stack.yaml's mqtt port)"]


def test_files_the_mosquitto_user_cannot_read_are_reported_with_the_fix(generated: Path, tmp_path: Path) -> None:
    # pytest's tmp_path is 0700 (root's): Mosquitto started as root, then running as `mosquitto`,
    # could not open its password file there and would exit at start
    folder = Path(shutil.copytree(generated, tmp_path / "config"))
    text = (generated / "mosquitto.conf").read_text().replace(str(generated), str(folder))
    (folder / "mosquitto.conf").write_text(text)
    conf = read_conf(folder / "mosquitto.conf")
    problems = conf_problems(conf, conf.listeners[0], euid=0)
    blocked = next(p for p in reversed(folder.parents) if not p.stat().st_mode & 0o001)
    assert problems == [
        f"{conf.path}: {key} {folder / name}: Mosquitto started as root runs as user `mosquitto`, and it "
        f"cannot enter {blocked} (mode drwx------). Use a --data-dir that user can reach (e.g. under /var/lib "
        "or /srv), or make the folders on the way searchable (chmod o+x)"
        for key, name in (("password_file", "mosquitto.passwd"), ("acl_file", "mosquitto.acl"))]
    assert conf_problems(conf, conf.listeners[0], euid=1234) == []  # not root: Mosquitto stays who it is
    (folder / "mosquitto.conf").write_text(text + "user root\n")
    assert conf_problems(read_conf(folder / "mosquitto.conf"), conf.listeners[0], euid=0) == []
    (folder / "mosquitto.acl").unlink()
    assert conf_problems(read_conf(folder / "mosquitto.conf"), conf.listeners[0], euid=0) == [
        f"{folder / 'mosquitto.conf'}: acl_file {folder / 'mosquitto.acl'} does not exist"]
