"""The embedded broker (``uns broker run``) as a subprocess on free loopback ports, for any test.

    with embedded_broker(tmp_path) as broker:                  # anonymous read-write, TCP + WS
        client.connect(broker.host, broker.port)
    with embedded_broker(tmp_path, users={"e1": User("pw", "edge", "G1", "E1")},
                         demo_anonymous="off", tls=True) as broker:
        broker.url_for("e1", "pw", scheme="mqtts")            # mqtts://e1:pw@127.0.0.1:PORT?cafile=...

The yielded :class:`EmbeddedBrokerEndpoint` looks like ``tests.support.mosquitto.BrokerEndpoint``
(``.host .port .url .pid .kind``) so a test can run against either broker. The process is stopped
by its PID when the block ends. The broker's ``/metrics`` endpoint is off unless ``metrics_port``
is given (its default, 9101, would make parallel brokers collide).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .mosquitto import BrokerEndpoint
from .net import free_port, wait_for_port
from .procs import running, uns_command


@dataclass(frozen=True)
class User:
    password: str
    role: str = "admin"
    group: str | None = None
    edge: str | None = None


@dataclass(frozen=True)
class TlsFiles:
    cafile: Path
    certfile: Path
    keyfile: Path


@dataclass(frozen=True)
class EmbeddedBrokerEndpoint(BrokerEndpoint):
    ws_port: int | None = None
    tls_port: int | None = None
    cafile: Path | None = None
    log_path: Path | None = None
    metrics_port: int | None = None

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:PORT`` of /metrics, /healthz and /readyz (``metrics_port=`` given)."""
        if self.metrics_port is None:
            raise ValueError("this broker was started without metrics_port")
        return f"http://{self.host}:{self.metrics_port}"

    def url_for(self, username: str | None = None, password: str | None = None, scheme: str = "mqtt") -> str:
        """A broker URL for ``uns.mqtt_url`` with optional credentials: mqtt, mqtts or ws."""
        port = {"mqtt": self.port, "mqtts": self.tls_port, "ws": self.ws_port}[scheme]
        if port is None:
            raise ValueError(f"this broker has no {scheme} listener")
        auth = f"{username}:{password}@" if username and password else (f"{username}@" if username else "")
        query = f"?cafile={self.cafile}" if scheme == "mqtts" and self.cafile else ""
        return f"{scheme}://{auth}{self.host}:{port}{query}"


def make_tls_files(workdir: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throwaway CA and a server certificate for ``host`` and localhost, valid for one day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "uns-hub test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(workdir / "test-ca.pem", workdir / "broker-cert.pem", workdir / "broker-key.pem")
    files.cafile.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return files


def write_password_file(path: Path, users: Mapping[str, User]) -> Path:
    from broker.passwords import PasswordFile, save_password_file, with_user

    content = PasswordFile()
    for name, user in users.items():
        content = with_user(content, name, user.password, user.role, user.group, user.edge)
    save_password_file(path, content)
    return path


@contextmanager
def embedded_broker(workdir: Path, *, users: Mapping[str, User] | None = None,
                    demo_anonymous: str = "read-write", websocket: bool = True, tls: bool = False,
                    sys_interval: float = 0, extra_config: Mapping[str, Any] | None = None,
                    metrics_port: int | None = None) -> Iterator[EmbeddedBrokerEndpoint]:
    """Run ``uns broker run`` on free 127.0.0.1 ports; by default anonymous clients may do anything."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "tcp": {"host": "127.0.0.1", "port": port},
        "websocket": None,
        "demo_anonymous": demo_anonymous,
        "sys_interval": sys_interval,
        "http": None if metrics_port is None else {"host": "127.0.0.1", "port": metrics_port},
    }
    ws_port = tls_port = None
    cafile = None
    if websocket:
        ws_port = free_port()
        config["websocket"] = {"host": "127.0.0.1", "port": ws_port}
    if tls:
        files = make_tls_files(workdir)
        tls_port = free_port()
        cafile = files.cafile
        config["tls"] = {"host": "127.0.0.1", "port": tls_port, "certfile": str(files.certfile),
                         "keyfile": str(files.keyfile)}
    if users:
        config["password_file"] = str(write_password_file(workdir / f"broker-users-{port}.yaml", users))
    config.update(extra_config or {})
    config_path = workdir / f"broker-{port}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"broker-{port}.log"
    with running(uns_command("broker", "run", "--config", str(config_path)), log_path=log_path,
                 env={"PYTHONUNBUFFERED": "1"}) as proc:
        for p in (port, ws_port, tls_port, metrics_port):
            if p is not None:
                try:
                    wait_for_port(p, timeout=20)
                except TimeoutError:
                    raise RuntimeError(f"embedded broker did not start; log {log_path}:\n"
                                       f"{log_path.read_text(errors='replace')[-3000:]}") from None
        yield EmbeddedBrokerEndpoint("127.0.0.1", port, "embedded", proc.pid, ws_port, tls_port, cafile, log_path,
                                     metrics_port)
