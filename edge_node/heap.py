"""Give the heap that start-up leaves free back to the system (glibc ``malloc_trim``).

Why: at 50,000 tags (issue 20, bench/edge_pipeline.py) the config's validation, the reads at
connect, the monitored item requests and the births allocate hundreds of MB that are freed again
but stay in glibc's heap, fragmented between what the running edge keeps; the process's RSS never
shrinks by itself. ``malloc_trim(0)`` returns free pages (also inside the heap) to the kernel.
It is called after the config is loaded and each time an endpoint finished (re)connecting, i.e.
rarely; it costs milliseconds. Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("edge_node.heap")


def _glibc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _glibc_trim()


def trim_heap() -> bool:
    """Return free heap pages to the system; False where glibc's ``malloc_trim`` is not available."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
