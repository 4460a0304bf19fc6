"""An asyncio server (``start()``/``stop()`` coroutines) served on its own event loop thread.

Why: a test that drives the CLI (``asyncio.run`` in the test's thread, or a subprocess) needs the
server's loop to keep running beside it; the loop is returned to read the server's own state
with ``asyncio.run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def served_in_thread(server: Any, timeout: float = 20.0) -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(timeout), "the server did not start"
    try:
        yield loop
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
