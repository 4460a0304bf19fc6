"""uns.aio: a cancellation turned into an ordinary exception still ends a reconnect loop; the
reader/writer/stopper task group ends every task it started."""

from __future__ import annotations

import asyncio
import sys

import pytest

from uns.aio import cancel_and_wait, raise_if_cancelling, run_until_first_done


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


async def test_cancel_and_wait_ends_a_task_that_went_back_to_waiting_after_a_swallowed_cancel() -> None:
    """Seen in a full run: the edge's command executor, its cancel swallowed inside an OPC UA call,
    went back to waiting for the next command and ``stop()`` (cancel + gather) waited forever."""
    swallowed: list[bool] = []
    idle = asyncio.Event()

    async def loop_that_swallows_once() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # what a library's wait_for did on 3.11, made deterministic here
            swallowed.append(True)
        await idle.wait()  # back to its idle wait, as the executor did

    task = asyncio.create_task(loop_that_swallows_once())
    other = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task, other]), timeout=5)
    assert swallowed == [True] and task.cancelled() and other.cancelled()


# -- run_until_first_done: the reader/writer/stopper task group of every session body ---------------

async def _forever(started: list[str], name: str) -> None:
    started.append(name)
    await asyncio.Event().wait()


async def test_the_first_to_return_ends_the_others_and_is_reported() -> None:
    started: list[str] = []
    stop = asyncio.Event()
    stopper = asyncio.ensure_future(stop.wait())
    reader = asyncio.ensure_future(_forever(started, "reader"))
    asyncio.get_running_loop().call_soon(stop.set)
    done = await run_until_first_done(reader, _forever(started, "writer"), stopper)
    assert done == {stopper}
    assert started == ["reader", "writer"]
    assert reader.cancelled()  # ended and awaited before the call returned


async def test_a_failure_is_raised_after_the_others_have_ended() -> None:
    started: list[str] = []
    writer = asyncio.ensure_future(_forever(started, "writer"))

    async def reader() -> None:
        await asyncio.sleep(0)
        raise ConnectionError("lost")

    with pytest.raises(ConnectionError, match="lost"):
        await run_until_first_done(reader(), writer)
    assert writer.cancelled()


async def test_cancelling_the_caller_cancels_and_awaits_every_task() -> None:
    started: list[str] = []
    children = [asyncio.ensure_future(_forever(started, n)) for n in ("reader", "writer")]
    caller = asyncio.ensure_future(run_until_first_done(*children))
    for _ in range(3):  # one loop pass starts the caller, the next its children
        await asyncio.sleep(0)
    assert started == ["reader", "writer"]
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert all(child.cancelled() for child in children)


async def test_a_task_that_swallows_the_cancel_is_cancelled_again() -> None:
    """Python 3.11's ``wait_for`` (inside aiomqtt's ``publish``) can swallow a cancel; the task then
    goes on to its next ``await``. The session must still end: it is cancelled again there (the
    host's clean shutdown hung on this, and no STATE offline went out)."""
    stop = asyncio.Event()
    stopper = asyncio.ensure_future(stop.wait())
    later = asyncio.Event()
    reached: list[str] = []

    async def publisher() -> None:
        try:
            await asyncio.sleep(3600)  # the publish the cancel arrives in
        except asyncio.CancelledError:
            reached.append("swallowed")  # what wait_for does on 3.11 when the inner call just finished
        await later.wait()  # the next await: only a second cancel ends it
        reached.append("never")

    task = asyncio.ensure_future(publisher())
    asyncio.get_running_loop().call_soon(stop.set)
    done = await asyncio.wait_for(run_until_first_done(task, stopper), 5)
    assert done == {stopper}
    assert reached == ["swallowed"] and task.cancelled()
