"""The root of the audit package's errors.

Its own module so that every audit module (the writer, the verifier, the readers, the exporter)
can raise and catch it without importing another of them: the writer runs the verifier on open,
and an error class shared through either would tie the two together again.
"""

from __future__ import annotations

from uns.errors import UnsError


class AuditError(UnsError):
    """Base of the audit log's errors."""


__all__ = ["AuditError"]
