"""The root of every error the core (:mod:`uns`) raises.

Each package has one exception root so a caller can tell *whose* error it caught (``except
UnsError`` catches the core's, never a service's) and a test (``tests/test_exception_roots.py``)
keeps it that way. Subclasses keep the builtin base their callers already catch (``ValueError``
for bad input, ``RuntimeError``, ...): the root is added beside it, never in its place.
"""

from __future__ import annotations


class UnsError(Exception):
    """Base of every exception class defined in :mod:`uns`."""


__all__ = ["UnsError"]
