"""The offline signing flow through ``uns cmd``: keygen, new, sign twice, hash, check."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import ALLOWLIST_YAML, EDGE, GROUP

UNS = str(Path(sys.executable).with_name("uns"))


def _uns(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UNS, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_offline_two_person_flow(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    env = {"ALICE_PASS": "alice secret", "BOB_PASS": "bob secret"}
    for user, name, var in (("alice", "Alice Archer", "ALICE_PASS"), ("bob", "Bob Baker", "BOB_PASS")):
        done = _uns("cmd", "keygen", "--user", user, "--full-name", name, "--out", str(keys),
                    "--passphrase-env", var, env=env)
        assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((keys / "alice.key").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (keys / "alice.key").read_bytes()
    again = _uns("cmd", "keygen", "--user", "alice", "--full-name", "A", "--out", str(keys), "--no-passphrase")
    assert again.returncode == 2 and "never overwritten" in again.stderr

    registry = {"users": {}}
    for user in ("alice", "bob"):
        registry["users"].update(yaml.safe_load((keys / f"{user}.user.yaml").read_text())["users"])
    users = tmp_path / "users.yaml"
    users.write_text(yaml.safe_dump(registry))
    allowlist = tmp_path / "allowlist.yaml"
    allowlist.write_text(ALLOWLIST_YAML)

    command = tmp_path / "recipe.json"
    done = _uns("cmd", "new", "--allowlist", str(allowlist), "--group", GROUP, "--edge", EDGE, "--device", "filler",
                "--metric", "Recipe/Select", "--value", '"SKU-14"', "--user", "alice", "--reason", "changeover",
                "--out", str(command))
    assert done.returncode == 0, done.stderr
    digest = _uns("cmd", "hash", str(command)).stdout.strip()
    assert len(digest) == 64 and digest in done.stdout

    def check() -> tuple[int, dict[str, object]]:
        result = _uns("cmd", "check", str(command), "--allowlist", str(allowlist), "--users", str(users),
                      "--state", "Idle")
        return result.returncode, json.loads(result.stdout)

    code, decision = check()
    assert code == 1 and decision["reason"] == "signature_missing"
    signed = _uns("cmd", "sign", str(command), "--user", "alice", "--key", str(keys / "alice.key"),
                  "--passphrase-env", "ALICE_PASS", "--yes", env=env)
    assert signed.returncode == 0, signed.stderr
    assert "Recipe/Select" in signed.stderr and digest in signed.stderr  # the signer saw what they signed
    code, decision = check()
    assert code == 1 and decision["reason"] == "second_signature_required"
    wrong = _uns("cmd", "sign", str(command), "--user", "bob", "--key", str(keys / "bob.key"), "--meaning",
                 "approved", "--passphrase-env", "ALICE_PASS", "--yes", env=env)
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    approved = _uns("cmd", "sign", str(command), "--user", "bob", "--key", str(keys / "bob.key"), "--meaning",
                    "approved", "--passphrase-env", "BOB_PASS", "--yes", env=env)
    assert approved.returncode == 0, approved.stderr
    code, decision = check()
    assert code == 0 and decision["allowed"] is True and decision["critical"] is True
    assert _uns("cmd", "hash", str(command)).stdout.strip() == digest  # signatures are not hashed
