"""Durable outbox against a real HTTP receiver: outage, recovery, dead letters, restarts."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from pathlib import Path

import pytest
from pydantic import SecretStr

from mes_adapter.config.mes import RetryPolicy, WebhookConfig
from mes_adapter.confirmations.outbox import (
    DeliveryStatus,
    EnqueueResult,
    Outbox,
    OutboxEntry,
    WebhookSender,
    dead_letter_alarm,
)
from mes_adapter.confirmations.planning import (
    ConfirmationKind,
    ConfirmationSource,
    ProducedMaterial,
    ProductionConfirmation,
    canonical_json,
    confirmation_id,
)
from mes_adapter.errors import OutboxConflictError, UnknownConfirmationError
from tests.mes.receiver import Receiver
from uns.isa95 import NamespaceMapping

LINE = "acme/plant1/packaging/line2"
RETRY = RetryPolicy(max_attempts=4, initial_delay_s=1, multiplier=2, max_delay_s=60, jitter=0.2,
                    request_timeout_s=2)


class Clock:
    def __init__(self) -> None:
        self.now = 1_705_471_200_000

    def __call__(self) -> int:
        return self.now


def confirmation(good: float = 9800, end: str = "2024-01-17T14:00:00Z") -> ProductionConfirmation:
    cid = confirmation_id(LINE, "B-1", ConfirmationKind.FINAL, 0, 1)
    return ProductionConfirmation(
        confirmation_id=cid, kind=ConfirmationKind.FINAL, work_order_id="WO-4711", batch_id="B-1",
        equipment_path=LINE, start_time="2024-01-17T06:00:00Z", end_time=end, state="Completed",
        final=True, produced=[ProducedMaterial(material_id="SKU-12", lot_id="B-1", good=good, scrap=200)],
        source=ConfirmationSource(counter_window=("2024-01-17T06:00:00Z", end),
                                  evidence_hash="sha256:00", context_seq=1))


def sender(outbox: Outbox, url: str, clock: Clock, dead: list[OutboxEntry] | None = None,
           retry: RetryPolicy = RETRY, **webhook: object) -> WebhookSender:
    return WebhookSender(outbox, WebhookConfig(url=url, **webhook), retry,  # type: ignore[arg-type]
                         on_dead_letter=None if dead is None else dead.append, clock=clock,
                         rng=random.Random(7))


def test_enqueue_is_idempotent_and_refuses_changed_content(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    conf = confirmation()
    assert outbox.enqueue(conf) is EnqueueResult.ENQUEUED
    assert outbox.enqueue(conf) is EnqueueResult.ALREADY_PRESENT
    with pytest.raises(OutboxConflictError, match="different content"):
        outbox.enqueue(confirmation(good=9801))
    entry = outbox.get(conf.confirmation_id)
    assert entry.body == canonical_json(conf) and entry.confirmation == conf
    assert (entry.status, entry.attempts, entry.batch_id) == (DeliveryStatus.PENDING, 0, "B-1")
    assert outbox.counts()[DeliveryStatus.PENDING] == 1
    with pytest.raises(UnknownConfirmationError):
        outbox.get("nope")


async def test_outage_then_recovery_same_key_same_body(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    conf = confirmation()
    outbox.enqueue(conf)
    with Receiver(script=deque([503, 500])) as receiver:
        s = sender(outbox, receiver.url, clock, auth_header="Authorization",
                   auth_value=SecretStr("Bearer t0ken"), headers={"X-Plant": "p1"})
        assert await s.deliver_due() == 0
        entry = outbox.get(conf.confirmation_id)
        assert entry.attempts == 1 and entry.last_http_status == 503
        assert entry.next_attempt_ms - clock.now == 7000  # Retry-After beats the 1 s backoff
        assert await s.deliver_due() == 0 and len(receiver.requests) == 1  # not due yet
        clock.now = entry.next_attempt_ms
        assert await s.deliver_due() == 0
        entry = outbox.get(conf.confirmation_id)
        assert 1600 <= entry.next_attempt_ms - clock.now <= 2400  # 2 s ± 20 % jitter
        clock.now = entry.next_attempt_ms
        assert await s.deliver_due() == 1
        await s.aclose()
    entry = outbox.get(conf.confirmation_id)
    assert (entry.status, entry.attempts, entry.last_http_status) == (DeliveryStatus.DELIVERED, 3, 200)
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
    bodies = {r.body for r in receiver.requests}
    assert keys == {conf.confirmation_id} and bodies == {canonical_json(conf)}
    assert len(receiver.requests) == 3
    first = receiver.requests[0]
    assert first.headers["Authorization"] == "Bearer t0ken" and first.headers["X-Plant"] == "p1"
    assert json.loads(first.body)["confirmation_id"] == conf.confirmation_id


async def test_receiver_down_then_up_on_the_same_port(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    outbox.enqueue(confirmation())
    receiver = Receiver()
    s = sender(outbox, receiver.url, clock)
    assert await s.deliver_due() == 0  # connection refused
    entry = outbox.entries()[0]
    assert entry.attempts == 1 and "ConnectError" in (entry.last_error or "")
    with receiver:
        clock.now = entry.next_attempt_ms
        assert await s.deliver_due() == 1
    await s.aclose()
    assert receiver.requests[0].headers["Idempotency-Key"] == entry.confirmation_id


async def test_dead_letter_after_the_limit_raises_an_alarm(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    conf = confirmation()
    outbox.enqueue(conf)
    dead: list[OutboxEntry] = []
    with Receiver(default_status=500) as receiver:
        s = sender(outbox, receiver.url, clock, dead)
        for _ in range(10):
            await s.deliver_due()
            clock.now += 3_600_000
        await s.aclose()
    assert len(receiver.requests) == RETRY.max_attempts
    [entry] = dead
    assert (entry.status, entry.attempts, entry.last_http_status) == (
        DeliveryStatus.DEAD_LETTERED, 4, 500)
    assert outbox.counts()[DeliveryStatus.DEAD_LETTERED] == 1 and outbox.due(clock.now) == []
    topic, payload = dead_letter_alarm(NamespaceMapping(), entry)
    assert topic == "acme/plant1/packaging/line2/_alarms/mes_outbox"
    assert json.loads(payload)["confirmation_id"] == conf.confirmation_id
    # an operator fixes the receiver and requeues: delivered with the same key and body
    assert outbox.requeue(conf.confirmation_id).status is DeliveryStatus.PENDING
    with Receiver(port=receiver.port) as fixed:
        s = sender(outbox, fixed.url, clock)
        assert await s.deliver_due() == 1
        await s.aclose()
    assert fixed.requests[0].body == receiver.requests[0].body


async def test_rejected_content_is_dead_lettered_at_once(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    outbox.enqueue(confirmation())
    dead: list[OutboxEntry] = []
    with Receiver(script=deque([422])) as receiver:
        s = sender(outbox, receiver.url, clock, dead)
        await s.deliver_due()
        await s.aclose()
    assert len(dead) == 1 and dead[0].attempts == 1 and "HTTP 422" in (dead[0].last_error or "")


async def test_conflict_from_idempotent_receiver_counts_as_delivered(tmp_path: Path) -> None:
    clock = Clock()
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    outbox.enqueue(confirmation())
    with Receiver(script=deque([409])) as receiver:
        s = sender(outbox, receiver.url, clock)
        assert await s.deliver_due() == 1
        await s.aclose()


async def test_restart_resends_pending_with_the_same_key(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "outbox.sqlite"
    conf = confirmation()
    with Receiver(script=deque([503])) as receiver:
        first = Outbox(path, clock=clock)
        first.enqueue(conf)
        s = sender(first, receiver.url, clock)
        await s.deliver_due()
        await s.aclose()
        first.close()
        # the process restarts: new objects on the same file; the confirmation is rebuilt too
        second = Outbox(path, clock=clock)
        assert second.enqueue(confirmation()) is EnqueueResult.ALREADY_PRESENT
        clock.now += 60_000
        s2 = sender(second, receiver.url, clock)
        assert await s2.deliver_due() == 1
        await s2.aclose()
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [conf.confirmation_id] * 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert second.get(conf.confirmation_id).status is DeliveryStatus.DELIVERED


async def test_run_loop_delivers_on_wake(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    with Receiver() as receiver:
        s = WebhookSender(outbox, WebhookConfig(url=receiver.url), RETRY, idle_poll_s=30)
        stop = asyncio.Event()
        task = asyncio.create_task(s.run(stop))
        await asyncio.sleep(0.05)
        outbox.enqueue(confirmation())
        s.wake()
        for _ in range(200):
            if outbox.counts()[DeliveryStatus.DELIVERED]:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
        await s.aclose()
    assert outbox.counts()[DeliveryStatus.DELIVERED] == 1 and len(receiver.requests) == 1


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_delay_s=1, multiplier=2, max_delay_s=10, jitter=0)
    assert [policy.delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittery = RetryPolicy(initial_delay_s=10, jitter=0.5)
    rng = random.Random(1)
    assert all(5 <= jittery.delay_s(1, rng) <= 15 for _ in range(100))
    with pytest.raises(ValueError, match="auth_header and auth_value"):
        WebhookConfig(url="http://x", auth_header="Authorization")
    with pytest.raises(ValueError, match="not http"):
        WebhookConfig(url="ftp://x")
