"""The root of every error the broker package (:mod:`broker`) raises.

Named ``UnsBrokerError`` (the errors of ``uns broker``), not ``BrokerError``: amqtt already has an
``amqtt.errors.BrokerError`` that the CLI catches when the embedded broker fails to start, and two
classes of that name in one process invite the wrong import. One root per package
(``tests/test_exception_roots.py``); subclasses keep ``ValueError`` for bad input.
"""

from __future__ import annotations


class UnsBrokerError(Exception):
    """Base of every exception class defined in :mod:`broker`."""


__all__ = ["UnsBrokerError"]
