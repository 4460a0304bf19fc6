"""A cancellation turned into an ordinary exception still ends a reconnect loop."""

from __future__ import annotations

import asyncio

import pytest

from uns.aio import raise_if_cancelling


async def test_a_loop_ends_when_wait_for_swallows_the_cancel() -> None:
    """Python 3.11's wait_for raises the inner exception if the cancel lands as the inner call
    fails; the loop below would spin forever without raise_if_cancelling()."""
    attempts = 0

    async def failing_connect() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise ConnectionError("refused while being cancelled") from None  # what a library may do

    async def reconnect_loop() -> None:
        nonlocal attempts
        while True:
            try:
                attempts += 1
                await asyncio.wait_for(failing_connect(), timeout=5)
            except Exception:
                raise_if_cancelling()
            await asyncio.sleep(0)

    task = asyncio.create_task(reconnect_loop())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert attempts == 1
