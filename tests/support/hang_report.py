"""What every asyncio task was awaiting when a test ran out of time.

pytest-timeout prints the stacks of the threads, and for an async test that is only the event loop
in ``select()``: it does not say which ``await`` never returned. A hang seen once in a CI run must
be explainable from that run's output, so just before pytest-timeout fires, a timer thread prints
the stack of every unfinished task to the test's captured output.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading

#: how long before pytest-timeout fires the task stacks are printed (a second is plenty to print)
LEAD_S = 1.0


def unfinished_task_stacks(limit: int = 25) -> str:
    """The stack of every asyncio task not done, innermost frame last (read from another thread)."""
    out = io.StringIO()
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    out.write(f"{len(tasks)} unfinished asyncio task(s)\n")
    for task in tasks:
        out.write(f"--- {task.get_name()}: {task.get_coro()!r}\n")
        try:
            task.print_stack(limit=limit, file=out)
        except Exception as exc:  # noqa: BLE001 - a task finishing while we read it is no reason to lose the rest
            out.write(f"    (stack not readable: {exc!r})\n")
    return out.getvalue()


def arm(timeout_s: float) -> threading.Timer | None:
    """Start the timer for one test; ``None`` when the timeout is too short to lead it."""
    if timeout_s <= LEAD_S * 2:
        return None

    def report() -> None:
        sys.stdout.write("+++ asyncio tasks before the timeout +++\n" + unfinished_task_stacks())
        sys.stdout.flush()

    timer = threading.Timer(timeout_s - LEAD_S, report)
    timer.name = "hang-report"
    timer.daemon = True
    timer.start()
    return timer
