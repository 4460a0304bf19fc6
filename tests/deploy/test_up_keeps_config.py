"""Issue 17 item 1: `uns up` never loses a user's config.

The stack folder is the user's once written (its header says "edit freely"). These tests edit it
as a user would (a comment, a token), then run the real `uns up` and assert byte for byte that
only port numbers changed, that the previous folder was backed up and the output says both;
and that a busy port refuses before a single byte or mtime in the folder changes.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console

from tests.support.net import free_port
from tests.support.procs import stop_process, uns_command

PORT_NAMES = ("mqtt", "ws", "opcua", "http", "edge_http", "broker_http")
OPTIONS = {"mqtt": "--mqtt-port", "ws": "--ws-port", "opcua": "--opcua-port", "http": "--http-port",
           "edge_http": "--edge-metrics-port", "broker_http": "--broker-metrics-port"}


def _init(data: Path) -> dict[str, int]:
    """`uns init` on free ports into ``data/config`` (the folder `uns up --data-dir data` uses)."""
    ports = {name: free_port() for name in PORT_NAMES}
    args = [arg for name in PORT_NAMES for arg in (OPTIONS[name], str(ports[name]))]
    done = subprocess.run(uns_command("init", "--out", str(data / "config"), *args), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return ports


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _user_edits(folder: Path) -> str:
    """What a user does to adapter.yaml: a comment and their own operator token."""
    adapter = folder / "adapter.yaml"
    text = adapter.read_text()
    operator = yaml.safe_load(text)["auth"]["tokens"][1]
    assert operator["role"] == "operator"
    own_token = "my-own-operator-token-0123456789"
    text = text.replace(f"token: {operator['token']}", f"token: {own_token}  # ours, do not lose it")
    adapter.write_text("# plant 7, line 1: edited by hand\n" + text)
    return own_token


@dataclass
class EditedStack:
    """A stack folder from `uns init` on free ports, edited by hand, and its state before `uns up`."""

    data: Path
    folder: Path
    ports: dict[str, int]
    own_token: str
    before: dict[str, tuple[bytes, int]]


def _edited_stack(tmp_path: Path) -> EditedStack:
    data = tmp_path / "uns-data"
    ports = _init(data)
    own_token = _user_edits(data / "config")
    return EditedStack(data, data / "config", ports, own_token, _snapshot(data / "config"))


def _run_up(data: Path, *args: str, timeout: float = 240) -> tuple[int, str]:
    log_path = data.parent / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(uns_command("up", "--data-dir", str(data), *args), stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = proc.wait(timeout=timeout)
        finally:
            stop_process(proc, timeout=60)
    return code, log_path.read_text(errors="replace")


def test_port_change_changes_only_ports_keeps_a_backup_and_says_so(tmp_path: Path) -> None:
    stack = _edited_stack(tmp_path)
    data, folder, ports, own_token, before = stack.data, stack.folder, stack.ports, stack.own_token, stack.before
    new_http = free_port()

    # the real command: starts the whole stack on the changed port, runs 1 s, stops itself
    code, output = _run_up(data, "--http-port", str(new_http), "--run-for", "1", "--no-demo-batch")
    assert code == 0, output

    old = ports["http"]
    assert f"changed ports (http {old} -> {new_http}); nothing else in the config was touched:" in output
    assert f"  adapter.yaml: http.port {old} -> {new_http}" in output
    assert f"  stack.yaml: ports.http {old} -> {new_http}" in output
    # the stack ran with the user's token (the dashboard line prints the operator's)
    assert f"(token: operator {own_token})" in output
    assert f"http://127.0.0.1:{new_http}/docs" in output

    after = {name: content for name, (content, _) in _snapshot(folder).items()}
    backups = sorted(data.glob("config-backup-*"))
    assert len(backups) == 1 and f"the previous files are kept in {backups[0]}" in output
    # the backup is the folder as it was, byte for byte, secrets included
    assert {name: content for name, (content, _) in _snapshot(backups[0]).items()} == \
        {name: content for name, (content, _) in before.items()}
    assert backups[0].stat().st_mode & 0o077 == 0

    # only the two port lines differ; every password, token, key and the edit are untouched
    changed = {name for name in before if before[name][0] != after[name]}
    assert changed == {"adapter.yaml", "stack.yaml"}
    for name, old_line, new_line in (("adapter.yaml", f"  port: {old}\n", f"  port: {new_http}\n"),
                                     ("stack.yaml", f"  http: {old}\n", f"  http: {new_http}\n")):
        assert before[name][0].decode().count(old_line) == 1
        assert after[name].decode() == before[name][0].decode().replace(old_line, new_line)
    assert after["adapter.yaml"].decode().startswith("# plant 7, line 1: edited by hand\n")
    assert f"token: {own_token}  # ours, do not lose it\n" in after["adapter.yaml"].decode()
    assert set(after) >= {"users.yaml", "signers.yaml", "keys/demo-operator.key", "mosquitto.passwd"}
    assert (folder / "adapter.yaml").stat().st_mode & 0o077 == 0


def test_busy_port_refuses_before_any_file_changes(tmp_path: Path) -> None:
    stack = _edited_stack(tmp_path)
    data, folder, before = stack.data, stack.folder, stack.before
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        code, output = _run_up(data, "--http-port", str(busy), timeout=60)
    assert code == 2, output
    assert f"port(s) already in use on 127.0.0.1: {busy} (MES adapter HTTP)" in output
    assert "Nothing was written." in output
    assert _snapshot(folder) == before  # bytes and mtimes
    assert not list(data.glob("config-backup-*"))
    assert not (data / "logs").exists()


def test_a_port_moved_by_hand_refuses_with_the_line_and_how_to_apply(tmp_path: Path) -> None:
    data = tmp_path / "uns-data"
    folder = data / "config"
    ports = _init(data)
    adapter = folder / "adapter.yaml"
    moved = free_port()
    adapter.write_text(adapter.read_text().replace(f"  port: {ports['http']}\n", f"  port: {moved}\n"))
    before = _snapshot(folder)
    new_http = free_port()
    code, output = _run_up(data, "--http-port", str(new_http), timeout=60)
    assert code == 2, output
    line = adapter.read_text().splitlines().index(f"  port: {moved}") + 1
    assert "uns up: the ports were not changed (no file was written):" in output
    assert f"{adapter}:{line}: http.port: is {moved}, not {ports['http']} (stack.yaml's http)" in output
    assert f"`uns up --fresh --http-port {new_http}`" in output
    assert _snapshot(folder) == before
    assert not list(data.glob("config-backup-*"))


def test_fresh_backs_up_the_folder_before_regenerating(tmp_path: Path) -> None:
    """``--fresh`` is the explicit reset, and even it keeps the old folder (the function `uns up` calls)."""
    from unshub.cli.stack import StackPorts
    from unshub.cli.up import _prepare_stack_folder

    stack = _edited_stack(tmp_path)
    data, folder, ports, own_token, before = stack.data, stack.folder, stack.ports, stack.own_token, stack.before
    console = Console(file=open(os.devnull, "w"), record=True, width=400)  # noqa: SIM115 - closed below
    try:
        summary = _prepare_stack_folder(console, folder, yaml.safe_load((folder / "stack.yaml").read_text()),
                                        StackPorts(**ports), StackPorts(**ports), fresh=True)
    finally:
        console.file.close()
    text = console.export_text()
    backups = sorted(data.glob("config-backup-*"))
    assert len(backups) == 1
    assert f"backed up the previous config folder {folder} to {backups[0]}" in text
    assert f"wrote a new stack config (new passwords, tokens and keys) to {folder}" in text
    assert {n: c for n, (c, _) in _snapshot(backups[0]).items()} == {n: c for n, (c, _) in before.items()}
    assert summary["tokens"]["operator"] != own_token
    assert own_token not in (folder / "adapter.yaml").read_text()


def test_one_port_for_two_services_refuses_before_any_file_changes(tmp_path: Path) -> None:
    stack = _edited_stack(tmp_path)
    code, output = _run_up(stack.data, "--http-port", str(stack.ports["mqtt"]), timeout=60)
    assert code == 2, output
    assert output == (f"uns up: one port for two services: {stack.ports['mqtt']} (--mqtt-port and --http-port). "
                      "Nothing was written.\n")
    assert _snapshot(stack.folder) == stack.before
    assert not list(stack.data.glob("config-backup-*"))


def test_init_over_an_existing_folder_backs_it_up_first(tmp_path: Path) -> None:
    stack = _edited_stack(tmp_path)
    done = subprocess.run(uns_command("init", "--out", str(stack.folder)), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    backups = sorted(stack.data.glob("config-backup-*"))
    assert len(backups) == 1
    assert done.stdout == (f"backed up the previous config folder {stack.folder} to {backups[0]}\n"
                           f"wrote the local stack config to {stack.folder}\n")
    assert {n: c for n, (c, _) in _snapshot(backups[0]).items()} == {n: c for n, (c, _) in stack.before.items()}
    assert stack.own_token not in (stack.folder / "adapter.yaml").read_text()


def test_a_plc_or_broker_on_another_host_keeps_its_port(tmp_path: Path) -> None:
    """Only the stack's own broker and simulator move (same host and port as stack.yaml): a real
    PLC at 192.0.2.10 that uses the simulator's port number is not touched (the function `uns up` calls)."""
    from unshub.cli.stack import StackPorts
    from unshub.cli.stack_ports import change_ports

    stack = _edited_stack(tmp_path)
    plant = stack.folder / "plant.yaml"
    ours_opcua = f"opc.tcp://127.0.0.1:{stack.ports['opcua']}"
    plc = f"opc.tcp://192.0.2.10:{stack.ports['opcua']}"
    text = plant.read_text()
    assert text.count(f"  url: {ours_opcua}\n") == 1
    text = text.replace(f"  url: {ours_opcua}\n", f"  url: {ours_opcua}\n  server_deadband: false\n- name: plc\n"
                                                  f"  url: {plc}\n", 1)
    plant.write_text(text)
    old = StackPorts(**stack.ports)
    new = StackPorts(**{**stack.ports, "opcua": free_port()})
    backup, edits = change_ports(stack.folder, old, new)
    assert [(e.file, e.loc) for e in edits] == [("stack.yaml", ("ports", "opcua")), ("stack.yaml", ("opcua_endpoint",)),
                                                ("plant.yaml", ("opcua", 0, "url"))]
    assert plant.read_text() == text.replace(f"  url: {ours_opcua}\n", f"  url: opc.tcp://127.0.0.1:{new.opcua}\n")
    assert f"  url: {plc}\n" in plant.read_text()
    assert (backup / "plant.yaml").read_text() == text
