"""Durable outbox of production confirmations and the webhook sender that drains it.

Rules, stated once:

* Enqueue is idempotent by ``confirmation_id``: the same id with byte-identical content is a no-op;
  the same id with different content raises :class:`OutboxConflictError`. The body is stored as the
  exact bytes that will be POSTed, so every attempt — before or after a restart — sends the same body
  under the same ``Idempotency-Key``.
* Nothing lives only in memory: status, attempts, next attempt time and last error are rows in a
  SQLite file (synchronous=FULL). A new :class:`Outbox` on the same file resumes the pending ones.
* Delivery (:class:`WebhookSender`): a 2xx marks delivered (a 409 too, when the receiver says it
  already has the key and ``conflict_means_delivered``). Transport errors, timeouts, 5xx and
  408/425/429 (and 401/403/404, which a fixed receiver or credential heals) are retried with
  exponential backoff and jitter, honouring ``Retry-After``. Any other 4xx means the receiver
  refuses the content: retrying cannot help, so it is dead-lettered at once. After
  ``max_attempts`` failures an entry is dead-lettered too; either way the ``on_dead_letter``
  callback raises the alarm. A dead letter is kept and can be :meth:`Outbox.requeue`-d by an operator.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx

from mes_adapter.config.mes import MesConfig, RetryPolicy, WebhookConfig
from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    ConfirmedWindow,
    ProductionConfirmation,
    canonical_json,
    quantities_of,
)
from mes_adapter.errors import OutboxConflictError, UnknownConfirmationError
from mes_adapter.lines import parse_line_key
from mes_adapter.sqlite import open_db, transaction
from mes_adapter.timefmt import now_ms, parse_iso_ms
from uns.isa95 import ALARMS, NamespaceMapping

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    confirmation_id TEXT PRIMARY KEY,
    line TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    supplement INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    last_http_status INTEGER,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_by_batch ON outbox (line, batch_id);
"""

_COLUMNS = ("confirmation_id, line, batch_id, kind, supplement, start_ms, end_ms, body, status,"
            " attempts, next_attempt_ms, last_error, last_http_status, created_ms, delivered_ms")

#: statuses worth retrying besides 5xx: the receiver (or its credentials) may heal
RETRYABLE_4XX = frozenset({401, 403, 404, 408, 425, 429})


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTERED = "dead_lettered"


class EnqueueResult(StrEnum):
    ENQUEUED = "enqueued"
    ALREADY_PRESENT = "already_present"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One confirmation and its delivery state (what the API shows)."""

    confirmation_id: str
    line: str
    batch_id: str
    kind: ConfirmationKind
    supplement: int
    start_ms: int
    end_ms: int
    body: bytes
    status: DeliveryStatus
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    last_http_status: int | None
    created_ms: int
    delivered_ms: int | None

    @property
    def confirmation(self) -> ProductionConfirmation:
        return ProductionConfirmation.model_validate_json(self.body)

    def as_dict(self) -> dict[str, Any]:
        """Status view without the body (the API adds it on request)."""
        return {"confirmation_id": self.confirmation_id, "line": self.line,
                "batch_id": self.batch_id, "kind": self.kind.value, "supplement": self.supplement,
                "start_ms": self.start_ms, "end_ms": self.end_ms, "status": self.status.value,
                "attempts": self.attempts, "next_attempt_ms": self.next_attempt_ms,
                "last_error": self.last_error, "last_http_status": self.last_http_status,
                "created_ms": self.created_ms, "delivered_ms": self.delivered_ms}


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    (cid, line, batch, kind, supplement, start, end, body, status, attempts, next_ms, error,
     http_status, created, delivered) = row
    return OutboxEntry(cid, line, batch, ConfirmationKind(kind), supplement, start, end, bytes(body),
                       DeliveryStatus(status), attempts, next_ms, error, http_status, created,
                       delivered)


def enqueue_row(confirmation: ProductionConfirmation, body: bytes, now: int) -> tuple[Any, ...]:
    """A new pending entry's values, in ``_COLUMNS`` order (both outboxes insert the same row)."""
    return (confirmation.confirmation_id, confirmation.equipment_path, confirmation.batch_id,
            confirmation.kind.value, confirmation.supplement,
            parse_iso_ms(confirmation.source.counter_window[0]),
            parse_iso_ms(confirmation.source.counter_window[1]), body,
            DeliveryStatus.PENDING.value, 0, now, None, None, now, None)


def entry_filters(status: DeliveryStatus | None, line: str | None, batch_id: str | None,
                  placeholder: str) -> tuple[str, list[Any]]:
    """The API's filters as a WHERE clause and its parameters."""
    where, params = ["TRUE"], []
    for column, value in (("status", status.value if status else None), ("line", line), ("batch_id", batch_id)):
        if value is not None:
            where.append(f"{column} = {placeholder}")
            params.append(value)
    return " AND ".join(where), params


def counts_of(rows: list[tuple[Any, ...]]) -> dict[DeliveryStatus, int]:
    out = {status: 0 for status in DeliveryStatus}
    out.update({DeliveryStatus(s): n for s, n in rows})
    return out


def windows_of(rows: list[tuple[Any, ...]]) -> list[ConfirmedWindow]:
    return [ConfirmedWindow(ConfirmationKind(k), s, e, n,
                            quantities_of(ProductionConfirmation.model_validate_json(bytes(b))))
            for k, s, e, n, b in rows]


class OutboxStore(Protocol):
    """What the confirmation service, the sender and the API use: the SQLite :class:`Outbox` (one
    adapter) or ``pg_outbox.PostgresOutbox`` (shared by adapter instances, with row claims)."""

    def enqueue(self, confirmation: ProductionConfirmation) -> EnqueueResult: ...
    def get(self, confirmation_id: str) -> OutboxEntry: ...
    def due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]: ...
    def claim_due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]: ...
    def next_due_ms(self) -> int | None: ...
    def mark_delivered(self, confirmation_id: str, http_status: int | None) -> None: ...
    def mark_failed(self, confirmation_id: str, error: str, http_status: int | None,
                    next_attempt_ms: int | None) -> OutboxEntry: ...
    def requeue(self, confirmation_id: str) -> OutboxEntry: ...
    def entries(self, *, status: DeliveryStatus | None = None, line: str | None = None,
                batch_id: str | None = None, limit: int = 1000) -> list[OutboxEntry]: ...
    def counts(self) -> dict[DeliveryStatus, int]: ...
    def confirmed_windows(self, line: str, batch_id: str) -> list[ConfirmedWindow]: ...
    def close(self) -> None: ...


class Outbox:
    """SQLite-backed queue of confirmations keyed by their idempotency key."""

    def __init__(self, path: str | Path, clock: Callable[[], int] = now_ms) -> None:
        self._conn = open_db(path, durable=True)
        self._conn.executescript(_SCHEMA)
        self._clock = clock

    def enqueue(self, confirmation: ProductionConfirmation) -> EnqueueResult:
        """Store a confirmation for delivery; idempotent by id, refuses changed content."""
        body = canonical_json(confirmation)
        with transaction(self._conn) as conn:
            row = conn.execute("SELECT body FROM outbox WHERE confirmation_id = ?",
                               (confirmation.confirmation_id,)).fetchone()
            if row is not None:
                if bytes(row[0]) != body:
                    raise OutboxConflictError(confirmation.confirmation_id)
                return EnqueueResult.ALREADY_PRESENT
            conn.execute(f"INSERT INTO outbox ({_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                         enqueue_row(confirmation, body, self._clock()))
        return EnqueueResult.ENQUEUED

    def get(self, confirmation_id: str) -> OutboxEntry:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE confirmation_id = ?",
                                 (confirmation_id,)).fetchone()
        if row is None:
            raise UnknownConfirmationError(f"no confirmation {confirmation_id!r} in the outbox")
        return _entry(row)

    def due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Pending entries whose next attempt time has come, oldest first."""
        now = self._clock() if now is None else now
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = ? AND next_attempt_ms <= ?"
            " ORDER BY next_attempt_ms, created_ms LIMIT ?",
            (DeliveryStatus.PENDING.value, now, limit)).fetchall()
        return [_entry(r) for r in rows]

    def claim_due(self, now: int | None = None, limit: int = 100) -> list[OutboxEntry]:
        """What the sender takes: the due entries (one adapter owns this file; the PostgreSQL outbox,
        shared by instances, claims them)."""
        return self.due(now, limit)

    def next_due_ms(self) -> int | None:
        """When the earliest pending entry becomes due (None: nothing pending)."""
        row = self._conn.execute("SELECT MIN(next_attempt_ms) FROM outbox WHERE status = ?",
                                 (DeliveryStatus.PENDING.value,)).fetchone()
        return row[0]

    def mark_delivered(self, confirmation_id: str, http_status: int | None) -> None:
        with transaction(self._conn) as conn:
            conn.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, delivered_ms = ?,"
                " last_http_status = ? WHERE confirmation_id = ?",
                (DeliveryStatus.DELIVERED.value, self._clock(), http_status, confirmation_id))

    def mark_failed(self, confirmation_id: str, error: str, http_status: int | None,
                    next_attempt_ms: int | None) -> OutboxEntry:
        """Record a failed attempt; ``next_attempt_ms=None`` dead-letters the entry."""
        status = DeliveryStatus.PENDING if next_attempt_ms is not None else DeliveryStatus.DEAD_LETTERED
        with transaction(self._conn) as conn:
            conn.execute(
                "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?,"
                " last_http_status = ?, next_attempt_ms = COALESCE(?, next_attempt_ms)"
                " WHERE confirmation_id = ?",
                (status.value, error, http_status, next_attempt_ms, confirmation_id))
        return self.get(confirmation_id)

    def requeue(self, confirmation_id: str) -> OutboxEntry:
        """Give a dead letter a fresh set of attempts (operator action after fixing the cause)."""
        entry = self.get(confirmation_id)
        if entry.status is DeliveryStatus.DEAD_LETTERED:
            with transaction(self._conn) as conn:
                conn.execute("UPDATE outbox SET status = ?, attempts = 0, next_attempt_ms = ?"
                             " WHERE confirmation_id = ?",
                             (DeliveryStatus.PENDING.value, self._clock(), confirmation_id))
        return self.get(confirmation_id)

    def entries(self, *, status: DeliveryStatus | None = None, line: str | None = None,
                batch_id: str | None = None, limit: int = 1000) -> list[OutboxEntry]:
        """Entries, newest first, filtered for the API."""
        where, params = entry_filters(status, line, batch_id, "?")
        sql = f"SELECT {_COLUMNS} FROM outbox WHERE {where} ORDER BY created_ms DESC, rowid DESC LIMIT ?"
        return [_entry(r) for r in self._conn.execute(sql, [*params, limit]).fetchall()]

    def counts(self) -> dict[DeliveryStatus, int]:
        return counts_of(self._conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def confirmed_windows(self, line: str, batch_id: str) -> list[ConfirmedWindow]:
        """Every confirmation ever enqueued for a batch (any status: its content is committed)."""
        return windows_of(self._conn.execute(
            "SELECT kind, start_ms, end_ms, supplement, body FROM outbox"
            " WHERE line = ? AND batch_id = ? ORDER BY rowid", (line, batch_id)).fetchall())

    def close(self) -> None:
        self._conn.close()


def open_outbox(mes: MesConfig) -> OutboxStore:
    """The configured outbox: ``mes.outbox_dsn`` set → PostgreSQL (imported only then: it needs psycopg)."""
    if mes.outbox_dsn is None:
        return Outbox(mes.outbox_db)
    from mes_adapter.confirmations.pg_outbox import PostgresOutbox

    return PostgresOutbox(mes.outbox_dsn, claim_ms=int(mes.outbox_claim_s * 1000))


DeadLetterCallback = Callable[[OutboxEntry], Awaitable[None] | None]


def dead_letter_alarm(mapping: NamespaceMapping, entry: OutboxEntry) -> tuple[str, bytes]:
    """``(topic, payload)`` of the alarm for a dead-lettered confirmation, on ``<line>/_alarms``."""
    topic = mapping.line_topic(parse_line_key(entry.line), ALARMS, "mes_outbox")
    payload = {"alarm": "confirmation_dead_lettered", "severity": "high",
               "confirmation_id": entry.confirmation_id, "batch_id": entry.batch_id,
               "kind": entry.kind.value, "attempts": entry.attempts,
               "last_error": entry.last_error, "last_http_status": entry.last_http_status,
               "timestamp_ms": now_ms()}
    return topic, json.dumps(payload, separators=(",", ":")).encode()


class WebhookSender:
    """Drains the outbox to the MES webhook (see module rules)."""

    def __init__(self, outbox: OutboxStore, webhook: WebhookConfig, retry: RetryPolicy, *,
                 client: httpx.AsyncClient | None = None,
                 on_dead_letter: DeadLetterCallback | None = None,
                 clock: Callable[[], int] = now_ms, rng: random.Random | None = None,
                 idle_poll_s: float = 5.0) -> None:
        if webhook.url is None:
            raise ValueError("WebhookSender needs webhook.url")
        self._outbox = outbox
        self._webhook = webhook
        self._url: str = webhook.url
        self._retry = retry
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=retry.request_timeout_s)
        self._on_dead_letter = on_dead_letter
        self._clock = clock
        self._rng = rng or random.Random()
        self._idle_poll_s = idle_poll_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def headers(self, entry: OutboxEntry) -> dict[str, str]:
        headers = {**self._webhook.headers, "Content-Type": "application/json",
                   "Idempotency-Key": entry.confirmation_id}
        if self._webhook.auth_header and self._webhook.auth_value is not None:
            headers[self._webhook.auth_header] = self._webhook.auth_value.get_secret_value()
        return headers

    def wake(self) -> None:
        """Deliver now (call after enqueueing) instead of waiting for the next poll."""
        self._wake.set()

    async def deliver_due(self, limit: int = 100) -> int:
        """One pass over the due entries; returns how many were delivered."""
        delivered = 0
        async with self._lock:
            for entry in self._outbox.claim_due(self._clock(), limit):
                if await self._attempt(entry):
                    delivered += 1
        return delivered

    async def _attempt(self, entry: OutboxEntry) -> bool:
        status: int | None = None
        retry_after_s: float | None = None
        try:
            response = await self._client.post(self._url, content=entry.body,
                                               headers=self.headers(entry),
                                               timeout=self._retry.request_timeout_s)
        except httpx.HTTPError as exc:
            error, retryable = f"{type(exc).__name__}: {exc}", True
        else:
            status = response.status_code
            if 200 <= status < 300 or (status == 409 and self._webhook.conflict_means_delivered):
                self._outbox.mark_delivered(entry.confirmation_id, status)
                return True
            error = f"HTTP {status}: {response.text[:300]}"
            retryable = status >= 500 or status in RETRYABLE_4XX
            retry_after_s = _retry_after(response)
        failed = entry.attempts + 1
        if retryable and failed < self._retry.max_attempts:
            delay = self._retry.delay_s(failed, self._rng)
            if retry_after_s is not None:
                delay = max(delay, min(retry_after_s, self._retry.max_delay_s))
            self._outbox.mark_failed(entry.confirmation_id, error, status,
                                     self._clock() + int(delay * 1000))
            log.warning("confirmation %s attempt %d failed (%s); retry in %.1fs",
                        entry.confirmation_id, failed, error, delay)
            return False
        dead = self._outbox.mark_failed(entry.confirmation_id, error, status, None)
        log.error("confirmation %s dead-lettered after %d attempts: %s",
                  entry.confirmation_id, failed, error)
        if self._on_dead_letter is not None:
            result = self._on_dead_letter(dead)
            if inspect.isawaitable(result):
                await result
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, sleeping until the next due entry or a :meth:`wake`."""
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.deliver_due()
            except Exception:  # noqa: BLE001 - a storage hiccup must not end delivery for good
                log.exception("outbox delivery pass failed")
            next_ms = self._outbox.next_due_ms()
            sleep_s = self._idle_poll_s
            if next_ms is not None:
                sleep_s = min(sleep_s, max(0.0, (next_ms - self._clock()) / 1000))
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=sleep_s, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
