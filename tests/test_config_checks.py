"""uns.config_checks: file-system problems located at the field that names the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from uns.config_checks import ConfigChecks
from uns.yaml_marks import ConfigError


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "service.yaml"
    path.write_text("name: x\nstore:\n  data_dir: blocked/state\n  users: users.yaml\n")
    return path


def test_a_directory_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    config = _config(tmp_path)
    (tmp_path / "blocked").write_text("a file\n")
    checks = ConfigChecks.of_file(config)
    assert not checks.writable_dir(("store", "data_dir"), tmp_path / "blocked" / "state")
    assert checks.issues == [f"{config}:3: store.data_dir: {tmp_path / 'blocked' / 'state'} cannot be created: "
                             f"{tmp_path / 'blocked'} is not a directory"]


def test_a_missing_directory_under_a_writable_one_is_fine(tmp_path: Path) -> None:
    checks = ConfigChecks.of_file(_config(tmp_path))
    assert checks.writable_dir(("store", "data_dir"), tmp_path / "a" / "b" / "c")
    assert checks.file_in_writable_dir(("store", "db"), tmp_path / "a" / "db.sqlite")
    checks.raise_if_any()  # nothing to report
    assert not (tmp_path / "a").exists()  # a check creates nothing


def test_every_problem_is_raised_at_once_with_the_loaders_own_lines(tmp_path: Path) -> None:
    config = _config(tmp_path)
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  - x\n")

    def loader(path: Path) -> None:
        raise ValueError(f"{path}:2: users: a mapping\n{path}:2: users[0]: bad")

    checks = ConfigChecks.of_file(config)
    assert checks.loads(("store", "users"), users, loader) is None
    checks.loads(("store", "other"), tmp_path / "nope.yaml", loader, missing_hint="create it with `x`")
    with pytest.raises(ConfigError) as raised:
        checks.raise_if_any()
    assert raised.value.issues == [
        f"{config}:4: store.users: {users} is invalid:\n  {users}:2: users: a mapping\n  {users}:2: users[0]: bad",
        f"{config}:2: store.other: {tmp_path / 'nope.yaml'} does not exist; create it with `x`",
    ]


def test_port_in_use_only_for_a_listener_on_that_address() -> None:
    import socket

    from uns.config_checks import port_in_use

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        assert port_in_use("0.0.0.0", port)  # the wildcard would collide with it too
    assert not port_in_use("127.0.0.1", port)  # closed: free again
    assert not port_in_use("no-such-host.invalid", port)  # another problem, reported by the bind itself
