"""The outbox in a real PostgreSQL, shared by adapter instances: each confirmation posted exactly once.

Two senders with their own connections drain one outbox at the same time (two threads, each its own
event loop, racing for claims) to a real HTTP receiver; an instance killed (SIGKILL, a real process)
while it holds a claim leaves the entry to the other one, which posts it once the claim has run out.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mes_adapter.config.mes import MesConfig, RetryPolicy, WebhookConfig
from mes_adapter.confirmations.outbox import DeliveryStatus, EnqueueResult, WebhookSender, open_outbox
from mes_adapter.confirmations.pg_outbox import MIGRATIONS, STORE, PostgresOutbox
from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    ConfirmationSource,
    ProducedMaterial,
    ProductionConfirmation,
    canonical_json,
    confirmation_id,
)
from mes_adapter.errors import OutboxConflictError, UnknownConfirmationError
from mes_adapter.pg_schema import migrate
from tests.mes.receiver import Receiver
from tests.mes.test_outbox import LINE, Clock
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.procs import stop_process
from uns.sqlite_schema import SchemaVersionError

RETRY = RetryPolicy(max_attempts=4, initial_delay_s=1, multiplier=2, max_delay_s=60, jitter=0.2, request_timeout_s=5)
T0 = Clock().now
ROOT = Path(__file__).resolve().parents[2]


def confirmation(batch: str, good: float = 9800) -> ProductionConfirmation:
    end = "2024-01-17T14:00:00Z"
    return ProductionConfirmation(
        confirmation_id=confirmation_id(LINE, batch, ConfirmationKind.FINAL, 0, 1), kind=ConfirmationKind.FINAL,
        work_order_id="WO-4711", batch_id=batch, equipment_path=LINE, start_time="2024-01-17T06:00:00Z",
        end_time=end, state="Completed", final=True,
        produced=[ProducedMaterial(material_id="SKU-12", lot_id=batch, good=good, scrap=200)],
        source=ConfirmationSource(counter_window=("2024-01-17T06:00:00Z", end), evidence_hash="sha256:00",
                                  context_seq=1))


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    with postgres_server(tmp_path_factory.mktemp("postgres-logs")) as server:
        yield server


@pytest.fixture
def dsn(pg: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh database per test."""
    name = "outbox_" + request.node.name.split("[")[0][-40:].lower()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg.dsn.replace("dbname=postgres", f"dbname={name}")


def test_the_postgres_outbox_keeps_the_sqlite_outbox_rules_and_its_schema_version(dsn: str) -> None:
    clock = Clock()
    outbox = open_outbox(MesConfig(outbox_dsn=dsn, retry=RETRY))
    assert isinstance(outbox, PostgresOutbox)
    outbox.close()
    outbox = PostgresOutbox(dsn, clock=clock)
    conf = confirmation("B-1")
    assert outbox.enqueue(conf) is EnqueueResult.ENQUEUED
    assert outbox.enqueue(conf) is EnqueueResult.ALREADY_PRESENT
    with pytest.raises(OutboxConflictError, match="different content"):
        outbox.enqueue(confirmation("B-1", good=9801))
    entry = outbox.get(conf.confirmation_id)
    assert (entry.body, entry.status, entry.attempts, entry.next_attempt_ms) == (
        canonical_json(conf), DeliveryStatus.PENDING, 0, T0)
    with pytest.raises(UnknownConfirmationError):
        outbox.get("nope")
    assert [w.kind for w in outbox.confirmed_windows(LINE, "B-1")] == [ConfirmationKind.FINAL]
    dead = outbox.mark_failed(conf.confirmation_id, "HTTP 422: no", 422, None)
    assert (dead.status, dead.attempts, dead.last_http_status) == (DeliveryStatus.DEAD_LETTERED, 1, 422)
    assert outbox.counts() == {DeliveryStatus.PENDING: 0, DeliveryStatus.DELIVERED: 0, DeliveryStatus.DEAD_LETTERED: 1}
    assert [e.confirmation_id for e in outbox.entries(status=DeliveryStatus.DEAD_LETTERED, line=LINE)] == [
        conf.confirmation_id]
    clock.now += 1000
    again = outbox.requeue(conf.confirmation_id)
    assert (again.status, again.attempts, again.next_attempt_ms) == (DeliveryStatus.PENDING, 0, T0 + 1000)
    outbox.close()
    # the schema: a step runs once and is recorded; a newer version is refused before anything is written
    ran: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        steps = [*MIGRATIONS, lambda c: ran.append(1) or c.execute("ALTER TABLE mes_outbox ADD COLUMN note text")]
        assert migrate(conn, STORE, steps) == 1
        assert migrate(conn, STORE, steps) == 2
        assert ran == [1]
        with pytest.raises(SchemaVersionError, match="schema version 2; this uns-hub knows up to 1"):
            PostgresOutbox(dsn)


def _drain_in_thread(dsn: str, url: str, delivered: list[int]) -> threading.Thread:
    """One adapter instance's sender: its own connection and event loop, draining until nothing is due."""
    async def run() -> None:
        outbox = PostgresOutbox(dsn, claim_ms=30_000)
        sender = WebhookSender(outbox, WebhookConfig(url=url), RETRY)
        try:
            while outbox.due():
                delivered.append(await sender.deliver_due(limit=3))
        finally:
            await sender.aclose()
            outbox.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),))
    thread.start()
    return thread


def test_two_instances_draining_one_outbox_post_each_confirmation_exactly_once(dsn: str) -> None:
    outbox = PostgresOutbox(dsn)
    ids = [confirmation(f"B-{i}").confirmation_id for i in range(40)]
    for i in range(40):
        outbox.enqueue(confirmation(f"B-{i}"))
    with Receiver() as receiver:
        delivered: tuple[list[int], list[int]] = ([], [])
        threads = [_drain_in_thread(dsn, receiver.url, delivered[0]), _drain_in_thread(dsn, receiver.url, delivered[1])]
        for thread in threads:
            thread.join(60)
    posted = Counter(r.headers["Idempotency-Key"] for r in receiver.requests)
    assert posted == Counter(ids)  # every confirmation, each exactly once
    assert sum(delivered[0]) + sum(delivered[1]) == 40
    assert sum(delivered[0]) > 0 and sum(delivered[1]) > 0  # both instances took part
    assert outbox.counts()[DeliveryStatus.DELIVERED] == 40
    assert {e.attempts for e in outbox.entries()} == {1}
    outbox.close()


_CLAIM_AND_HANG = """
import sys, time
from mes_adapter.confirmations.pg_outbox import PostgresOutbox
outbox = PostgresOutbox(sys.argv[1], claim_ms=30_000, clock=lambda: int(sys.argv[2]))
print(",".join(e.confirmation_id for e in outbox.claim_due(limit=1)), flush=True)
time.sleep(600)
"""


def _claim_in_a_process_then_kill_it(dsn: str) -> str:
    proc = subprocess.Popen([sys.executable, "-c", _CLAIM_AND_HANG, dsn, str(T0)], stdout=subprocess.PIPE,
                            cwd=ROOT, text=True)
    try:
        return proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        stop_process(proc, sig=signal.SIGKILL)  # it never records an outcome


async def test_an_instance_killed_holding_a_claim_leaves_it_to_another_after_the_claim_runs_out(dsn: str) -> None:
    clock = Clock()
    outbox = PostgresOutbox(dsn, claim_ms=30_000, clock=clock)
    ids = [confirmation(f"B-{i}").confirmation_id for i in range(3)]
    for i in range(3):
        outbox.enqueue(confirmation(f"B-{i}"))
    claimed = _claim_in_a_process_then_kill_it(dsn)
    assert claimed == ids[0]  # the oldest due entry
    with Receiver() as receiver:
        sender = WebhookSender(outbox, WebhookConfig(url=receiver.url), RETRY, clock=clock)
        assert await sender.deliver_due() == 2  # the dead instance's claim still holds its entry
        assert outbox.next_due_ms() == T0 + 30_000
        clock.now = T0 + 29_999
        assert await sender.deliver_due() == 0
        clock.now = T0 + 30_000  # the claim has run out
        assert await sender.deliver_due() == 1
        assert await sender.deliver_due() == 0
        await sender.aclose()
    assert Counter(r.headers["Idempotency-Key"] for r in receiver.requests) == Counter(ids)
    assert outbox.get(claimed).status is DeliveryStatus.DELIVERED
    outbox.close()
