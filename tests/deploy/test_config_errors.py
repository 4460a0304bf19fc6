"""A bad config is refused by every command with ``file:line: field: message`` and exit 2, never a
traceback (issue 13, item 6), and ``check`` refuses what ``run`` would.

Each test starts from the stack config ``uns init`` writes, breaks one thing, and runs the real
``uns`` command as a process. A regression that lets the service start instead would not pass:
the assertions need exit code 2 and the exact location of the fault.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.net import free_port
from tests.support.procs import REPO, uns_command


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another listener holds for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def uns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(uns_command(*args), capture_output=True, text=True, timeout=120)


def line_of(path: Path, text: str) -> int:
    """1-based line of the first line of ``path`` that starts with ``text`` (after indentation)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip().startswith(text):
            return number
    raise AssertionError(f"{text!r} not in {path}")


def refused(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2, every ``expected`` fragment on stderr, and no traceback anywhere."""
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    for fragment in expected:
        assert fragment in done.stderr, (fragment, done.stderr)


def set_key(path: Path, key: str, value: object) -> None:
    """Replace one top-level or ``section.key`` value, keeping the file a plain YAML mapping."""
    data = yaml.safe_load(path.read_text())
    *parents, last = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


# ----------------------------------------------------------------------------------- broker


def test_broker_missing_password_file(conf: Path) -> None:
    (conf / "users.yaml").unlink()
    broker = conf / "broker.yaml"
    done = uns("broker", "run", "--config", str(broker))
    refused(done, f"{broker}:{line_of(broker, 'password_file:')}: password_file: ", "users.yaml does not exist",
            "uns broker passwd")
    refused(uns("broker", "check", "--config", str(broker)), f"{broker}:{line_of(broker, 'password_file:')}: ")


def test_broker_unparsable_password_file(conf: Path) -> None:
    users = conf / "users.yaml"
    users.write_text("users:\n  edge: role: edge\n  mes: {}\n")
    broker = conf / "broker.yaml"
    done = uns("broker", "run", "--config", str(broker))
    refused(done, f"{broker}:{line_of(broker, 'password_file:')}: password_file: ",
            f"{users}:2: YAML syntax: mapping values are not allowed")


def test_broker_invalid_password_file_entry(conf: Path) -> None:
    users = conf / "users.yaml"
    text = users.read_text()
    users.write_text(text.replace("$argon2id$", "plain", 1))
    broker = conf / "broker.yaml"
    done = uns("broker", "run", "--config", str(broker))
    refused(done, f"{broker}:{line_of(broker, 'password_file:')}: password_file: ",
            f"{users}:{line_of(users, 'hash: plain')}: users.edge.hash: hash must be an argon2 hash")


def test_broker_user_whose_role_is_not_defined(conf: Path) -> None:
    """The ACL would refuse this user at every connect: said at start, at the user's line."""
    users = conf / "users.yaml"
    users.write_text(users.read_text().replace("role: host", "role: historian"))
    broker = conf / "broker.yaml"
    done = uns("broker", "check", "--config", str(broker))
    refused(done, f"{broker}:{line_of(broker, 'password_file:')}: password_file: {users} has users the broker "
                  "would refuse at every connect",
            f"{users}:{line_of(users, 'role: historian')}: users.mes.role: user 'mes' has role 'historian', "
            "which is not defined")


def test_broker_port_in_use(conf: Path, busy_port: int) -> None:
    broker = conf / "broker.yaml"
    set_key(broker, "tcp.port", busy_port)
    done = uns("broker", "run", "--config", str(broker))
    refused(done, f"{broker}:{line_of(broker, f'port: {busy_port}')}: tcp.port: port {busy_port} on 127.0.0.1 "
                  "is already in use, so the broker's MQTT listener cannot listen on it")


# -------------------------------------------------------------------------------- simulator


def test_simulator_port_in_use(busy_port: int) -> None:
    done = uns("sim", "run", "--port", str(busy_port))
    refused(done, f"command line: --port: port {busy_port} on 127.0.0.1 is already in use, "
                  "so the OPC UA simulator cannot listen on it")


def test_simulator_data_dir_is_a_file(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("not a directory\n")
    done = uns("sim", "run", "--port", str(free_port()), "--security", "Basic256Sha256_Sign",
               "--data-dir", str(blocked))
    refused(done, f"command line: --data-dir: {blocked} is not a directory")


# ------------------------------------------------------------------------------------- edge


@pytest.mark.parametrize("command", ["check", "run"])
def test_edge_missing_allowlist(conf: Path, command: str) -> None:
    (conf / "allowlist.yaml").unlink()
    plant = conf / "plant.yaml"
    done = uns("edge", command, "--config", str(plant))
    refused(done, f"{plant}:{line_of(plant, 'allowlist:')}: commands.allowlist: {conf / 'allowlist.yaml'} "
                  "does not exist")


@pytest.mark.parametrize("command", ["check", "run"])
def test_edge_bad_signer_key(conf: Path, command: str) -> None:
    signers = conf / "signers.yaml"
    bad_line = line_of(signers, "public_key:")
    lines = signers.read_text().splitlines()
    lines[bad_line - 1] = "    public_key: ed25519:AAAA"
    signers.write_text("\n".join(lines) + "\n")
    plant = conf / "plant.yaml"
    done = uns("edge", command, "--config", str(plant))
    refused(done, f"{plant}:{line_of(plant, 'users:')}: commands.users: {signers} is invalid",
            f"{signers}:{bad_line}: users.demo-operator.public_key: an Ed25519 public key has 32 bytes, this one 3")


@pytest.mark.parametrize("command", ["check", "run"])
def test_edge_data_dir_is_a_file(conf: Path, command: str) -> None:
    (conf / "state").write_text("not a directory\n")
    plant = conf / "plant.yaml"
    set_key(plant, "data_dir", "state")
    done = uns("edge", command, "--config", str(plant))
    refused(done, f"{plant}:{line_of(plant, 'data_dir:')}: data_dir: {conf / 'state'} is not a directory")


@pytest.mark.parametrize("command", ["check", "run"])
def test_edge_unset_opcua_password_variable(conf: Path, command: str) -> None:
    plant = conf / "plant.yaml"
    data = yaml.safe_load(plant.read_text())
    data["opcua"][0].update(username="edge", password_env="UNS_TEST_UNSET_PLC_PASSWORD")
    plant.write_text(yaml.safe_dump(data, sort_keys=False))
    done = uns("edge", command, "--config", str(plant))
    refused(done, f"{plant}:{line_of(plant, 'password_env:')}: opcua[0].password_env: "
                  "environment variable UNS_TEST_UNSET_PLC_PASSWORD is not set")


@pytest.mark.parametrize("command", ["check", "run"])
def test_edge_unset_opcua_write_password_variable(conf: Path, command: str) -> None:
    """The command writer's own account (write_credentials) would fail every write: refused at start."""
    plant = conf / "plant.yaml"
    data = yaml.safe_load(plant.read_text())
    data["opcua"][0]["write_credentials"] = {"username": "writer", "password_env": "UNS_TEST_UNSET_WRITE_PASSWORD"}
    plant.write_text(yaml.safe_dump(data, sort_keys=False))
    done = uns("edge", command, "--config", str(plant))
    refused(done, f"{plant}:{line_of(plant, 'password_env:')}: opcua[0].write_credentials.password_env: "
                  "environment variable UNS_TEST_UNSET_WRITE_PASSWORD is not set")


# ---------------------------------------------------------------------------------- adapter


@pytest.mark.parametrize("command", ["check", "run"])
def test_adapter_missing_allowlist(conf: Path, command: str) -> None:
    (conf / "allowlist.yaml").unlink()
    adapter = conf / "adapter.yaml"
    done = uns("adapter", command, "--config", str(adapter))
    refused(done, f"{adapter}:{line_of(adapter, 'allowlist:')}: commands.allowlist: {conf / 'allowlist.yaml'} "
                  "does not exist")


@pytest.mark.parametrize("command", ["check", "run"])
def test_adapter_bad_signer_key(conf: Path, command: str) -> None:
    signers = conf / "signers.yaml"
    signers.write_text(signers.read_text().replace("public_key: ed25519:", "public_key: ed25519:AAAA", 1))
    adapter = conf / "adapter.yaml"
    done = uns("adapter", command, "--config", str(adapter))
    refused(done, f"{adapter}:{line_of(adapter, 'signers:')}: commands.signers: {signers} is invalid",
            f"{signers}:{line_of(signers, 'public_key: ed25519:AAAA')}: users.demo-operator.public_key: ")


@pytest.mark.parametrize("command", ["check", "run"])
def test_adapter_data_dir_is_a_file(conf: Path, command: str) -> None:
    (conf / "state").write_text("not a directory\n")
    adapter = conf / "adapter.yaml"
    set_key(adapter, "data_dir", "state")
    done = uns("adapter", command, "--config", str(adapter))
    refused(done, f"{adapter}:{line_of(adapter, 'data_dir:')}: data_dir: {conf / 'state'} is not a directory")
    assert done.stderr.count(str(conf / "state")) == 1, done.stderr  # one report, not one per directory under it


@pytest.mark.parametrize("command", ["check", "run"])
def test_adapter_empty_config_names_what_is_missing(tmp_path: Path, command: str) -> None:
    adapter = tmp_path / "adapter.yaml"
    adapter.write_text("")
    done = uns("adapter", command, "--config", str(adapter))
    refused(done, f"{adapter}: host.broker_url: missing: the MQTT broker",
            f"{adapter}: auth: missing: API users, auth.tokens or auth.tokens_file")


def test_adapter_without_api_users_names_the_auth_section(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.yaml"
    adapter.write_text("host:\n  broker_url: mqtt://127.0.0.1:1883\nhttp:\n  port: 0\n")
    done = uns("adapter", "run", "--config", str(adapter))
    refused(done, f"{adapter}:1: auth: missing: API users")
    assert "broker_url" not in done.stderr


def test_adapter_broker_from_the_command_line_is_enough(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter.yaml"
    adapter.write_text("auth:\n  tokens_file: tokens.yaml\n")
    subprocess.run(uns_command("adapter", "token", "--role", "viewer", "--user", "v", "--full-name", "V",
                               "--tokens-file", str(tmp_path / "tokens.yaml")), check=True, capture_output=True,
                   timeout=60)
    done = uns("adapter", "check", "--config", str(adapter), "--broker", "mqtt://127.0.0.1:1883")
    assert done.returncode == 0, done.stderr
    assert f"{adapter}: OK" in done.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_adapter_missing_tokens_file(conf: Path, command: str) -> None:
    adapter = conf / "adapter.yaml"
    set_key(adapter, "auth.tokens_file", "tokens.yaml")
    done = uns("adapter", command, "--config", str(adapter))
    refused(done, f"{adapter}:{line_of(adapter, 'tokens_file:')}: auth.tokens_file: {conf / 'tokens.yaml'} "
                  "does not exist; create it with `uns adapter token --tokens-file")


def test_adapter_http_port_in_use(conf: Path, busy_port: int) -> None:
    adapter = conf / "adapter.yaml"
    set_key(adapter, "http.port", busy_port)
    done = uns("adapter", "run", "--config", str(adapter))
    refused(done, f"{adapter}:{line_of(adapter, f'port: {busy_port}')}: http.port: port {busy_port} on 127.0.0.1 "
                  "is already in use, so the adapter's REST API and dashboard cannot listen on it")


def test_generated_config_passes_every_check(conf: Path) -> None:
    """The other side of the coin: what `uns init` writes is accepted by every check."""
    for command in (("broker", "check", "--config", str(conf / "broker.yaml")),
                    ("edge", "check", "--config", str(conf / "plant.yaml")),
                    ("adapter", "check", "--config", str(conf / "adapter.yaml"))):
        done = uns(*command)
        assert done.returncode == 0 and "OK" in done.stdout, (command, done.stdout, done.stderr)


# ------------------------------------------------------------------------ uns up, uns host


def _init_for_up(data_dir: Path) -> list[str]:
    """`uns init` into ``data_dir/config`` on free ports; the `uns up` options that keep that config."""
    names = ["--mqtt-port", "--ws-port", "--opcua-port", "--http-port", "--edge-metrics-port", "--broker-metrics-port"]
    options = [item for name in names for item in (name, str(free_port()))]
    subprocess.run(uns_command("init", "--out", str(data_dir / "config"), *options), check=True,
                   capture_output=True, timeout=120)
    return options


def test_up_checks_every_config_before_starting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "uns-data"
    options = _init_for_up(data_dir)
    conf = data_dir / "config"
    (conf / "allowlist.yaml").unlink()
    (conf / "users.yaml").unlink()
    done = uns("up", "--data-dir", str(data_dir), *options, "--run-for", "1")
    adapter, plant, broker = conf / "adapter.yaml", conf / "plant.yaml", conf / "broker.yaml"
    refused(done, f"{broker}:{line_of(broker, 'password_file:')}: password_file: ",
            f"{plant}:{line_of(plant, 'allowlist:')}: commands.allowlist: ",
            f"{adapter}:{line_of(adapter, 'allowlist:')}: commands.allowlist: ")
    assert not (data_dir / "logs").exists()  # no service was started


def test_up_port_in_use_exits_2(tmp_path: Path, busy_port: int) -> None:
    data_dir = tmp_path / "uns-data"
    options = _init_for_up(data_dir)
    options[options.index("--http-port") + 1] = str(busy_port)
    done = uns("up", "--data-dir", str(data_dir), *options, "--run-for", "1")
    refused(done, f"{busy_port} (MES adapter HTTP)")
    assert not (data_dir / "logs").exists()


def test_host_invalid_option_names_the_field() -> None:
    done = uns("host", "--broker", "ftp://127.0.0.1:1")
    refused(done, "command line: broker_url: broker URL 'ftp://127.0.0.1:1': unknown scheme 'ftp'")


def test_documented_smallest_adapter_config_passes_check(tmp_path: Path) -> None:
    """The minimal adapter.yaml of docs/troubleshooting.md is accepted as written."""
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    section = text[text.index("### The smallest adapter.yaml"):]
    example = section[section.index("```yaml\n") + len("```yaml\n"):section.index("```\n", section.index("```yaml"))]
    adapter = tmp_path / "adapter.yaml"
    adapter.write_text(example)
    subprocess.run(uns_command("adapter", "token", "--role", "operator", "--user", "alice", "--full-name", "Alice",
                               "--tokens-file", str(tmp_path / "tokens.yaml")), check=True, capture_output=True,
                   timeout=60)
    done = uns("adapter", "check", "--config", str(adapter))
    assert done.returncode == 0 and f"{adapter}: OK" in done.stdout, done.stderr
