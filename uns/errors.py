"""The root of every error the core (:mod:`uns`) raises, and the one configuration error.

Each package has one exception root so a caller can tell *whose* error it caught (``except
UnsError`` catches the core's, never a service's) and a test (``tests/test_exception_roots.py``)
keeps it that way. Subclasses keep the builtin base their callers already catch (``ValueError``
for bad input, ``RuntimeError``, ...): the root is added beside it, never in its place.
"""

from __future__ import annotations

from collections.abc import Sequence


class UnsError(Exception):
    """Base of every exception class defined in :mod:`uns`."""


class ConfigError(UnsError, ValueError):
    """A config file is unreadable or invalid; ``str()`` lists every problem as ``file:line: field: msg``.

    The one configuration error of the project: services raise it (or a subclass of their own
    root, e.g. the broker's) so the CLI reports every config problem the same way.
    """

    def __init__(self, message: str, issues: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.issues: list[str] = list(issues) or [message]


__all__ = ["ConfigError", "UnsError"]
