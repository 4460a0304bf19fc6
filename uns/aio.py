"""asyncio helpers the services share."""

from __future__ import annotations

import asyncio


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
