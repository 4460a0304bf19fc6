"""A tiny asyncua server for edge node tests: a few variables we control exactly.

Values are written with an explicit StatusCode and SourceTimestamp so validation rules can be
checked end to end. ``restart()`` stops and starts the server on the same port, which is how the
tests simulate a PLC going away and coming back.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.net import free_port

NAMESPACE = "urn:uns-hub:test"
logging.getLogger("asyncua").setLevel(logging.WARNING)

#: (path, datatype, initial value)
DEFAULT_VARS: list[tuple[str, ua.VariantType, Any]] = [
    ("Line1/State", ua.VariantType.String, "Idle"),
    ("Line1/Filler/Speed", ua.VariantType.Double, 10.0),
    ("Line1/Filler/GoodCount", ua.VariantType.UInt32, 0),
    ("Line1/Filler/Temperature", ua.VariantType.Double, 20.0),
    ("Line1/Capper/Speed", ua.VariantType.Double, 5.0),
    ("Line1/Capper/Running", ua.VariantType.Boolean, False),
]


class TestOpcUaServer:
    __test__ = False  # not a pytest class

    def __init__(self, *, port: int | None = None, secure_dir: Path | None = None,
                 variables: list[tuple[str, ua.VariantType, Any]] | None = None,
                 users: dict[str, str] | None = None, admin_users: frozenset[str] = frozenset(),
                 writable: bool = True) -> None:
        self.port = port or free_port()
        self.secure_dir = secure_dir
        self.variables = variables or DEFAULT_VARS
        self.users = users
        #: users logged in with asyncua's Admin role: the only role that writes a variable whose access
        #: level is read-only (``writable=False``), i.e. a per-user write right
        self.admin_users = admin_users
        self.writable = writable
        self.server: Server | None = None
        self.nodes: dict[str, Any] = {}
        self.ns = 2
        self.cert_path: Path | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/test/"

    def node_id(self, path: str) -> str:
        return f"ns={self.ns};s={path}"

    async def start(self) -> TestOpcUaServer:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("uns-hub test server")
        if self.secure_dir is not None:
            self.secure_dir.mkdir(parents=True, exist_ok=True)
            key, cert = self.secure_dir / "server_key.pem", self.secure_dir / "server_cert.der"
            await setup_self_signed_certificate(
                key, cert, "urn:uns-hub:test-server", "localhost",
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {})
            await server.set_application_uri("urn:uns-hub:test-server")
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_Sign,
                                        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            self.cert_path = cert
        if self.users is not None:
            users, admins = self.users, self.admin_users

            class _UserManager:
                def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                             certificate: Any = None) -> Any:
                    from asyncua.crypto.permission_rules import User, UserRole

                    if username in users and users[username] == password:
                        return User(role=UserRole.Admin if username in admins else UserRole.User, name=username)
                    return None

            server.iserver.set_user_manager(_UserManager())  # type: ignore[arg-type]
        self.ns = await server.register_namespace(NAMESPACE)
        objects = server.nodes.objects
        folders: dict[str, Any] = {}
        for path, vtype, initial in self.variables:
            parts = path.split("/")
            parent = objects
            for depth in range(1, len(parts)):
                key = "/".join(parts[:depth])
                if key not in folders:
                    folders[key] = await parent.add_object(ua.NodeId(key, self.ns), parts[depth - 1])
                parent = folders[key]
            var = await parent.add_variable(ua.NodeId(path, self.ns), parts[-1], ua.Variant(initial, vtype))
            if self.writable:
                await var.set_writable()
            self.nodes[path] = var
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    async def restart(self) -> None:
        await self.stop()
        self.nodes.clear()
        await self.start()

    async def write(self, path: str, value: Any, *, status: int = 0, source_ts: dt.datetime | None = None,
                    vtype: ua.VariantType | None = None) -> None:
        node = self.nodes[path]
        if vtype is None:
            vtype = next(t for p, t, _ in self.variables if p == path)
        variant = ua.Variant(value, vtype) if value is not None else ua.Variant()
        dv = ua.DataValue(variant, ua.StatusCode(status),
                          SourceTimestamp=source_ts or dt.datetime.now(dt.UTC),
                          ServerTimestamp=dt.datetime.now(dt.UTC))
        await self.server.write_attribute_value(node.nodeid, dv)  # type: ignore[union-attr]

    async def __aenter__(self) -> TestOpcUaServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
