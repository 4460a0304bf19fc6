"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into an ordinary exception.

    On Python 3.11, ``asyncio.wait_for`` (used inside asyncua and by us) returns the inner result
    or raises the inner *exception* when the cancel arrives just as the inner call finishes, so a
    reconnect loop that catches ``Exception`` would go on forever and ``stop()`` would wait for
    it. The task still counts the cancel request, so ask it: call this in every ``except
    Exception`` of a loop that must end on cancellation.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


#: how long a cancelled task may take to end before it is cancelled again
_RECANCEL_S = 0.2


async def cancel_and_wait(tasks: list[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any that goes on.

    Why again: on Python 3.11 ``asyncio.wait_for`` can swallow a cancel that arrives just as its
    inner call finishes (see :func:`raise_if_cancelling`); aiomqtt's ``publish`` waits that way,
    so a session task cancelled in the middle of a publish carried on to its next ``await`` and the
    session never ended (the host's clean shutdown then timed out and no STATE offline went out).
    A second cancel reaches it at that next ``await``. Every ``stop()`` that ends its own tasks
    uses this, never ``cancel()`` + ``gather``: the edge's command executor was seen (in a full
    test run) taking a swallowed cancel back to its idle wait, and its ``stop()`` waited forever.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL_S)
    for task in tasks:  # every outcome retrieved: no "exception was never retrieved" at exit
        if not task.cancelled():
            task.exception()


async def run_until_first_done(*aws: Awaitable[Any]) -> set[asyncio.Future[Any]]:
    """Run ``aws`` together until the first one finishes; cancel the rest and wait until they have ended.

    The shape of every session body with a reader, a writer and a stopper: whichever ends first
    ends the session. Why not ``asyncio.TaskGroup``: a group waits for *all* its children and
    cancels them only when one *fails*; here a child that simply returns (the stopper) must end
    the others too.

    Returns the finished tasks (compare them with a task you passed in, e.g. the stopper's).
    A finished task's exception is raised after the others have ended, so no task outlives the
    call and none is left unawaited. Exceptions of the tasks ended by the cancel are dropped (the
    session is over either way). Cancelling the caller cancels and awaits every task first.
    """
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(tasks)
    for task in tasks:  # in the caller's order: the same failure wins on every run
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return done
