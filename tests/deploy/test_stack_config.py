"""`uns init` writes a stack config every service loads, and docker-compose files are valid.

The compose files are checked statically with Debian's ``docker-compose config`` (no Docker
engine runs here); the service commands are asserted to be the ones `uns up` starts, so what the
native tests exercise is what a plant deploys.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from tests.support.mosquitto import mosquitto_binary
from tests.support.net import free_port, wait_for_port
from tests.support.procs import REPO, stop_process, uns_command

COMPOSE = REPO / "docker-compose.yml"
MOSQUITTO_OVERRIDE = REPO / "docker-compose.mosquitto.yml"


def _compose(*files: Path) -> dict:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: scripts/test installs it (apt-get install docker-compose)")
    args = [binary]
    for file in files:
        args += ["-f", str(file)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_files_are_valid_and_run_the_uns_commands() -> None:
    config = _compose(COMPOSE)
    services = config["services"]
    assert set(services) == {"init", "broker", "simulator", "adapter", "edge"}
    assert services["broker"]["command"][:2] == ["broker", "run"]
    assert services["simulator"]["command"][:2] == ["sim", "run"]
    assert services["adapter"]["command"][:2] == ["adapter", "run"]
    assert services["edge"]["command"][:2] == ["edge", "run"]
    assert services["init"]["command"][0] == "init"
    override = _compose(COMPOSE, MOSQUITTO_OVERRIDE)
    assert override["services"]["broker"]["image"].startswith("eclipse-mosquitto")


def test_uns_up_starts_the_same_commands_as_compose() -> None:
    source = (REPO / "unshub" / "cli" / "up.py").read_text()
    for words in ('"broker", "run"', '"sim", "run"', '"adapter", "run"', '"edge", "run"'):
        assert words in source


def test_init_writes_configs_every_service_validates(tmp_path: Path) -> None:
    out = tmp_path / "config"
    result = subprocess.run(uns_command("init", "--out", str(out)), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("users.yaml", "broker.yaml", "plant.yaml", "allowlist.yaml", "adapter.yaml", "stack.yaml",
                 "mosquitto.conf", "mosquitto.passwd", "mosquitto.acl"):
        assert (out / name).is_file(), name
    for secret in ("users.yaml", "plant.yaml", "adapter.yaml", "stack.yaml"):
        assert (out / secret).stat().st_mode & 0o077 == 0, f"{secret} is readable by others"

    from broker.config import load_settings
    from edge_node.config import load_edge_config
    from uns.commands.allowlist import Allowlist

    settings = load_settings(out / "broker.yaml")
    assert settings.demo_anonymous.value == "read-only"
    edge = load_edge_config(out / "plant.yaml")
    assert edge.tags
    assert Allowlist.load(out / "allowlist.yaml").lines
    try:
        from mes_adapter.config.application import load_adapter_config
    except ImportError:  # the adapter app is not part of this checkout yet
        return
    adapter = load_adapter_config(out / "adapter.yaml")
    assert adapter.host.host_id == "uns-mes"
    # both audit logs are witnessed outside the data folder (issue 13: a cut tail must not pass verify)
    witness = tmp_path / "witness"
    assert edge.commands is not None and edge.commands.audit_witness == witness / "edge-commands.jsonl"
    assert adapter.audit.witness_path == witness / "adapter-audit.jsonl"
    assert not str(witness).startswith(str(tmp_path / "data"))

    again = subprocess.run(uns_command("init", "--out", str(out), "--keep-existing"), capture_output=True,
                           text=True, timeout=60)
    assert "kept" in again.stdout


def test_generated_mosquitto_config_authenticates_and_applies_the_acl(tmp_path: Path) -> None:
    """The Mosquitto override uses the same users and roles: prove it with a real Mosquitto."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is missing: scripts/test installs it")
    port = free_port()
    # Mosquitto started as root drops to the `mosquitto` user, which cannot enter pytest's 0700
    # tmp folders: use a folder it can traverse
    base = Path(tempfile.mkdtemp(prefix="uns-mosquitto-"))
    base.chmod(0o755)
    out = base / "config"
    result = subprocess.run(uns_command("init", "--out", str(out), "--mqtt-port", str(port)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stack = yaml.safe_load((out / "stack.yaml").read_text())
    plant = yaml.safe_load((out / "plant.yaml").read_text())
    from uns.mqtt_url import parse_broker_url

    edge_url = parse_broker_url(plant["sparkplug"]["brokers"][0])
    proc = subprocess.Popen([binary, "-c", str(out / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)

        def connect(user: str | None, password: str | None) -> int:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            if user:
                client.username_pw_set(user, password)
            codes: list[int] = []
            client.on_connect = lambda c, u, f, rc, p=None: codes.append(rc.value)
            client.connect("127.0.0.1", port)
            client.loop_start()
            try:
                for _ in range(100):
                    if codes:
                        break
                    __import__("time").sleep(0.05)
            finally:
                client.disconnect()
                client.loop_stop()
            return codes[0] if codes else -1

        assert connect(edge_url.username, edge_url.password) == 0
        assert connect(edge_url.username, "wrong") != 0
        assert connect(None, None) == 0  # anonymous: read-only demo access

        adapter = yaml.safe_load((out / "adapter.yaml").read_text())
        mes_url = parse_broker_url(adapter["host"]["broker_url"])
        group, edge = stack["sparkplug"]["group_id"], stack["sparkplug"]["edge_node_id"]
        from tests.support.sniffer import Sniffer

        with Sniffer("127.0.0.1", port, ("#",), username=mes_url.username, password=mes_url.password) as sniffer:
            def publish(user: str | None, password: str | None, topic: str) -> None:
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
                if user:
                    client.username_pw_set(user, password)
                client.connect("127.0.0.1", port)
                client.loop_start()
                client.publish(topic, b"x", qos=1).wait_for_publish(5)
                client.disconnect()
                client.loop_stop()

            publish(None, None, "acme/plant1/forged")  # anonymous may not write
            publish(edge_url.username, edge_url.password, f"spBv1.0/{group}/NBIRTH/other:line")  # not its node
            publish(edge_url.username, edge_url.password, f"spBv1.0/{group}/NBIRTH/{edge}")
            sniffer.wait_topic(f"spBv1.0/{group}/NBIRTH/{edge}")
            topics = {m.topic for m in sniffer.snapshot()}
            assert "acme/plant1/forged" not in topics
            assert f"spBv1.0/{group}/NBIRTH/other:line" not in topics
    finally:
        stop_process(proc)
        shutil.rmtree(base, ignore_errors=True)


def test_init_writes_a_qa_user_who_can_sign_and_uns_up_prints_its_token(tmp_path: Path) -> None:
    """Issue 17: the example adapter.yaml has a QA user; `uns init` writes one like the other roles
    (token, role qa, a signing key in signers.yaml: QA dispositions are signed, docs/mes-quality.md)."""
    import io

    from rich.console import Console

    from mes_adapter.auth import Role, TokenStore
    from mes_adapter.config.application import load_adapter_config
    from uns.commands.signing import UserRegistry, load_private_key
    from unshub.cli.stack import StackPorts, write_stack_config
    from unshub.cli.up import BrokerEngine, _api_tokens, _print_urls

    out = tmp_path / "config"
    summary = write_stack_config(out)
    assert set(summary["tokens"]) == {"viewer", "operator", "supervisor", "engineer", "qa"}
    adapter = load_adapter_config(out / "adapter.yaml")
    store = TokenStore.from_settings(adapter.auth.tokens, adapter.auth.tokens_file)
    principal = store.authenticate(f"Bearer {summary['tokens']['qa']}")
    assert (principal.user_id, principal.role) == ("demo-qa", Role.QA)
    signers = UserRegistry.load(out / "signers.yaml")
    key = load_private_key(Path(summary["signing_keys"]["demo-qa"]))
    assert signers.public_key("demo-qa").public_bytes_raw() == key.public_key().public_bytes_raw()
    assert set(summary["signing_keys"]) == {"demo-operator", "demo-supervisor", "demo-engineer", "demo-qa"}

    printed = io.StringIO()
    summary["tokens"] = _api_tokens(out / "adapter.yaml")
    _print_urls(Console(file=printed, width=400), summary, StackPorts(), BrokerEngine.EMBEDDED)
    token_line = next(line for line in printed.getvalue().splitlines() if "API tokens" in line)
    assert token_line.split("API tokens")[1].strip() == ", ".join(
        f"{role}={summary['tokens'][role]}" for role in ("viewer", "operator", "supervisor", "engineer", "qa"))
