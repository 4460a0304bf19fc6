"""The append-only, hash-chained, checkpoint-signed audit log (SQLite, one writer).

Why each piece:

* **Hash chain** — each record's ``entry_hash`` covers the previous one's (:mod:`.record`), so an
  edit, a deletion or a reorder breaks every later link.
* **Signed checkpoints** — every ``checkpoint_every`` records and on :meth:`AuditLog.close`, the
  pair ``(seq, head hash)`` is signed with the data directory's Ed25519 key (:mod:`.keys`). They
  catch what a chain cannot: a cut-off tail, or a chain recomputed from the point of an edit.
  Checkpoints are chained too (``prev_checkpoint_hash``), so removing one in the middle shows.
  Records after the last checkpoint are *unsealed*; verify reports how many. A tail is also
  sealed once it has waited ``checkpoint_interval_s`` (a timer), so a quiet log does not keep
  its last records unsealed for hours. Pass ``witness_path`` to also append every checkpoint to a
  JSON-lines file on other storage: a verifier given that file catches a truncation that took the
  last checkpoint with it. The log records each witness it writes to (``witness:<path>`` in
  ``audit_meta``), so ``uns audit verify`` uses it without being told, and fails when it is gone.
* **One writer** — appends race on ``prev_hash``, so a process holds an exclusive ``flock`` on
  ``<db>.lock`` for the log's lifetime (a second writer fails at once with
  :class:`AuditLogBusyError`), appends are serialized by a lock and run in ``BEGIN IMMEDIATE``.
* **Append-only in SQLite** — triggers abort UPDATE and DELETE on every table. That stops
  mistakes and casual edits; someone who edits the file directly (or drops the triggers) is
  caught by :func:`uns.audit.verify.verify`, which does not trust the triggers.
* **Durability** — WAL with ``synchronous=FULL``: a record acknowledged is on disk; an audit
  trail that loses its last entries on power loss would be a truncation we caused ourselves.

The tables and checkpoints are defined in :mod:`.schema`; reads for services are in :mod:`.query`.
POSIX only (``fcntl``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..sqlite_tx import write_transaction
from .canonical import CanonicalizationError
from .ed25519 import key_id, public_key_text
from .errors import AuditError
from .keys import default_key_path, load_or_create_key
from .record import GENESIS_HASH, RECORD_SCHEMA, AuditEntry, AuditRecord, seal
from .schema import (
    APPEND_ONLY_TABLES,
    CHECKPOINT_SCHEMA,
    INSERT_CHECKPOINT,
    SCHEMA_SQL,
    SELECT_LAST_CHECKPOINT,
    WITNESS_META_PREFIX,
    Checkpoint,
    checkpoint_bytes,
    checkpoint_from_row,
    checkpoint_row,
    trigger_sql,
)
from .verify import verify_connection

log = logging.getLogger("uns.audit")


class AuditLogBusyError(AuditError):
    """Another process already writes this audit log."""


class AuditIntegrityError(AuditError):
    """The log failed verification when the writer opened it; appending would extend a broken chain."""


def system_now_ms() -> int:
    return time.time_ns() // 1_000_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), WAL, FULL sync."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


class AuditLog:
    """The single writer of one audit database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: Path, *, key_path: Path | None = None, checkpoint_every: int = 100,
                 clock: Callable[[], int] = system_now_ms, witness_path: Path | None = None,
                 verify_on_open: bool = True, checkpoint_interval_s: float | None = 60.0) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        if checkpoint_interval_s is not None and checkpoint_interval_s <= 0:
            raise ValueError("checkpoint_interval_s must be positive (or None: by count and at close only)")
        self.path = Path(path)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_s = checkpoint_interval_s
        self.witness_path = Path(witness_path).resolve() if witness_path is not None else None
        self._timer: threading.Timer | None = None
        if self.witness_path is not None:
            self.witness_path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey = load_or_create_key(key_path or default_key_path(self.path))
        self._public_text = public_key_text(self._key.public_key())
        self._key_id = key_id(self._key.public_key())
        self._lock_file = self._take_writer_lock()
        try:
            self._db = connect(self.path)
            self._init_schema()
            self.log_id = self._meta("log_id")
            if verify_on_open:
                self._verify_on_open()
            self._head_seq, self._head_hash = self._read_head()
            self._last_cp = self._read_last_checkpoint()
        except BaseException:
            self._release_writer_lock()
            raise
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------------

    def _take_writer_lock(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditLogBusyError(f"audit log {self.path} already has a writer (lock {self.path}.lock)") from None
        return fd

    def _release_writer_lock(self) -> None:
        fd, self._lock_file = getattr(self, "_lock_file", -1), -1
        if fd >= 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _init_schema(self) -> None:
        db = self._db
        with write_transaction(db):
            for statement in SCHEMA_SQL:
                db.execute(statement)
            for table in APPEND_ONLY_TABLES:
                for statement in trigger_sql(table):
                    db.execute(statement)
            if db.execute("SELECT value FROM audit_meta WHERE key='log_id'").fetchone() is None:
                db.executemany("INSERT INTO audit_meta(key, value) VALUES (?, ?)", [
                    ("log_id", str(uuid.uuid4())), ("created_ms", str(self._clock())), ("schema", RECORD_SCHEMA),
                    ("checkpoint_public_key", self._public_text),
                ])
            if self.witness_path is not None:  # verify finds it without being told (and misses it if gone)
                # the file exists from the moment the log names it, not from its first checkpoint: a
                # log verified before that checkpoint is intact, and a missing file always means removed
                self._touch_witness()
                db.execute("INSERT OR IGNORE INTO audit_meta(key, value) VALUES (?, ?)",
                           (f"{WITNESS_META_PREFIX}{self.witness_path}", str(self._clock())))

    def _verify_on_open(self) -> None:
        report = verify_connection(self._db, self.path, public_key=self._key.public_key(),
                                   key_source="writer key")
        if not report.ok:
            raise AuditIntegrityError(f"audit log {self.path} is broken, refusing to append: {report.summary()}")

    def _meta(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM audit_meta WHERE key=?", (key,)).fetchone()
        if row is None:
            raise AuditIntegrityError(f"audit log {self.path} has no {key!r} in audit_meta")
        return str(row[0])

    def _read_head(self) -> tuple[int, str]:
        row = self._db.execute("SELECT seq, entry_hash FROM audit_record ORDER BY seq DESC LIMIT 1").fetchone()
        return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))

    def _read_last_checkpoint(self) -> Checkpoint | None:
        row = self._db.execute(SELECT_LAST_CHECKPOINT).fetchone()
        return None if row is None else checkpoint_from_row(row)

    def close(self) -> None:
        """Seal the tail with a checkpoint, then release the database and the writer lock."""
        if getattr(self, "_closed", True):
            return
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        try:
            self.checkpoint()
        finally:
            self._closed = True
            self._db.close()
            self._release_writer_lock()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, entry_hash)`` of the newest record; ``(0, GENESIS_HASH)`` when empty."""
        return self._head_seq, self._head_hash

    def append(self, entry: AuditEntry) -> AuditRecord:
        """Chain, store and return one record; checkpoints when ``checkpoint_every`` is reached.

        Raises :class:`~uns.audit.canonical.CanonicalizationError` if a value is not JSON
        (nothing is written then).
        """
        with self._lock:
            self._check_open()
            seq = self._head_seq + 1
            record, body = seal(entry, seq=seq, event_id=str(uuid.uuid4()), ts_ms=self._clock(),
                                prev_hash=self._head_hash)
            db = self._db
            with write_transaction(db):
                db.execute(
                    "INSERT INTO audit_record(seq, ts_ms, event, command_id, body, prev_hash, entry_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, record.ts_ms, record.event.value, record.command_id, body.decode("utf-8"),
                     record.prev_hash, record.entry_hash))
            self._head_seq, self._head_hash = seq, record.entry_hash
            last_sealed = self._last_cp.seq if self._last_cp else 0
            if seq - last_sealed >= self.checkpoint_every:
                self._checkpoint_locked()
            else:
                self._arm_timer()
            return record

    def _arm_timer(self) -> None:
        """Seal this tail after ``checkpoint_interval_s`` unless a checkpoint comes first.

        Why a timer and not only a count: a line that issues three commands a day would otherwise
        leave them unsealed until the hundredth or the next clean stop, and an unsealed tail is the
        one part of the log a cut cannot be proven on."""
        if self.checkpoint_interval_s is None or self._timer is not None:
            return
        timer = threading.Timer(self.checkpoint_interval_s, self._timed_checkpoint)
        timer.daemon = True
        self._timer = timer
        timer.start()

    def _timed_checkpoint(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed:
                return
            try:
                self._checkpoint_locked()
            except (sqlite3.Error, OSError) as exc:  # the next append or close tries again
                log.error("audit log %s: timed checkpoint failed: %s", self.path, exc)

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now; None if nothing was appended since the last checkpoint."""
        with self._lock:
            self._check_open()
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> Checkpoint | None:
        last = self._last_cp
        if self._head_seq == 0 or (last is not None and last.seq == self._head_seq):
            return None
        number = (last.number if last else 0) + 1
        prev = last.checkpoint_hash(self.log_id) if last else GENESIS_HASH
        ts_ms = self._clock()
        message = checkpoint_bytes(self.log_id, number, self._head_seq, self._head_hash, ts_ms, prev)
        checkpoint = Checkpoint(number=number, seq=self._head_seq, head_hash=self._head_hash, ts_ms=ts_ms,
                                prev_checkpoint_hash=prev, key_id=self._key_id, public_key=self._public_text,
                                signature=base64.b64encode(self._key.sign(message)).decode("ascii"))
        db = self._db
        with write_transaction(db):
            db.execute(INSERT_CHECKPOINT, checkpoint_row(checkpoint))
        self._last_cp = checkpoint
        if self.witness_path is not None:
            self._witness(checkpoint)
        return checkpoint

    def _touch_witness(self) -> None:
        self._append_witness(b"")

    def _witness(self, checkpoint: Checkpoint) -> None:
        line = json.dumps({"log_id": self.log_id, **checkpoint.model_dump()}, sort_keys=True) + "\n"
        self._append_witness(line.encode("utf-8"))

    def _append_witness(self, data: bytes) -> None:
        """Append ``data`` (nothing: create the file) to the witness, durable before returning."""
        fd = os.open(self.witness_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # type: ignore[arg-type]
        try:
            if data:
                os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_open(self) -> None:
        if self._closed:
            raise AuditError(f"audit log {self.path} is closed")


__all__ = [
    "APPEND_ONLY_TABLES", "CHECKPOINT_SCHEMA", "WITNESS_META_PREFIX", "AuditError", "AuditIntegrityError", "AuditLog",
    "AuditLogBusyError", "CanonicalizationError", "Checkpoint", "checkpoint_bytes", "checkpoint_from_row", "connect",
]
