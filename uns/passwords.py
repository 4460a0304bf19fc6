"""argon2id password hashing shared by every service that keeps user passwords (the broker's
password file, the adapter's dashboard users): one hasher, one constant-time check, one dummy
hash so an unknown user costs the same time as a wrong password.

Hashing and verifying are CPU-bound (tens of milliseconds by design): call them off the event loop.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("password must not be empty")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time argon2 check. Blocking: call it off the event loop."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A real hash of a random password, verified against for unknown users (equal timing)."""
    return _HASHER.hash(secrets.token_urlsafe(16))
