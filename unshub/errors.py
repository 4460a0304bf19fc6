"""The root of every error the composition root (:mod:`unshub`) raises.

One root per package (``tests/test_exception_roots.py``); subclasses keep the builtin base their
callers catch (``RuntimeError``, ``TimeoutError``).
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every exception class defined in :mod:`unshub`."""


__all__ = ["HubError"]
