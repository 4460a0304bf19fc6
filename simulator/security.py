"""Server certificate and user logins for the simulator's secure endpoints.

A plant server has a CA-issued certificate; a simulator only needs *a* certificate so the edge node's
Basic256Sha256 code paths can be exercised. It is generated once into the data directory and reused,
so a client that pinned it keeps trusting it across simulator restarts.

Users may be ``read_only``: their Write and Call requests are refused as a whole with
``BadUserAccessDenied`` (:class:`ReadOnlyUsersRuleset`), the way a plant gives the edge's
subscription account no write right and its command writer a separate account
(``write_credentials`` in plant.yaml).
"""

from __future__ import annotations

import hmac
import socket
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.config import SecurityConfig, SecurityMode

APPLICATION_URI = "urn:uns-hub:simulator:server"

POLICY_TYPES: dict[SecurityMode, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


async def ensure_server_certificate(data_dir: Path) -> tuple[Path, Path]:
    """Create (or reuse) ``server_cert.der`` and ``server_key.pem`` in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once at start, before serving
    cert = data_dir / "server_cert.der"
    key = data_dir / "server_key.pem"
    await setup_self_signed_certificate(
        key,
        cert,
        APPLICATION_URI,
        socket.gethostname(),
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        {"countryName": "US", "organizationName": "uns-hub", "commonName": "uns-hub simulator"},
    )
    return cert, key


#: services a read-only user may not use: they change the plant
_WRITE_SERVICES = frozenset({
    ua.NodeId(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary),
    ua.NodeId(ua.ObjectIds.CallRequest_Encoding_DefaultBinary),
})


class ReadOnlyUsersRuleset(SimpleRoleRuleset):
    """asyncua's role rules, plus: the configured read-only users may not Write or Call."""

    def __init__(self, read_only: frozenset[str]) -> None:
        super().__init__()
        self._read_only = read_only

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        if getattr(user, "name", None) in self._read_only and action_type_id in _WRITE_SERVICES:
            return False
        return bool(super().check_validity(user, action_type_id, body))


def permission_ruleset(security: SecurityConfig) -> ReadOnlyUsersRuleset:
    return ReadOnlyUsersRuleset(frozenset(user.username for user in security.users if user.read_only))


class ConfiguredUserManager:
    """Accepts the configured username/password pairs, and anonymous sessions if allowed."""

    def __init__(self, security: SecurityConfig) -> None:
        self._passwords = {user.username: user.password for user in security.users}
        self._allow_anonymous = security.allow_anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User) if self._allow_anonymous else None
        expected = self._passwords.get(username)
        given = password if isinstance(password, str) else (password or b"").decode("utf-8", "replace")
        if expected is not None and hmac.compare_digest(expected.encode(), given.encode()):
            return User(role=UserRole.User, name=username)
        return None


def identity_tokens(security: SecurityConfig) -> list[type]:
    tokens: list[type] = []
    if security.allow_anonymous:
        tokens.append(ua.AnonymousIdentityToken)
    if security.users:
        tokens.append(ua.UserNameIdentityToken)
    return tokens
