"""Errors of the MES adapter core, split by whose fault they are.

A peer (the MES, an operator, another plant app) sending something we must refuse raises a
:class:`MesInputError` subclass: the boundary (REST, MQTT) answers it with the message and goes on.
A :class:`MesStateError` means stored data contradicts itself (a bug or a hand-edited file), never a
peer's doing.
"""

from __future__ import annotations

import json


class MesError(Exception):
    """Base of every error raised by :mod:`mes_adapter` (outside ``host``)."""


class StateStoreUnavailableError(MesError, ConnectionError):
    """The shared PostgreSQL of the MES state could not be reached or dropped the connection: a passing
    error (a :class:`ConnectionError`, so an :class:`OSError` that ingest keeps and retries like a full
    disk; the API answers 503)."""


class MesInputError(MesError, ValueError):
    """A peer asked for something the adapter refuses; the message says why."""


class RefusalError(MesInputError):
    """A request refused with an HTTP ``status`` and a ``reason`` code the API answers as they are
    (orders, lots, crew, dispositions); ``message`` says why in words."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def json_object(cls, payload: bytes, what: str) -> dict:
        """``payload`` (an assertion on a ``_context`` topic) as a JSON object, or this refusal
        (422 ``invalid_payload``) naming ``what`` it should have been."""
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise cls(422, "invalid_payload", f"{what} is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise cls(422, "invalid_payload", f"{what} must be a JSON object")
        return body


class InvalidLineError(MesInputError):
    """A line key is not ``<enterprise>/<site>/<area>/<line>`` with valid ISA-95 names."""


class LineNotOwnedError(MesInputError):
    """A line of a Sparkplug group another adapter instance owns (``host.groups``)."""


class ContextRejectedError(MesInputError):
    """A context assertion was refused (stale or conflicting sequence, inconsistent end)."""

    def __init__(self, line: str, seq: int, reason: str) -> None:
        super().__init__(f"context assertion seq {seq} for line {line!r} refused: {reason}")
        self.line = line
        self.seq = seq
        self.reason = reason


class InvalidContextPayloadError(MesInputError):
    """A retained ``_context`` payload is not a valid context assertion."""


class OutboxConflictError(MesInputError):
    """The same confirmation id was enqueued again with different content.

    Raised instead of overwriting: a confirmation id is an idempotency key, and the MES must never
    see two different bodies under one key.
    """

    def __init__(self, confirmation_id: str) -> None:
        super().__init__(
            f"confirmation {confirmation_id} is already in the outbox with different content; "
            "a correction must be a new confirmation, never an edit"
        )
        self.confirmation_id = confirmation_id


class UnknownConfirmationError(MesInputError):
    """No confirmation with this id is in the outbox."""


class MesStateError(MesError):
    """Stored data contradicts itself: a bug or a hand-edited database, never a peer's doing."""
