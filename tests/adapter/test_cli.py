"""``uns adapter``: run as a process (clean SIGTERM shutdown), mint tokens, config errors with file:line."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt

from mes_adapter.auth import Role, TokenStore
from mes_adapter.config.application import ConfigError, load_adapter_config
from tests.support.mosquitto import BrokerEndpoint
from tests.support.procs import stop_process, uns_command

from .edge import LINE, Edge
from .running import adapter_process
from .setup import auth


class _Watcher:
    """Keeps the last payload per topic for a few filters."""

    def __init__(self, broker: BrokerEndpoint, filters: list[str]) -> None:
        self.last: dict[str, bytes] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="adapter-test-watcher")
        self.client.on_connect = lambda c, *_: (c.subscribe([(f, 1) for f in filters]), self._ready.set())
        self.client.on_message = lambda c, u, m: self.last.__setitem__(m.topic, bytes(m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(10)

    def wait(self, topic: str, predicate, timeout: float = 10) -> bytes:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.last.get(topic)
            if data is not None and predicate(data):
                return data
            time.sleep(0.05)
        raise AssertionError(f"{topic}: last {self.last.get(topic)!r}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_run_serves_and_sigterm_goes_offline_cleanly(tmp_path: Path, mosquitto: BrokerEndpoint) -> None:
    watcher = _Watcher(mosquitto, ["spBv1.0/STATE/mes", f"{LINE}/filler/Speed"])
    try:
        with adapter_process(tmp_path, mosquitto.url) as (base, _files, proc), \
                Edge(mosquitto.host, mosquitto.port) as edge:
            watcher.wait("spBv1.0/STATE/mes", lambda d: json.loads(d)["online"] is True)
            edge.birth()
            watcher.wait(f"{LINE}/filler/Speed", lambda d: json.loads(d)["quality"] == "GOOD")
            tags = httpx.get(f"{base}/api/tags", headers=auth("viewer"), timeout=5).json()
            assert any(t["topic"] == f"{LINE}/filler/Speed" for t in tags)
            started = time.monotonic()
            code = stop_process(proc, sig=signal.SIGTERM, timeout=20)
            assert code == 0, (tmp_path / "adapter.log").read_text()[-2000:]
            assert time.monotonic() - started < 15
        watcher.wait("spBv1.0/STATE/mes", lambda d: json.loads(d)["online"] is False)
        watcher.wait(f"{LINE}/filler/Speed", lambda d: json.loads(d)["quality"] == "STALE")
    finally:
        watcher.close()


def test_token_command_appends_a_hash_only_entry(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yaml"
    out = subprocess.run(uns_command("adapter", "token", "--role", "supervisor", "--user", "bob", "--full-name",
                                     "Bob S", "--tokens-file", str(tokens_file)),
                         capture_output=True, text=True, timeout=60, check=True)
    secret = out.stdout.strip()
    assert secret.startswith("uns_") and secret not in tokens_file.read_text()
    store = TokenStore.from_settings([], tokens_file)
    principal = store.authenticate(f"Bearer {secret}")
    assert principal.user_id == "bob" and principal.role is Role.SUPERVISOR
    assert oct(tokens_file.stat().st_mode & 0o777) == "0o600" and "backed up" not in out.stderr

    # a second token rewrites the file: the previous one (a hand-added comment included) is kept first
    tokens_file.write_text("# tokens of the night shift\n" + tokens_file.read_text())
    before = tokens_file.read_text()
    again = subprocess.run(uns_command("adapter", "token", "--role", "viewer", "--user", "carol", "--full-name",
                                       "Carol V", "--tokens-file", str(tokens_file)),
                           capture_output=True, text=True, timeout=60, check=True)
    (backup,) = tmp_path.glob("tokens.yaml.bak-*")
    assert (backup.read_text(), oct(backup.stat().st_mode & 0o777)) == (before, "0o600")
    assert again.stderr.splitlines()[0] == f"backed up the previous tokens file to {backup}"
    store = TokenStore.from_settings([], tokens_file)
    assert [store.authenticate(f"Bearer {s}").user_id for s in (secret, again.stdout.strip())] == ["bob", "carol"]
    bad = subprocess.run(uns_command("adapter", "token", "--role", "king", "--user", "x", "--full-name", "X"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown role 'king'" in bad.stderr


def test_config_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text("host:\n  broker_url: mqtt://127.0.0.1:1883\nhttp:\n  port: 99999\n")
    try:
        load_adapter_config(path)
    except ConfigError as exc:
        assert f"{path}:4: http.port" in str(exc)
    else:
        raise AssertionError("port 99999 accepted")
    run = subprocess.run(uns_command("adapter", "run", "--config", str(path)), capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and f"{path}:4" in run.stderr
