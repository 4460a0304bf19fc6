"""The stored contract of an audit database: tables, triggers, meta keys and checkpoints.

Why a module of its own: the writer (:mod:`.chain`) creates these tables, the verifier
(:mod:`.verify`) and the readers (:mod:`.query`) read them, and none of them should import
another to learn what a column is called. Everything here is data and pure functions, no I/O.

Tables: ``audit_record(seq, ts_ms, event, command_id, body, prev_hash, entry_hash)`` where ``body``
is the canonical JSON that was hashed (the other columns are index copies that verify compares
with it), ``audit_checkpoint(number, seq, head_hash, ts_ms, prev_checkpoint_hash, key_id,
public_key, signature)``, ``audit_meta(key, value)`` (``log_id``, ``created_ms``, ``schema``,
``checkpoint_public_key``, ``witness:<path>``). The record body's schema id is
:data:`uns.audit.record.RECORD_SCHEMA` (stored in ``audit_meta.schema``); a checkpoint signs
:func:`checkpoint_bytes` under :data:`CHECKPOINT_SCHEMA`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .canonical import canonical_json, sha256_hex
from .record import RECORD_SCHEMA

CHECKPOINT_SCHEMA = "uns-hub.audit.checkpoint.v1"
#: ``audit_meta`` keys ``witness:<absolute path>``: every witness file this log has written to
WITNESS_META_PREFIX = "witness:"

SCHEMA_SQL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS audit_record (
        seq INTEGER PRIMARY KEY,
        ts_ms INTEGER NOT NULL,
        event TEXT NOT NULL,
        command_id TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        entry_hash TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_record_command ON audit_record(command_id)",
    """CREATE TABLE IF NOT EXISTS audit_checkpoint (
        number INTEGER PRIMARY KEY,
        seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        ts_ms INTEGER NOT NULL,
        prev_checkpoint_hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signature TEXT NOT NULL)""",
)

APPEND_ONLY_TABLES = ("audit_record", "audit_checkpoint", "audit_meta")

#: the checkpoint columns in :class:`Checkpoint` field order (what :func:`checkpoint_from_row` takes)
CHECKPOINT_COLUMNS = "number, seq, head_hash, ts_ms, prev_checkpoint_hash, key_id, public_key, signature"
SELECT_CHECKPOINTS = f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY number"
SELECT_LAST_CHECKPOINT = f"SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY number DESC LIMIT 1"
INSERT_CHECKPOINT = f"INSERT INTO audit_checkpoint({CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def trigger_sql(table: str) -> tuple[str, str]:
    """The two triggers that make ``table`` append-only."""
    return tuple(  # type: ignore[return-value]
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op.upper()} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'audit log is append-only: {op.upper()} on {table} refused'); END"
        for op in ("update", "delete")
    )


class Checkpoint(BaseModel):
    """A signed statement: the chain up to ``seq`` ends in ``head_hash``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int
    seq: int
    head_hash: str
    ts_ms: int
    prev_checkpoint_hash: str
    key_id: str
    public_key: str
    signature: str

    def signed_bytes(self, log_id: str) -> bytes:
        return checkpoint_bytes(log_id, self.number, self.seq, self.head_hash, self.ts_ms, self.prev_checkpoint_hash)

    def checkpoint_hash(self, log_id: str) -> str:
        """What the next checkpoint's ``prev_checkpoint_hash`` holds."""
        return sha256_hex(self.signed_bytes(log_id))


def checkpoint_bytes(log_id: str, number: int, seq: int, head_hash: str, ts_ms: int,
                     prev_checkpoint_hash: str) -> bytes:
    return canonical_json({"schema": CHECKPOINT_SCHEMA, "log_id": log_id, "number": number, "seq": seq,
                           "head_hash": head_hash, "ts_ms": ts_ms, "prev_checkpoint_hash": prev_checkpoint_hash})


def checkpoint_row(cp: Checkpoint) -> tuple[Any, ...]:
    return (cp.number, cp.seq, cp.head_hash, cp.ts_ms, cp.prev_checkpoint_hash, cp.key_id, cp.public_key, cp.signature)


def checkpoint_from_row(row: tuple[Any, ...]) -> Checkpoint:
    number, seq, head_hash, ts_ms, prev, kid, public_key, signature = row
    return Checkpoint(number=number, seq=seq, head_hash=head_hash, ts_ms=ts_ms, prev_checkpoint_hash=prev,
                      key_id=kid, public_key=public_key, signature=signature)


__all__ = [
    "APPEND_ONLY_TABLES", "CHECKPOINT_COLUMNS", "CHECKPOINT_SCHEMA", "INSERT_CHECKPOINT", "RECORD_SCHEMA", "SCHEMA_SQL",
    "SELECT_CHECKPOINTS", "SELECT_LAST_CHECKPOINT", "WITNESS_META_PREFIX", "Checkpoint", "checkpoint_bytes",
    "checkpoint_from_row", "checkpoint_row", "trigger_sql",
]
