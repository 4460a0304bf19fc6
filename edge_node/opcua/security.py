"""Building an asyncua Client for one endpoint: security policy, client certificate, trust list, user.

Why a separate module: the OPC UA source recreates its Client on every reconnect (reusing one
instance sometimes hangs, FreeOpcUa/opcua-asyncio#1660), so "how to make a correctly secured
client" must be one call.

* The client certificate (DER) and key (PEM) live under ``<data_dir>/pki/own/`` and are generated
  on first run (asyncua's ``setup_self_signed_certificate``; regenerated when expired or when the
  host name / application URI changed). An operator copies ``client_cert.der`` into the server's
  trusted folder once.
* Server certificates: with a ``trust_dir`` the server's certificate must be in it (exact
  certificate, or issued by a CA certificate in it), be within its validity period and carry the
  server's application URI; a rejected certificate is written to ``<data_dir>/pki/rejected/`` so the
  operator can review and move it into the trust dir (the usual OPC UA workflow), and the connect
  fails with :class:`UntrustedServerCertificate` naming the endpoint, subject and thumbprint. The
  trust dir is re-read on every connect attempt, so a certificate moved into it is trusted on the
  next reconnect without a restart. ``trust_unknown_server_certificates`` accepts a certificate
  that is not in the list (still checking its validity period and URI) and logs its thumbprint,
  with or without a ``trust_dir``. Without either, any server certificate is accepted unchecked
  and a warning says so; the
  ``production`` security profile only allows that with ``trust_unknown_server_certificates``
  (checked when the config is loaded, :meth:`edge_node.config.EdgeConfig._security_profile_issues`),
  so the runtime follows the endpoint's fields alone.
* Users: the subscription session uses the endpoint's ``username``; the command writer passes
  ``write_credentials`` (:meth:`OpcUaEndpointConfig.writer_credentials`) so a plant can give the
  account that may write setpoints to the write session only.
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

from edge_node.errors import EdgeError

from ..config import OpcUaCredentials, OpcUaEndpointConfig, SecurityMode, SecurityPolicy

log = logging.getLogger("edge_node.opcua_security")  # its name before edge_node.opcua

_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
}
_MODES: dict[SecurityMode, ua.MessageSecurityMode] = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


class UntrustedServerCertificate(EdgeError, ConnectionError):
    """The server's certificate was refused (not trusted, expired, wrong URI); it was saved for review.

    A ConnectionError so the supervisors treat it like any failed connect (endpoint down, backoff,
    retry: the operator may trust the certificate meanwhile), with a message that says which
    certificate and why.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def client_certificate_paths(endpoint: OpcUaEndpointConfig, data_dir: Path) -> tuple[Path, Path]:
    """``(certificate, private_key)`` of this endpoint's client identity."""
    if endpoint.certificate is not None and endpoint.private_key is not None:
        return endpoint.certificate, endpoint.private_key
    own = data_dir / "pki" / "own"
    return own / "client_cert.der", own / "client_key.pem"


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def thumbprint(cert: x509.Certificate) -> str:
    """The OPC UA thumbprint (SHA-1 of the DER, Part 6 §6.2.3): what UaExpert and server GUIs show."""
    return hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest()  # noqa: S324 - an identifier, not a MAC


class ServerCertificateValidator:
    """asyncua ``certificate_validator`` hook: trust list check with a rejected-certificates folder."""

    def __init__(self, trust_dir: Path | None, rejected_dir: Path, *, endpoint: str = "default",
                 accept_unknown: bool = False) -> None:
        self.trust_dir = trust_dir
        self.rejected_dir = rejected_dir
        self.endpoint = endpoint
        self.accept_unknown = accept_unknown
        self._pinned: set[str] = set()
        self._store: TrustStore | None = None

    async def load(self) -> None:
        if self.trust_dir is None:  # trust_unknown_server_certificates without a list: nothing is pinned
            return
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
        code = ua.StatusCodes.BadCertificateUntrusted
        who = f"subject {cert.subject.rfc4514_string()!r}, thumbprint {thumbprint(cert)}"
        trust_list = str(self.trust_dir) if self.trust_dir is not None else "(no trust_dir)"
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            problem = f"expired or not yet valid ({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
            code = ua.StatusCodes.BadCertificateTimeInvalid
        elif _fingerprint(cert) not in self._pinned and not self._ca_trusted(cert):
            if self.accept_unknown:
                log.warning("endpoint %s: server certificate (%s) is not in the trust list %s; accepted because "
                            "trust_unknown_server_certificates is true", self.endpoint, who, trust_list)
            else:
                problem = f"not in the trust list {trust_list}"
        if problem is None:
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
        where = self.trust_dir if self.trust_dir is not None else "a trust_dir"
        message = (f"endpoint {self.endpoint}: OPC UA server certificate refused ({who}): {problem}; saved to "
                   f"{saved} (move it to {where} to trust it)")
        log.error("%s", message)
        raise UntrustedServerCertificate(message, status=code)

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


async def build_client(endpoint: OpcUaEndpointConfig, data_dir: Path, *,
                       credentials: OpcUaCredentials | None = None) -> Client:
    """A new, not yet connected asyncua Client configured for ``endpoint``.

    ``credentials``: the session's user; unset = the endpoint's read account (``username``, or
    anonymous without one). The command writer passes :meth:`OpcUaEndpointConfig.writer_credentials`.

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
    user = credentials if credentials is not None else endpoint.read_credentials()
    if user is not None:
        client.set_user(user.username)
        password = user.resolved_password(endpoint.name)
        if password is not None:
            client.set_password(password)
    if endpoint.secure:
        if endpoint.trust_dir is not None or endpoint.trust_unknown_server_certificates:
            validator = ServerCertificateValidator(endpoint.trust_dir, data_dir / "pki" / "rejected",
                                                   endpoint=endpoint.name,
                                                   accept_unknown=endpoint.trust_unknown_server_certificates)
            await validator.load()
            client.certificate_validator = validator
        else:
            log.warning("endpoint %s: no trust_dir, any server certificate is accepted", endpoint.name)
        cert_path, key_path = client_certificate_paths(endpoint, data_dir)
        if endpoint.certificate is None:
            await client.setup_self_signed_certificate(key_path, cert_path)
        await client.set_security(
            _POLICIES[endpoint.security_policy], str(cert_path), str(key_path),
            mode=_MODES[endpoint.security_mode])
    return client
