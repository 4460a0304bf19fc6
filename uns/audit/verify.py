"""Walk an audit log from genesis and name the first record that is not what was written.

Trusts nothing in the file: not the triggers (an attacker drops them), not the index columns
(compared with the hashed body), not the checkpoints' own public key (checked against a trust
anchor from outside the tables, see :func:`resolve_trust`).

Per record, in order: the seq is the next one (else **deleted**: a gap), the body is JSON in
canonical form and its ``seq`` is the row's (else **reordered**: moved, swapped or renumbered),
its ``prev_hash`` is the previous record's hash (else **chain_broken**: the previous record was
rewritten or this link was edited), its hash recomputes (else **edited**), and the index
columns equal the body (else **edited**).

Per checkpoint: numbered 1, 2, ... and chained (else **bad_checkpoint**: one was removed or
inserted), signed by the trusted key (else **bad_checkpoint**: forged or edited), its seq exists
(else **truncated**: records after the end of the log were cut off), and the record at its seq
still has the signed head hash (else **rewritten**: the chain was recomputed after an edit).

Records after the last good checkpoint are reported as ``unsealed_tail`` — a warning, not a
failure: nothing inside one file can prove that an unsealed tail was not cut (a witness file
can, see :class:`uns.audit.chain.AuditLog`).

Witnesses: :func:`verify` checks the witness it is given, else every witness the log says it has
written to (``witness:<path>`` rows of ``audit_meta``). A named witness that is missing or
unreadable is a finding, not a warning: a tail cut together with its last checkpoint is exactly
what it would have shown. A log whose witness rows were removed as well falls back to one file's
evidence, which is why an independent verification passes ``--witness`` explicitly.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from .canonical import CanonicalizationError, canonical_json
from .ed25519 import key_id, parse_public_key, public_key_text
from .errors import AuditError
from .keys import KEY_FILE, PUBLIC_FILE, AuditKeyError, load_key, load_public_key
from .record import GENESIS_HASH, record_hash
from .schema import SELECT_CHECKPOINTS, WITNESS_META_PREFIX, Checkpoint, checkpoint_bytes, checkpoint_from_row

#: stop listing findings after this many (the first one is what matters)
MAX_FINDINGS = 100


class Problem(StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    CHAIN_BROKEN = "chain_broken"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"
    BAD_CHECKPOINT = "bad_checkpoint"
    #: not an audit log, a table missing, a body that is not JSON
    MALFORMED = "malformed"
    #: the log names a witness file that is not there (a cut tail could hide behind it)
    WITNESS_MISSING = "witness_missing"


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    problem: Problem
    #: the first record affected (None when no record can be named)
    seq: int | None = None
    #: for a finding about a range (rewritten: "somewhere in seq..through_seq"), its end
    through_seq: int | None = None
    checkpoint: int | None = None
    message: str

    def describe(self) -> str:
        where = f"record seq {self.seq}" if self.seq is not None else "log"
        if self.checkpoint is not None:
            where += f" (checkpoint #{self.checkpoint})"
        return f"{where}: {self.problem.value}: {self.message}"


class VerifyReport(BaseModel):
    ok: bool
    path: str
    log_id: str | None = None
    records: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    head_hash: str = GENESIS_HASH
    checkpoints: int = 0
    #: highest seq covered by a valid checkpoint that still matches the records
    sealed_through_seq: int = 0
    unsealed_tail: int = 0
    witness_checkpoints: int = 0
    key_id: str | None = None
    key_source: str = ""
    findings: list[Finding] = []
    warnings: list[str] = []

    @property
    def first_broken(self) -> Finding | None:
        return self.findings[0] if self.findings else None

    @property
    def first_broken_seq(self) -> int | None:
        return self.findings[0].seq if self.findings else None

    def summary(self) -> str:
        if self.first_broken is not None:
            more = f" (+{len(self.findings) - 1} more findings)" if len(self.findings) > 1 else ""
            return f"BROKEN at {self.first_broken.describe()}{more}"
        return (f"OK: {self.records} records (seq {self.first_seq or 0}..{self.last_seq}), {self.checkpoints} "
                f"checkpoints, sealed through seq {self.sealed_through_seq}, {self.unsealed_tail} unsealed")


# -------------------------------------------------------------------------------------- entry


def verify(path: Path, *, public_key: Ed25519PublicKey | None = None, witness_path: Path | None = None) -> VerifyReport:
    """Verify the audit database at ``path``; :class:`AuditError` only if it cannot be opened at all."""
    path = Path(path)
    if not path.is_file():
        raise AuditError(f"{path}: no such audit log")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot open: {exc}") from None
    try:
        key, source, warnings = resolve_trust(path, public_key)
        witnesses = [Path(witness_path)] if witness_path is not None else recorded_witnesses(db)
        missing = [w for w in witnesses if not w.is_file()]
        present = [w for w in witnesses if w.is_file()]
        report = verify_connection(db, path, public_key=key, key_source=source,
                                   witness_path=present[-1] if present else None)
    finally:
        db.close()
    for gone in missing:
        report.findings.append(Finding(
            problem=Problem.WITNESS_MISSING,
            message=f"witness file {gone} (named by the log) is missing: a cut tail and its checkpoint "
                    "cannot be ruled out; restore the witness or pass the right one with --witness"))
        report.ok = False
    report.warnings[:0] = warnings
    return report


def recorded_witnesses(db: sqlite3.Connection) -> list[Path]:
    """The witness files the writer recorded in ``audit_meta``, oldest first."""
    try:
        rows = db.execute("SELECT key FROM audit_meta WHERE key LIKE ? ORDER BY rowid",
                          (f"{WITNESS_META_PREFIX}%",)).fetchall()
    except sqlite3.Error:
        return []
    return [Path(str(row[0])[len(WITNESS_META_PREFIX):]) for row in rows]


def resolve_trust(path: Path, given: Ed25519PublicKey | None) -> tuple[Ed25519PublicKey | None, str, list[str]]:
    """Which key checkpoints must carry: given > ``.pub`` beside the log > key beside the log > none."""
    if given is not None:
        return given, "given public key", []
    pub = path.parent / PUBLIC_FILE
    if pub.is_file():
        return load_public_key(pub), f"{PUBLIC_FILE} beside the log", [
            "the trusted key sits beside the log it verifies; pass the off-box copy (--public-key) for an "
            "independent verification"]
    key = path.parent / KEY_FILE
    if key.is_file():
        try:
            return load_key(key).public_key(), f"{KEY_FILE} beside the log", []
        except AuditKeyError as exc:
            return None, "", [str(exc)]
    return None, "", []


def verify_connection(db: sqlite3.Connection, path: Path, *, public_key: Ed25519PublicKey | None, key_source: str,
                      witness_path: Path | None = None) -> VerifyReport:
    """The walk itself, on an open connection (the writer runs it on open)."""
    report = VerifyReport(ok=False, path=str(path), key_source=key_source)
    findings: list[Finding] = []
    try:
        log_id = _meta(db, "log_id")
        checkpoints = [checkpoint_from_row(row) for row in db.execute(SELECT_CHECKPOINTS)]
        if public_key is None:
            stored = _meta(db, "checkpoint_public_key")
            public_key = parse_public_key(stored) if stored else None
            report.key_source = "the log itself"
            report.warnings.append("no key outside the log: checkpoints were checked against the key the log "
                                   "names, so a full rewrite with a new key would pass; pass --public-key")
        witness = _read_witness(witness_path, log_id, findings) if witness_path is not None else []
        needed = {cp.seq for cp in checkpoints} | {cp.seq for cp in witness}
        hashes = _walk_records(db, report, findings, needed)
    except (sqlite3.Error, ValueError) as exc:
        findings.append(Finding(problem=Problem.MALFORMED, message=f"not a readable uns-hub audit log: {exc}"))
        return _finish(report, findings)
    report.log_id = log_id
    report.key_id = key_id(public_key) if public_key is not None else None
    report.checkpoints = len(checkpoints)
    report.witness_checkpoints = len(witness)
    sealed = _check_checkpoints(checkpoints, log_id, public_key, hashes, report.last_seq, findings, "log")
    if witness:
        by_number = {cp.number: cp for cp in checkpoints}
        for cp in witness:
            if cp.number not in by_number:
                findings.append(Finding(problem=Problem.BAD_CHECKPOINT, seq=min(cp.seq, report.last_seq + 1),
                                        checkpoint=cp.number,
                                        message=f"checkpoint #{cp.number} (seq {cp.seq}) is in the witness file "
                                                "but was removed from the log"))
        sealed = max(sealed, _check_checkpoints(witness, log_id, public_key, hashes, report.last_seq, findings,
                                                "witness", chained=False))
    report.sealed_through_seq = sealed
    report.unsealed_tail = max(0, report.last_seq - sealed)
    if report.unsealed_tail and not findings:
        report.warnings.append(f"{report.unsealed_tail} record(s) after the last checkpoint (seq {sealed}) are "
                               "unsealed: a cut there cannot be detected without a witness")
    return _finish(report, findings)


def _finish(report: VerifyReport, findings: list[Finding]) -> VerifyReport:
    # a range finding only bounds where a rewrite happened; a record finding inside it is more precise
    exact = [f.seq for f in findings if f.seq is not None and f.through_seq is None]
    findings = [f for f in findings if f.through_seq is None or f.seq is None
                or not any(f.seq <= seq <= f.through_seq for seq in exact)]
    findings.sort(key=lambda f: (f.seq if f.seq is not None else float("inf")))
    report.findings = findings[:MAX_FINDINGS]
    report.ok = not findings
    return report


def _meta(db: sqlite3.Connection, key: str) -> str:
    row = db.execute("SELECT value FROM audit_meta WHERE key=?", (key,)).fetchone()
    if row is None:
        raise ValueError(f"audit_meta has no {key!r}")
    return str(row[0])


# ------------------------------------------------------------------------------------ records


def _walk_records(db: sqlite3.Connection, report: VerifyReport, findings: list[Finding],
                  needed: set[int]) -> dict[int, str]:
    """Check every record; return the stored hashes at the seqs checkpoints name."""
    expected, prev = 1, GENESIS_HASH
    hashes: dict[int, str] = {}
    rows = db.execute("SELECT seq, ts_ms, event, command_id, body, prev_hash, entry_hash FROM audit_record "
                      "ORDER BY seq")
    for seq, ts_ms, event, command_id, body, prev_col, hash_col in rows:
        report.records += 1
        if report.first_seq is None:
            report.first_seq = seq
        if seq != expected:
            findings.append(Finding(problem=Problem.DELETED, seq=expected,
                                    message=f"record(s) {_span(expected, seq - 1)} missing (seq gap before "
                                            f"seq {seq})"))
        problem = _check_record(seq, ts_ms, event, command_id, body, prev_col, hash_col, prev)
        if problem is not None:
            findings.append(problem)
        if seq in needed:
            hashes[seq] = str(hash_col)
        prev, expected = str(hash_col), seq + 1
        report.last_seq = seq
    report.head_hash = prev
    return hashes


def _check_record(seq: int, ts_ms: Any, event: Any, command_id: Any, body: Any, prev_col: Any, hash_col: Any,
                  prev: str) -> Finding | None:
    def found(problem: Problem, message: str, at: int = seq) -> Finding:
        return Finding(problem=problem, seq=at, message=message)

    if not isinstance(body, str):
        return found(Problem.EDITED, "body is not text")
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as exc:
        return found(Problem.EDITED, f"body is not JSON ({exc.msg})")
    if not isinstance(parsed, dict):
        return found(Problem.EDITED, "body is not a JSON object")
    try:
        canonical = canonical_json(parsed).decode("utf-8") == body
    except CanonicalizationError:
        canonical = False
    if parsed.get("seq") != seq:
        return found(Problem.REORDERED, f"the record stored at seq {seq} says it is seq {parsed.get('seq')!r}: "
                                        "records were moved, swapped, inserted or renumbered")
    if parsed.get("prev_hash") != prev_col:
        return found(Problem.EDITED, "prev_hash column differs from the hashed body")
    if prev_col != prev:
        at = max(seq - 1, 1)
        return found(Problem.CHAIN_BROKEN, f"record {seq} links to prev_hash {str(prev_col)[:16]}…, but record "
                                           f"{seq - 1} hashes to {prev[:16]}…: record {seq - 1} was rewritten "
                                           f"(or this link edited)", at)
    if not isinstance(hash_col, str) or record_hash(prev, body.encode("utf-8")) != hash_col:
        return found(Problem.EDITED, "content does not match its hash: the record was edited after it was written")
    if not canonical:
        return found(Problem.EDITED, "body is not in canonical JSON form: written by something other than the log")
    for column, value in (("ts_ms", ts_ms), ("event", event), ("command_id", command_id)):
        if parsed.get(column) != value:
            return found(Problem.EDITED, f"column {column} is {value!r} but the hashed record says "
                                         f"{parsed.get(column)!r}")
    return None


def _span(first: int, last: int) -> str:
    return f"seq {first}" if first == last else f"seq {first}..{last}"


# -------------------------------------------------------------------------------- checkpoints


def _check_checkpoints(checkpoints: list[Checkpoint], log_id: str, trusted: Ed25519PublicKey | None,
                       hashes: dict[int, str], last_seq: int, findings: list[Finding], where: str,
                       chained: bool = True) -> int:
    """Check checkpoints in number order; return the highest seq a good one seals."""
    sealed, prev_hash, prev_seq, expected_number = 0, GENESIS_HASH, 0, 1
    trusted_text = public_key_text(trusted) if trusted is not None else None
    for cp in checkpoints:
        def bad(message: str, problem: Problem = Problem.BAD_CHECKPOINT, seq: int | None = None,
                through: int | None = None, cp: Checkpoint = cp) -> None:
            findings.append(Finding(problem=problem, seq=cp.seq if seq is None else seq, through_seq=through,
                                    checkpoint=cp.number, message=f"{where} checkpoint #{cp.number}: {message}"))

        if chained and cp.number != expected_number:
            bad(f"expected checkpoint #{expected_number}: checkpoint(s) were removed or inserted")
        if trusted is None:
            bad("no public key to check the signature with")
            continue
        if cp.public_key != trusted_text:
            bad(f"signed by key {cp.key_id}, not the trusted key {key_id(trusted)}: forged checkpoint")
            continue
        try:
            trusted.verify(base64.b64decode(cp.signature, validate=True),
                           checkpoint_bytes(log_id, cp.number, cp.seq, cp.head_hash, cp.ts_ms, cp.prev_checkpoint_hash))
        except (InvalidSignature, binascii.Error, ValueError):
            bad("signature does not verify: the checkpoint was forged or edited")
            continue
        if chained and cp.prev_checkpoint_hash != prev_hash:
            bad("does not chain to the previous checkpoint: a checkpoint was removed or replaced")
        if cp.seq < prev_seq:
            bad(f"covers seq {cp.seq}, less than the previous checkpoint's {prev_seq}")
        if cp.seq > last_seq:
            bad(f"covers seq {cp.seq} but the log ends at seq {last_seq}: record(s) {_span(last_seq + 1, cp.seq)} "
                "cut off", Problem.TRUNCATED, last_seq + 1)
        elif hashes.get(cp.seq) != cp.head_hash:
            bad(f"signed head hash {cp.head_hash[:16]}… at seq {cp.seq}, the record there now hashes to "
                f"{str(hashes.get(cp.seq))[:16]}…: some record in {_span(prev_seq + 1, cp.seq)} was rewritten",
                Problem.REWRITTEN, prev_seq + 1, cp.seq)
        else:
            sealed = max(sealed, cp.seq)
        prev_hash, prev_seq, expected_number = cp.checkpoint_hash(log_id), max(prev_seq, cp.seq), cp.number + 1
    return sealed


def _read_witness(path: Path, log_id: str, findings: list[Finding]) -> list[Checkpoint]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"witness file {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if obj.pop("log_id", None) != log_id:
                continue  # another log's witness sharing the file
            out.append(Checkpoint.model_validate(obj))
        except (json.JSONDecodeError, ValidationError, AttributeError) as exc:
            findings.append(Finding(problem=Problem.MALFORMED, message=f"witness file {path}:{number}: {exc}"))
    return out


__all__ = ["MAX_FINDINGS", "Finding", "Problem", "VerifyReport", "recorded_witnesses", "resolve_trust", "verify",
           "verify_connection"]
