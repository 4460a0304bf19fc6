"""Someone with the file edits, deletes, reorders, truncates or forges: verify names where."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from uns.audit.canonical import canonical_json
from uns.audit.chain import checkpoint_bytes
from uns.audit.ed25519 import key_id, public_key_text
from uns.audit.keys import load_public_key
from uns.audit.record import record_hash
from uns.audit.verify import Problem, VerifyReport, verify

from .conftest import Fill, attacker


def _broken(path: Path, **kwargs: object) -> VerifyReport:
    report = verify(path, **kwargs)  # type: ignore[arg-type]
    assert not report.ok and report.first_broken is not None, report.summary()
    return report


def _rehash_from(db: sqlite3.Connection, start: int) -> None:
    """Recompute every hash from ``start`` on, as a careful attacker would."""
    prev = db.execute("SELECT entry_hash FROM audit_record WHERE seq=?", (start - 1,)).fetchone()
    prev_hash = prev[0] if prev else "0" * 64
    for seq, body in db.execute("SELECT seq, body FROM audit_record WHERE seq>=? ORDER BY seq", (start,)).fetchall():
        record = json.loads(body)
        record["prev_hash"] = prev_hash
        new_body = canonical_json(record)
        prev_hash = record_hash(prev_hash, new_body)
        db.execute("UPDATE audit_record SET body=?, prev_hash=?, entry_hash=? WHERE seq=?",
                   (new_body.decode(), record["prev_hash"], prev_hash, seq))


def test_untouched_log_verifies(fill: Fill) -> None:
    report = verify(fill(12))
    assert report.ok and report.records == 12 and report.first_broken_seq is None


def test_edited_field(fill: Fill) -> None:
    path = fill(12)
    with attacker(path) as db:
        db.execute("UPDATE audit_record SET body=replace(body, '\"requested_value\":106', '\"requested_value\":600') "
                   "WHERE seq=7")
    report = _broken(path)
    assert report.first_broken_seq == 7 and report.first_broken.problem is Problem.EDITED  # type: ignore[union-attr]


def test_edited_index_column(fill: Fill) -> None:
    path = fill(8)
    with attacker(path) as db:
        db.execute("UPDATE audit_record SET event='readback_ok' WHERE seq=3")
    report = _broken(path)
    assert report.first_broken_seq == 3 and "column event" in report.first_broken.message  # type: ignore[union-attr]


def test_edited_record_with_its_hash_recomputed(fill: Fill) -> None:
    path = fill(12)
    with attacker(path) as db:
        row = db.execute("SELECT body, prev_hash FROM audit_record WHERE seq=4").fetchone()
        record = json.loads(row[0])
        record["actor_user_id"] = "mallory"
        body = canonical_json(record)
        db.execute("UPDATE audit_record SET body=?, entry_hash=? WHERE seq=4",
                   (body.decode(), record_hash(row[1], body)))
    report = _broken(path)
    assert report.first_broken_seq == 4 and report.first_broken.problem is Problem.CHAIN_BROKEN  # type: ignore[union-attr]


def test_whole_chain_recomputed_after_an_edit_is_caught_by_checkpoints(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5)
    with attacker(path) as db:
        row = db.execute("SELECT body FROM audit_record WHERE seq=8").fetchone()
        db.execute("UPDATE audit_record SET body=? WHERE seq=8", (row[0].replace("alice", "mallory"),))
        _rehash_from(db, 8)
    report = _broken(path)
    first = report.first_broken
    assert first is not None and first.problem is Problem.REWRITTEN and first.checkpoint == 2
    assert report.first_broken_seq == 6  # somewhere after checkpoint #1 (seq 5), up to seq 10
    assert "some record in seq 6..10 was rewritten" in first.message


def test_deleted_record(fill: Fill) -> None:
    path = fill(12)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq=6")
    report = _broken(path)
    assert report.first_broken_seq == 6 and report.first_broken.problem is Problem.DELETED  # type: ignore[union-attr]
    assert "record(s) seq 6 missing" in report.first_broken.message  # type: ignore[union-attr]


def test_deleted_first_record(fill: Fill) -> None:
    path = fill(4)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq=1")
    assert _broken(path).first_broken_seq == 1


def test_deleted_and_renumbered(fill: Fill) -> None:
    path = fill(12)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq=6")
        db.execute("UPDATE audit_record SET seq=seq-1 WHERE seq>6")
    report = _broken(path)
    assert report.first_broken_seq == 6 and report.first_broken.problem is Problem.REORDERED  # type: ignore[union-attr]


def test_swapped_records(fill: Fill) -> None:
    path = fill(12)
    with attacker(path) as db:
        db.execute("UPDATE audit_record SET seq=-1 WHERE seq=4")
        db.execute("UPDATE audit_record SET seq=4 WHERE seq=5")
        db.execute("UPDATE audit_record SET seq=5 WHERE seq=-1")
    report = _broken(path)
    assert report.first_broken_seq == 4 and report.first_broken.problem is Problem.REORDERED  # type: ignore[union-attr]


def test_truncated_tail(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq>9")
    report = _broken(path)
    first = report.first_broken
    assert first is not None and first.problem is Problem.TRUNCATED and report.first_broken_seq == 10
    assert "covers seq 10 but the log ends at seq 9: record(s) seq 10 cut off" in first.message


def test_truncated_with_its_checkpoints_needs_the_witness(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5, witness=True)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_record WHERE seq>10")
        db.execute("DELETE FROM audit_checkpoint WHERE number=3")
    # the log names its witness, so verify consults it without being told (issue 13: fail, not warn)
    report = _broken(path)
    assert report.first_broken_seq == 11 and report.first_broken.checkpoint == 3  # type: ignore[union-attr]
    with attacker(path) as db:  # a careful attacker also removes the witness's name ...
        db.execute("DELETE FROM audit_meta WHERE key LIKE 'witness:%'")
    assert verify(path).ok  # ... and one file alone is indistinguishable from a log that ended at seq 10 ...
    report = _broken(path, witness_path=path.parent / "witness.jsonl")  # ... unless the verifier brings the witness
    assert report.first_broken_seq == 11 and report.first_broken.checkpoint == 3  # type: ignore[union-attr]


def test_missing_witness_named_by_the_log_fails(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5, witness=True)
    (path.parent / "witness.jsonl").unlink()
    report = _broken(path)
    assert report.first_broken.problem is Problem.WITNESS_MISSING  # type: ignore[union-attr]
    assert str(path.parent / "witness.jsonl") in report.first_broken.message  # type: ignore[union-attr]


def test_unsealed_tail_is_a_warning(fill: Fill) -> None:
    report = verify(fill(7, checkpoint_every=5, close=False))
    assert report.ok and report.unsealed_tail == 2 and any("unsealed" in w for w in report.warnings)


def test_forged_checkpoint_edit(fill: Fill) -> None:
    path = fill(12, checkpoint_every=5)
    with attacker(path) as db:
        db.execute("UPDATE audit_checkpoint SET seq=4 WHERE number=1")
    report = _broken(path)
    first = report.first_broken
    assert first is not None and first.problem is Problem.BAD_CHECKPOINT and first.checkpoint == 1
    assert "does not verify" in first.message


def test_forged_checkpoint_with_attacker_key_after_full_rewrite(fill: Fill) -> None:
    """The attacker rewrites everything and re-signs with a key of their own: the trusted key says no."""
    path = fill(12, checkpoint_every=5)
    trusted = load_public_key(path.parent / "audit-checkpoint.pub")
    mallory = Ed25519PrivateKey.generate()
    with attacker(path) as db:
        db.execute("UPDATE audit_record SET body=replace(body, 'alice', 'mallory') WHERE seq=2")
        _rehash_from(db, 2)
        log_id = db.execute("SELECT value FROM audit_meta WHERE key='log_id'").fetchone()[0]
        db.execute("DELETE FROM audit_checkpoint")
        head = db.execute("SELECT entry_hash FROM audit_record WHERE seq=12").fetchone()[0]
        message = checkpoint_bytes(log_id, 1, 12, head, 1, "0" * 64)
        db.execute("INSERT INTO audit_checkpoint VALUES (1, 12, ?, 1, ?, ?, ?, ?)",
                   (head, "0" * 64, key_id(mallory.public_key()), public_key_text(mallory.public_key()),
                    base64.b64encode(mallory.sign(message)).decode()))
        db.execute("UPDATE audit_meta SET value=? WHERE key='checkpoint_public_key'",
                   (public_key_text(mallory.public_key()),))
    report = _broken(path, public_key=trusted)
    assert report.first_broken.problem is Problem.BAD_CHECKPOINT  # type: ignore[union-attr]
    assert "not the trusted key" in report.first_broken.message  # type: ignore[union-attr]


def test_removed_middle_checkpoint(fill: Fill) -> None:
    path = fill(16, checkpoint_every=5)
    with attacker(path) as db:
        db.execute("DELETE FROM audit_checkpoint WHERE number=2")
    report = _broken(path)
    assert report.first_broken.problem is Problem.BAD_CHECKPOINT  # type: ignore[union-attr]
    assert "removed or inserted" in report.first_broken.message  # type: ignore[union-attr]


def test_not_an_audit_log(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE x(y)")
    report = _broken(path)
    assert report.first_broken.problem is Problem.MALFORMED  # type: ignore[union-attr]
