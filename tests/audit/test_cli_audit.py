"""``uns audit verify`` / ``uns audit export`` as an operator runs them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from .conftest import Fill, attacker

UNS = str(Path(sys.executable).with_name("uns"))


def _uns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UNS, *args], capture_output=True, text=True, timeout=60)


def test_verify_ok_then_broken(fill: Fill) -> None:
    path = fill(12)
    ok = _uns("audit", "verify", str(path), "--public-key", str(path.parent / "audit-checkpoint.pub"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 12 records")
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq=5")
    broken = _uns("audit", "verify", str(path))
    assert broken.returncode == 1
    assert broken.stdout.startswith("BROKEN at record seq 5: deleted")


def test_verify_json_and_missing_file(fill: Fill, tmp_path: Path) -> None:
    path = fill(3)
    report = json.loads(_uns("audit", "verify", str(path), "--json").stdout)
    assert report["ok"] is True and report["records"] == 3
    missing = _uns("audit", "verify", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no such audit log" in missing.stderr


def test_export_json_and_csv(fill: Fill, tmp_path: Path) -> None:
    path = fill(7, checkpoint_every=5, close=False)
    out = tmp_path / "audit.json"
    done = _uns("audit", "export", str(path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["verify"]["ok"] is True and len(document["records"]) == 7
    assert [r["verify_status"] for r in document["records"]] == ["sealed"] * 5 + ["unsealed"] * 2
    assert document["records"][0]["actor_printed_name"] == "Alice Archer" and document["checkpoints"][0]["seq"] == 5

    with attacker(path) as db:
        db.execute("UPDATE audit_record SET body=replace(body, 'Alice', 'Alfred') WHERE seq=3")
    out_csv = tmp_path / "audit.csv"
    done = _uns("audit", "export", str(path), "--out", str(out_csv), "--format", "csv")
    assert done.returncode == 1 and "BROKEN" in done.stdout
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("# schema: uns-hub.audit.export.v1")
    assert any(line.startswith("# finding: record seq 3: edited") for line in lines)
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    assert [r["verify_status"] for r in rows] == ["sealed", "sealed"] + ["BROKEN"] * 5
    assert rows[0]["target.metric"] == "Filler/SpeedSetpoint" and rows[2]["actor_printed_name"] == "Alfred Archer"


def test_export_bad_format(fill: Fill, tmp_path: Path) -> None:
    done = _uns("audit", "export", str(fill(1)), "--out", str(tmp_path / "x"), "--format", "xml")
    assert done.returncode == 2 and "use json or csv" in done.stderr


def test_verify_fails_when_the_witness_the_log_names_is_gone(fill: Fill) -> None:
    path = fill(12, witness=True)
    ok = _uns("audit", "verify", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (path.parent / "witness.jsonl").unlink()
    gone = _uns("audit", "verify", str(path))
    assert gone.returncode == 1
    assert gone.stdout.startswith("BROKEN at log: witness_missing: witness file ")


def test_a_running_log_before_its_first_checkpoint_verifies(fill: Fill) -> None:
    """A log that names its witness but has not written a checkpoint yet (a service just started,
    the first records unsealed) is intact: verify says so. The witness file exists from the moment
    the log names it, so its absence still means it was removed."""
    path = fill(3, checkpoint_every=1000, close=False, witness=True)
    assert (path.parent / "witness.jsonl").is_file()
    ok = _uns("audit", "verify", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (path.parent / "witness.jsonl").unlink()
    gone = _uns("audit", "verify", str(path))
    assert gone.returncode == 1 and "witness_missing" in gone.stdout
