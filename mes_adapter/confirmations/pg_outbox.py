"""The outbox in PostgreSQL, shared by several adapter instances: each confirmation posted by one at a time.

The same rules and interface as the SQLite :class:`~mes_adapter.confirmations.outbox.Outbox` (idempotent
enqueue by ``confirmation_id``, exact body bytes, durable status), plus **row claims**: a sender takes due
entries with :meth:`PostgresOutbox.claim_due`, which marks them claimed by this instance until
``now + claim_ms`` in the same statement that selects them (``FOR UPDATE SKIP LOCKED``: two instances
claiming at the same moment take different rows, neither waits). Another instance does not see a claimed
entry until its claim expires, so an entry is posted by one instance at a time; if the claiming
instance dies (or hangs) before recording the outcome, the claim runs out and another instance posts the
entry, with the same body and ``Idempotency-Key``. The outcome (:meth:`mark_delivered`,
:meth:`mark_failed`) clears the claim and is recorded only while the entry is still pending, so a slow
instance whose claim expired cannot turn a delivered entry back into a pending one.

``claim_ms`` must outlast one delivery attempt (the request timeout) with room to spare: a claim that
expires while its POST is still in flight lets a second instance post the same entry (the MES then sees
the key twice). Times are the instances' own clocks (like ``next_attempt_ms``): keep them in sync (NTP)
to well under ``claim_ms``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from mes_adapter.confirmations.outbox import (
    _COLUMNS,
    DeliveryStatus,
    EnqueueResult,
    OutboxEntry,
    _entry,
    counts_of,
    enqueue_row,
    entry_filters,
    windows_of,
)
from mes_adapter.confirmations.planning import ConfirmedWindow, ProductionConfirmation, canonical_json
from mes_adapter.errors import OutboxConflictError, UnknownConfirmationError
from mes_adapter.pg_schema import Migration, migrate
from mes_adapter.timefmt import now_ms

STORE = "outbox"
MIGRATIONS: list[Migration] = [
    """
    CREATE TABLE mes_outbox (
        seq bigserial UNIQUE,
        confirmation_id text PRIMARY KEY,
        line text NOT NULL,
        batch_id text NOT NULL,
        kind text NOT NULL,
        supplement integer NOT NULL,
        start_ms bigint NOT NULL,
        end_ms bigint NOT NULL,
        body bytea NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_ms bigint NOT NULL,
        last_error text,
        last_http_status integer,
        created_ms bigint NOT NULL,
        delivered_ms bigint,
        claimed_by text,
        claimed_until bigint
    );
    CREATE INDEX mes_outbox_due ON mes_outbox (status, next_attempt_ms);
    CREATE INDEX mes_outbox_by_batch ON mes_outbox (line, batch_id);
    """,
]

_PENDING = DeliveryStatus.PENDING.value
_CLAIMED_COLUMNS = ", ".join(f"o.{column}" for column in _COLUMNS.split(", "))


class PostgresOutbox:
    """One instance's handle on the shared outbox (its own connection, its own claim holder id)."""

    def __init__(self, dsn: str, *, claim_ms: int = 60_000, clock: Callable[[], int] = now_ms,
                 holder: str | None = None) -> None:
        self._dsn = dsn
        self._clock = clock
        self.claim_ms = claim_ms
        #: who holds a claim: unique per process start, so a restarted instance does not reuse its old claims
        self.holder = holder or uuid.uuid4().hex
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        migrate(self._connection(), STORE, MIGRATIONS)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # a bounded wait: the outbox is used from the event loop, like the SQLite one
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
        return self._conn

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._connection().execute(sql, params)
            return cur.fetchall() if cur.description else []

    def enqueue(self, confirmation: ProductionConfirmation) -> EnqueueResult:
        body = canonical_json(confirmation)
        now = self._clock()
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                inserted = conn.execute(
                    f"INSERT INTO mes_outbox ({_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})"
                    " ON CONFLICT (confirmation_id) DO NOTHING", enqueue_row(confirmation, body, now)).rowcount
                if inserted:
                    return EnqueueResult.ENQUEUED
                row = conn.execute("SELECT body FROM mes_outbox WHERE confirmation_id = %s",
                                   (confirmation.confirmation_id,)).fetchone()
        if bytes(row[0]) != body:
            raise OutboxConflictError(confirmation.confirmation_id)
        return EnqueueResult.ALREADY_PRESENT

    def get(self, confirmation_id: str) -> OutboxEntry:
        rows = self._rows(f"SELECT {_COLUMNS} FROM mes_outbox WHERE confirmation_id = %s", (confirmation_id,))
        if not rows:
            raise UnknownConfirmationError(f"no confirmation {confirmation_id!r} in the outbox")
        return _entry(rows[0])

    def due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Pending entries due now and not claimed by a live claim (what :meth:`claim_due` would take)."""
        now = self._clock() if now is None else now
        return [_entry(r) for r in self._rows(
            f"SELECT {_COLUMNS} FROM mes_outbox WHERE status = %s AND next_attempt_ms <= %s"
            " AND (claimed_until IS NULL OR claimed_until <= %s) ORDER BY next_attempt_ms, created_ms LIMIT %s",
            (_PENDING, now, now, limit))]

    def claim_due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Claim up to ``limit`` due entries for this instance until ``now + claim_ms`` (see module)."""
        now = self._clock() if now is None else now
        # the rows are chosen and locked once (a CTE), then claimed in the same statement
        rows = self._rows(
            "WITH due AS (SELECT confirmation_id FROM mes_outbox WHERE status = %s AND next_attempt_ms <= %s"
            " AND (claimed_until IS NULL OR claimed_until <= %s)"
            " ORDER BY next_attempt_ms, created_ms LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE mes_outbox o SET claimed_by = %s, claimed_until = %s FROM due"
            f" WHERE o.confirmation_id = due.confirmation_id RETURNING {_CLAIMED_COLUMNS}",
            (_PENDING, now, now, limit, self.holder, now + self.claim_ms))
        entries = [_entry(r) for r in rows]
        return sorted(entries, key=lambda e: (e.next_attempt_ms, e.created_ms))

    def next_due_ms(self) -> int | None:
        """When the earliest pending entry can be taken: its next attempt, or the end of its claim."""
        return self._rows("SELECT MIN(GREATEST(next_attempt_ms, COALESCE(claimed_until, 0))) FROM mes_outbox"
                          " WHERE status = %s", (_PENDING,))[0][0]

    def mark_delivered(self, confirmation_id: str, http_status: int | None) -> None:
        self._rows("UPDATE mes_outbox SET status = %s, attempts = attempts + 1, delivered_ms = %s,"
                   " last_http_status = %s, claimed_by = NULL, claimed_until = NULL"
                   " WHERE confirmation_id = %s AND status = %s",
                   (DeliveryStatus.DELIVERED.value, self._clock(), http_status, confirmation_id, _PENDING))

    def mark_failed(self, confirmation_id: str, error: str, http_status: int | None,
                    next_attempt_ms: int | None) -> OutboxEntry:
        status = DeliveryStatus.PENDING if next_attempt_ms is not None else DeliveryStatus.DEAD_LETTERED
        self._rows("UPDATE mes_outbox SET status = %s, attempts = attempts + 1, last_error = %s,"
                   " last_http_status = %s, next_attempt_ms = COALESCE(%s, next_attempt_ms),"
                   " claimed_by = NULL, claimed_until = NULL WHERE confirmation_id = %s AND status = %s",
                   (status.value, error, http_status, next_attempt_ms, confirmation_id, _PENDING))
        return self.get(confirmation_id)

    def requeue(self, confirmation_id: str) -> OutboxEntry:
        self.get(confirmation_id)  # unknown: UnknownConfirmationError
        self._rows("UPDATE mes_outbox SET status = %s, attempts = 0, next_attempt_ms = %s"
                   " WHERE confirmation_id = %s AND status = %s",
                   (_PENDING, self._clock(), confirmation_id, DeliveryStatus.DEAD_LETTERED.value))
        return self.get(confirmation_id)

    def entries(self, *, status: DeliveryStatus | None = None, line: str | None = None,
                batch_id: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
        where, params = entry_filters(status, line, batch_id, "%s")
        return [_entry(r) for r in self._rows(f"SELECT {_COLUMNS} FROM mes_outbox WHERE {where}"
                                              " ORDER BY created_ms DESC, seq DESC LIMIT %s", [*params, limit])]

    def counts(self) -> dict[DeliveryStatus, int]:
        return counts_of(self._rows("SELECT status, COUNT(*) FROM mes_outbox GROUP BY status"))

    def confirmed_windows(self, line: str, batch_id: str) -> list[ConfirmedWindow]:
        return windows_of(self._rows("SELECT kind, start_ms, end_ms, supplement, body FROM mes_outbox"
                                     " WHERE line = %s AND batch_id = %s ORDER BY seq", (line, batch_id)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
