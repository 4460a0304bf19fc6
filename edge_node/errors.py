"""The root of every error the edge node (:mod:`edge_node`) raises.

One root per package (``tests/test_exception_roots.py``) so ``except EdgeError`` means "the edge
node's own refusal or failure". Subclasses keep the builtin base their callers catch
(``ConnectionError`` for a lost OPC UA session, ``ValueError`` for bad input, ...), and an edge
error that is also a Sparkplug encoding fault keeps :class:`uns.sparkplug.errors.EncodeError`.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every exception class defined in :mod:`edge_node`."""


__all__ = ["EdgeError"]
