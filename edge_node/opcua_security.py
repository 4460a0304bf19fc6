"""Building an asyncua Client for one endpoint: security policy, client certificate, trust list, user.

Why a separate module: the OPC UA source recreates its Client on every reconnect (reusing one
instance sometimes hangs, reference/libraries.md §3.4), so "how to make a correctly secured
client" must be one call.

* The client certificate (DER) and key (PEM) live under ``<data_dir>/pki/own/`` and are generated
  on first run (asyncua's ``setup_self_signed_certificate``; regenerated when expired or when the
  host name / application URI changed). An operator copies ``client_cert.der`` into the server's
  trusted folder once.
* Server certificates: with a ``trust_dir`` the server's certificate must be in it (exact
  certificate, or issued by a CA certificate in it), be within its validity period and carry the
  server's application URI; a rejected certificate is written to ``<data_dir>/pki/rejected/`` so the
  operator can review and move it into the trust dir (the usual OPC UA workflow). Without a
  ``trust_dir`` any server certificate is accepted and a warning says so.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.uacrypto import load_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .config import OpcUaEndpointConfig, SecurityMode, SecurityPolicy

log = logging.getLogger(__name__)

_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
}
_MODES: dict[SecurityMode, ua.MessageSecurityMode] = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


class UntrustedServerCertificate(ConnectionError):
    """The server's certificate is not in the trust list (it was saved for review)."""


def client_certificate_paths(endpoint: OpcUaEndpointConfig, data_dir: Path) -> tuple[Path, Path]:
    """``(certificate, private_key)`` of this endpoint's client identity."""
    if endpoint.certificate is not None and endpoint.private_key is not None:
        return endpoint.certificate, endpoint.private_key
    own = data_dir / "pki" / "own"
    return own / "client_cert.der", own / "client_key.pem"


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


class ServerCertificateValidator:
    """asyncua ``certificate_validator`` hook: trust list check with a rejected-certificates folder."""

    def __init__(self, trust_dir: Path, rejected_dir: Path) -> None:
        self.trust_dir = trust_dir
        self.rejected_dir = rejected_dir
        self._pinned: set[str] = set()
        self._store: TrustStore | None = None

    async def load(self) -> None:
        self.trust_dir.mkdir(parents=True, exist_ok=True)
        pinned: set[str] = set()
        for path in sorted(self.trust_dir.iterdir()):
            if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                continue
            try:
                pinned.add(_fingerprint(await load_certificate(path)))
            except Exception as exc:  # a junk file in the folder must not stop the edge node
                log.warning("trust list: cannot read %s: %s", path, exc)
        self._pinned = pinned
        store = TrustStore([self.trust_dir], [])
        try:
            await store.load()
            self._store = store
        except Exception as exc:
            log.debug("trust list: CA store not usable (%s); exact certificates only", exc)
            self._store = None

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        now = datetime.now(UTC)
        problem: str | None = None
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            problem = f"expired or not yet valid ({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
        elif _fingerprint(cert) not in self._pinned and not self._ca_trusted(cert):
            problem = f"not in the trust list {self.trust_dir}"
        else:
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
            except x509.ExtensionNotFound:
                uris = []
            if app.ApplicationUri and app.ApplicationUri not in uris:
                problem = f"does not name the server's application URI {app.ApplicationUri!r}"
        if problem is None:
            return
        saved = self._save_rejected(cert)
        log.error("OPC UA server certificate %s rejected: %s; saved to %s (move it to %s to trust it)",
                  cert.subject.rfc4514_string(), problem, saved, self.trust_dir)
        from asyncua.common.utils import ServiceError

        code = (ua.StatusCodes.BadCertificateTimeInvalid if problem.startswith("expired")
                else ua.StatusCodes.BadCertificateUntrusted)
        raise ServiceError(code)

    def _ca_trusted(self, cert: x509.Certificate) -> bool:
        if self._store is None:
            return False
        try:
            return bool(self._store.is_trusted(cert))
        except Exception:
            return False

    def _save_rejected(self, cert: x509.Certificate) -> Path:
        self.rejected_dir.mkdir(parents=True, exist_ok=True)
        path = self.rejected_dir / f"{_fingerprint(cert)[:16]}.der"
        try:
            path.write_bytes(cert.public_bytes(Encoding.DER))
        except OSError as exc:
            log.warning("cannot save rejected certificate to %s: %s", path, exc)
        return path


async def build_client(endpoint: OpcUaEndpointConfig, data_dir: Path) -> Client:
    """A new, not yet connected asyncua Client configured for ``endpoint``.

    ``auto_reconnect`` stays off: the source's own supervisor decides when a session is dead and
    recreates the Client (asyncua's supervisor resumed in only 4 of 5 trials). asyncua's own health
    probe would otherwise read ServerState every second with a 1 s timeout and declare every
    subscription lost on a busy server: measured at 10,000 tags (bench/edge_pipeline.py), 7-9
    needless session losses per 20 s, each re-creating every monitored item, which loaded the
    server further. It now runs at half the session timeout; the source's watchdog
    (``keepalive_interval_s`` with ``timeout_s``) is the detector that counts.
    """
    client = Client(endpoint.url, timeout=endpoint.timeout_s, auto_reconnect=False,
                    watchdog_intervall=max(endpoint.session_timeout_s / 2, endpoint.timeout_s))
    client.application_uri = endpoint.application_uri
    client.name = "uns-hub edge node"
    client.description = client.name
    client.product_uri = "urn:uns-hub"
    client.session_timeout = int(endpoint.session_timeout_s * 1000)
    if endpoint.username is not None:
        client.set_user(endpoint.username)
        password = endpoint.resolved_password()
        if password is not None:
            client.set_password(password)
    if endpoint.trust_dir is not None:
        validator = ServerCertificateValidator(endpoint.trust_dir, data_dir / "pki" / "rejected")
        await validator.load()
        client.certificate_validator = validator
    elif endpoint.secure:
        log.warning("endpoint %s: no trust_dir, any server certificate is accepted", endpoint.name)
    if endpoint.secure:
        cert_path, key_path = client_certificate_paths(endpoint, data_dir)
        if endpoint.certificate is None:
            await client.setup_self_signed_certificate(key_path, cert_path)
        await client.set_security(
            _POLICIES[endpoint.security_policy], str(cert_path), str(key_path),
            mode=_MODES[endpoint.security_mode])
    return client
