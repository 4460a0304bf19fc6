"""Who is calling the REST API, and what they may do: bearer tokens mapped to users with one role.

Roles are ordered, each includes the ones below it: ``viewer`` (read) < ``operator`` (batch
context, submit and sign own commands) < ``supervisor`` (approve others' commands, requeue dead
letters) < ``engineer`` (audit export). ``qa`` stands beside the ladder, not on it: a QA user reads
(what a viewer may) and classifies rejects (QA disposition), and no other role may classify them —
the quality unit's decision is independent of production (EU GMP Part I 1.4, 2.5), so neither an
engineer nor a supervisor inherits it. A token identifies a user for the session; it is *not* an
electronic signature — a command's Ed25519 signature (``uns.commands.signing``) is the second,
re-authenticating component, so a stolen token alone cannot sign a write.

Tokens are kept as SHA-256 hashes where possible (``uns adapter token`` prints the secret once and
stores only its hash); plain tokens are accepted in config for demo stacks. Comparison is by
hash lookup, so the time taken does not depend on how much of a guess matched.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from mes_adapter.errors import MesError
from uns.commands.yamlsource import ConfigError, YamlSource

__all__ = ["AuthError", "Principal", "Role", "TokenEntry", "TokenFile", "TokenStore", "hash_token", "mint_token"]

#: shortest plain token accepted in config (demo tokens included)
MIN_TOKEN_LENGTH = 8


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    SUPERVISOR = 3
    ENGINEER = 4
    #: outside the ladder: reads like a viewer, and alone may disposition rejects
    QA = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use one of {[r.label for r in cls]}") from None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def mint_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "uns_" + secrets.token_urlsafe(32)


class TokenEntry(BaseModel):
    """One API user: exactly one of ``token`` (plain, demo) or ``token_sha256`` (hash, production)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    full_name: str = Field(min_length=1, max_length=256)
    role: Role
    token: SecretStr | None = None
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: object) -> object:
        return Role.parse(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_secret(self) -> TokenEntry:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of 'token' and 'token_sha256'")
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"token is shorter than {MIN_TOKEN_LENGTH} characters")
        return self

    @property
    def digest(self) -> str:
        if self.token_sha256 is not None:
            return self.token_sha256
        assert self.token is not None
        return hash_token(self.token.get_secret_value())


class TokenFile(BaseModel):
    """``tokens.yaml``: ``tokens: [{user_id, full_name, role, token_sha256}]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> TokenFile:
        """Read a tokens file; a missing one is a :class:`ConfigError` (a mistyped path would
        otherwise start the adapter without those users) unless ``missing_ok`` (``uns adapter
        token`` creates the file)."""
        if not path.exists():
            if missing_ok:
                return cls()
            raise ConfigError(f"{path}: tokens file does not exist; create it with "
                              f"`uns adapter token --tokens-file {path} ...`")
        source = YamlSource.read(path)
        try:
            return cls.model_validate(source.data or {})
        except ValidationError as exc:
            raise source.error(exc) from None

    @staticmethod
    def append(path: Path, entry: TokenEntry) -> Path | None:
        """Add one entry (hash only) to the file, written atomically with mode 0600. The rewrite
        drops comments and hand formatting, so the previous file is first copied beside it (as
        ``uns adapter users`` does); returns that backup (None when the file is new)."""
        from uns.private_file import backup_file, write_private

        current = TokenFile.load(path, missing_ok=True)
        rows = [_row(e) for e in current.tokens] + [_row(entry)]
        backup = backup_file(path)
        write_private(path, yaml.safe_dump({"tokens": rows}, sort_keys=False))
        return backup


def _row(entry: TokenEntry) -> dict[str, str]:
    return {"user_id": entry.user_id, "full_name": entry.full_name, "role": entry.role.label,
            "token_sha256": entry.digest}


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: str
    full_name: str
    role: Role

    def has(self, role: Role) -> bool:
        if role is Role.QA or self.role is Role.QA:
            return self.role is role or (self.role is Role.QA and role is Role.VIEWER)
        return self.role >= role


class AuthError(MesError):
    """Authentication failed; ``status`` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class TokenStore:
    """Token hash → principal; built once at start from config and the tokens file."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._by_digest: dict[str, Principal] = {}
        for entry in entries:
            digest = entry.digest
            if digest in self._by_digest:
                raise ConfigError(f"two API users share one token (user {entry.user_id!r}); tokens must be unique")
            self._by_digest[digest] = Principal(entry.user_id, entry.full_name, entry.role)

    @classmethod
    def from_settings(cls, inline: list[TokenEntry], tokens_file: Path | None) -> TokenStore:
        entries = list(inline)
        if tokens_file is not None:
            entries += TokenFile.load(tokens_file).tokens
        return cls(entries)

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, authorization: str | None, query_token: str | None = None) -> Principal:
        """The principal of an ``Authorization: Bearer`` header (or a query token); :class:`AuthError` if none."""
        token = None
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError(401, "bad_authorization_header",
                                "Authorization header must be 'Bearer <token>'")
            token = value.strip()
        elif query_token:
            token = query_token
        if token is None:
            raise AuthError(401, "missing_token", "no token: send 'Authorization: Bearer <token>'")
        principal = self._by_digest.get(hash_token(token))
        if principal is None:
            raise AuthError(401, "invalid_token", "the token is not known to this adapter")
        return principal

    @staticmethod
    def require(principal: Principal, role: Role, action: str) -> None:
        if not principal.has(role):
            raise AuthError(403, "role_required",
                            f"{action} needs role {role.label}; user {principal.user_id!r} has role "
                            f"{principal.role.label}")


# -- named users with passwords, and browser sessions -----------------------------------------------

#: the session cookie: HttpOnly (no script reads it), SameSite=Strict, path /
SESSION_COOKIE = "uns_session"


class UserAccount(BaseModel):
    """One dashboard user in the users file: an argon2id hash (as in the broker's password file), a role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hash: str = Field(description="argon2id hash (uns.passwords.hash_password)")
    role: Role
    full_name: str = Field(min_length=1, max_length=256)
    active: bool = True

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: object) -> object:
        return Role.parse(value) if isinstance(value, str) else value

    @field_validator("hash")
    @classmethod
    def _argon2(cls, value: str) -> str:
        if not value.startswith("$argon2"):
            raise ValueError("hash must be an argon2 hash (starts with '$argon2')")
        return value


class UsersFile(BaseModel):
    """``users.yaml``: ``users: {<user_id>: {hash, role, full_name, active}}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, UserAccount] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> UsersFile:
        if not path.exists():
            raise ConfigError(f"{path}: users file does not exist")
        source = YamlSource.read(path)
        try:
            return cls.model_validate(source.data or {})
        except ValidationError as exc:
            raise source.error(exc) from None


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    expires_ms: int


class SessionStore:
    """Logged-in browsers: session id (only its hash is kept) → principal until it expires.

    In memory on purpose: a restart of the adapter logs everyone out, which is the safe direction.
    A wrong password names no reason beyond "bad credentials" (no user enumeration) and costs the
    same argon2 time for an unknown user.
    """

    def __init__(self, users: dict[str, UserAccount], ttl_s: float) -> None:
        self._users = users
        self._ttl_ms = int(ttl_s * 1000)
        self._sessions: dict[str, Session] = {}

    def __bool__(self) -> bool:
        return bool(self._users)

    def login(self, user_id: str, password: str, now_ms: int) -> tuple[str, Session]:
        """A new session id and its session; :class:`AuthError` 401 on a wrong user or password.
        Blocking (argon2): call it off the event loop."""
        from uns.passwords import dummy_hash, verify_password

        account = self._users.get(user_id)
        ok = verify_password(account.hash if account is not None else dummy_hash(), password)
        if account is None or not ok or not account.active:
            raise AuthError(401, "bad_credentials", "wrong user name or password")
        self._expire(now_ms)
        session_id = secrets.token_urlsafe(32)
        session = Session(Principal(user_id, account.full_name, account.role), now_ms + self._ttl_ms)
        self._sessions[hash_token(session_id)] = session
        return session_id, session

    def principal(self, session_id: str, now_ms: int) -> Principal:
        session = self._sessions.get(hash_token(session_id))
        if session is None:
            raise AuthError(401, "no_session", "not logged in (or logged out): log in again")
        if now_ms >= session.expires_ms:
            del self._sessions[hash_token(session_id)]
            raise AuthError(401, "session_expired", "the session expired: log in again")
        return session.principal

    def logout(self, session_id: str) -> bool:
        return self._sessions.pop(hash_token(session_id), None) is not None

    def _expire(self, now_ms: int) -> None:
        for key in [k for k, s in self._sessions.items() if now_ms >= s.expires_ms]:
            del self._sessions[key]
