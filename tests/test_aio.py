"""A cancellation turned into an ordinary exception still ends a reconnect loop."""

from __future__ import annotations

import asyncio
import sys

import pytest

from uns.aio import raise_if_cancelling


async def _run_loop(guarded: bool) -> tuple[asyncio.Task[None], list[asyncio.Future[None]]]:
    """A reconnect loop waiting (through wait_for) on a connect attempt the test controls."""
    attempts: list[asyncio.Future[None]] = []

    async def reconnect_loop() -> None:
        while True:
            attempt: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            attempts.append(attempt)
            try:
                await asyncio.wait_for(attempt, timeout=30)
            except Exception:
                if guarded:
                    raise_if_cancelling()
            await asyncio.sleep(0)

    task = asyncio.create_task(reconnect_loop())
    await asyncio.sleep(0.01)
    # the stop request and the peer's refusal land in the same loop iteration
    task.cancel()
    attempts[0].set_exception(ConnectionError("refused"))
    return task, attempts


async def test_a_loop_ends_when_wait_for_swallows_the_cancel() -> None:
    task, attempts = await _run_loop(guarded=True)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert len(attempts) == 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12's wait_for no longer swallows the cancel")
async def test_without_the_guard_the_loop_would_go_on() -> None:
    """The reason the guard exists: on 3.11 the loop survives its cancellation."""
    task, attempts = await _run_loop(guarded=False)
    await asyncio.sleep(0.05)
    assert not task.done() and len(attempts) == 2
    task.cancel()  # the second attempt is an ordinary wait: this cancel is honoured
    with pytest.raises(asyncio.CancelledError):
        await task
