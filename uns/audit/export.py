"""Write an audit log as a file a reviewer can read (Annex 11 §9 "intelligible form", §8 printouts
showing whether data changed since entry).

Every export runs :func:`uns.audit.verify.verify` first and carries its verdict:

* JSON: ``{"export": {...}, "verify": <VerifyReport>, "checkpoints": [...], "records": [...]}``;
  each record is the hashed body plus ``entry_hash`` and ``verify_status``;
* CSV: ``#``-prefixed lines with the verdict first (pandas: ``comment="#"``), then one row per
  record, ``target`` and ``signatures`` flattened, and a ``verify_status`` column.

``verify_status`` per record: ``sealed`` (chain intact and covered by a good checkpoint),
``unsealed`` (chain intact, after the last checkpoint), ``BROKEN`` (at or after the first
finding: from there on nothing can be vouched for).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .chain import system_now_ms
from .errors import AuditError
from .record import AuditEntry, AuditTarget
from .verify import VerifyReport, verify

EXPORT_SCHEMA = "uns-hub.audit.export.v1"


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


_TARGET_FIELDS = list(AuditTarget.model_fields)
_CSV_COLUMNS = (["verify_status", "seq", "ts_ms", "event_id", "schema"]
                + [name for name in AuditEntry.model_fields if name != "target"]
                + [f"target.{name}" for name in _TARGET_FIELDS] + ["prev_hash", "entry_hash"])


def export(path: Path, out: Path, fmt: ExportFormat | str = ExportFormat.JSON, *,
           public_key: Ed25519PublicKey | None = None, witness_path: Path | None = None) -> VerifyReport:
    """Verify ``path`` and write everything to ``out``; returns the verify report."""
    fmt = ExportFormat(fmt)
    report = verify(path, public_key=public_key, witness_path=witness_path)
    records = list(_records(Path(path), report))
    if fmt is ExportFormat.JSON:
        _write_json(Path(path), out, report, records)
    else:
        _write_csv(Path(path), out, report, records)
    return report


def _records(path: Path, report: VerifyReport) -> list[dict[str, Any]]:
    broken_from = report.first_broken_seq if not report.ok else None
    if not report.ok and broken_from is None:
        broken_from = 0  # the log as a whole is broken: vouch for nothing
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot open: {exc}") from None
    out = []
    try:
        rows = db.execute("SELECT seq, body, entry_hash FROM audit_record ORDER BY seq")
        for seq, body, entry_hash in rows:
            try:
                record = json.loads(body)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except (TypeError, ValueError):
                record = {"seq": seq, "unreadable_body": str(body)}
            record["entry_hash"] = entry_hash
            if broken_from is not None and seq >= broken_from:
                record["verify_status"] = "BROKEN"
            elif seq <= report.sealed_through_seq:
                record["verify_status"] = "sealed"
            else:
                record["verify_status"] = "unsealed"
            out.append(record)
    except sqlite3.Error:
        pass  # verify already reported the log as malformed; export what could be read
    finally:
        db.close()
    return out


def _header(path: Path, report: VerifyReport) -> dict[str, Any]:
    return {"schema": EXPORT_SCHEMA, "source": str(path), "exported_at_ms": system_now_ms(),
            "verdict": report.summary()}


def _write_json(path: Path, out: Path, report: VerifyReport, records: list[dict[str, Any]]) -> None:
    checkpoints = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cols = ["number", "seq", "head_hash", "ts_ms", "prev_checkpoint_hash", "key_id", "public_key", "signature"]
            checkpoints = [dict(zip(cols, row, strict=True)) for row in db.execute(
                f"SELECT {', '.join(cols)} FROM audit_checkpoint ORDER BY number")]
        finally:
            db.close()
    except sqlite3.Error:
        pass
    document = {"export": _header(path, report), "verify": report.model_dump(mode="json"),
                "checkpoints": checkpoints, "records": records}
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_csv(path: Path, out: Path, report: VerifyReport, records: list[dict[str, Any]]) -> None:
    with out.open("w", encoding="utf-8", newline="") as handle:
        header = _header(path, report)
        for key in ("schema", "source", "exported_at_ms", "verdict"):
            handle.write(f"# {key}: {header[key]}\n")
        for finding in report.findings:
            handle.write(f"# finding: {finding.describe()}\n")
        for warning in report.warnings:
            handle.write(f"# warning: {warning}\n")
        writer = csv.DictWriter(handle, fieldnames=_CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for record in records:
            writer.writerow(_flatten(record))


def _flatten(record: dict[str, Any]) -> dict[str, str]:
    row: dict[str, str] = {}
    for key, value in record.items():
        if key == "target" and isinstance(value, dict):
            for name, item in value.items():
                row[f"target.{name}"] = _cell(item)
        else:
            row[key] = _cell(value)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


__all__ = ["EXPORT_SCHEMA", "ExportFormat", "export"]
