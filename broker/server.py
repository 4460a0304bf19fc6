"""Start and stop the embedded broker from Python: ``EmbeddedBroker`` and ``run_broker``.

``uns broker`` and ``uns up`` use these; so can tests that want the broker in-process::

    settings = BrokerSettings(tcp=Listener(host="127.0.0.1", port=0), websocket=None,
                              demo_anonymous="read-write", sys_interval=0)
    async with EmbeddedBroker(settings) as broker:
        print(broker.ports)            # {"tcp": 49321}
        ...

``run_broker(settings)`` runs until cancelled or until ``stop`` (an ``asyncio.Event``) is set,
which is what a CLI or a supervisor task wants. It also serves ``/metrics``, ``/healthz`` and
``/readyz`` (``settings.http``, :mod:`broker.observability`); ``EmbeddedBroker`` alone does not,
so in-process brokers in tests and benchmarks never compete for the default port.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from amqtt.contexts import BrokerConfig, ListenerType

from .acl import Authorizer
from .amqtt_ext import UnsBroker
from .client_ids import ClientIdPolicy
from .config import BrokerSettings, DemoAnonymous, Listener, TlsListener
from .policy import DEMO_ROLES, merged_roles

log = logging.getLogger("broker")


def amqtt_config(settings: BrokerSettings) -> BrokerConfig:
    """Translate our settings into amqtt's config (listeners and our auth plugin only)."""
    named: list[tuple[str, Listener | TlsListener, str, bool]] = []
    for name, listener, kind, tls in (("tcp", settings.tcp, "tcp", False),
                                      ("websocket", settings.websocket, "ws", False),
                                      ("tls", settings.tls, "tcp", True), ("wss", settings.wss, "ws", True)):
        if listener is not None:
            named.append((name, listener, kind, tls))
    listeners: dict[str, dict[str, Any]] = {}
    for index, (name, listener, kind, tls) in enumerate(named):
        entry: dict[str, Any] = {"type": kind, "bind": f"{listener.host}:{listener.port}"}
        if tls and isinstance(listener, TlsListener):
            entry |= {"ssl": True, "certfile": str(listener.certfile), "keyfile": str(listener.keyfile)}
            if listener.cafile is not None:
                entry["cafile"] = str(listener.cafile)
        # amqtt requires a listener called "default" and copies its unset fields into the others
        listeners["default" if index == 0 else name] = entry
    anonymous_role = None if settings.demo_anonymous is DemoAnonymous.OFF else DEMO_ROLES[settings.demo_anonymous]
    config = BrokerConfig.from_dict({
        "listeners": listeners,
        "timeout_disconnect_delay": 0,
        "plugins": {
            "broker.auth_plugin.UnsAuthPlugin": {
                "password_file": str(settings.password_file) if settings.password_file else None,
                "anonymous_role": anonymous_role,
            },
        },
    })
    # BrokerConfig copies the "default" listener's values into every field another listener left
    # at its dataclass default (type tcp, ssl off, ...); put our own values back.
    for name, entry in listeners.items():
        target = config.listeners[name]
        target.type = ListenerType(entry["type"])
        target.ssl = entry.get("ssl", False)
        for key in ("certfile", "keyfile", "cafile"):
            setattr(target, key, Path(entry[key]) if key in entry else None)
    return config


def _listener_names(settings: BrokerSettings) -> dict[str, str]:
    """amqtt listener name -> our name (the first enabled one is amqtt's "default")."""
    ours = [n for n in ("tcp", "websocket", "tls", "wss") if getattr(settings, n) is not None]
    return {("default" if i == 0 else n): n for i, n in enumerate(ours)}


class EmbeddedBroker:
    """One embedded broker. ``start()`` returns once every listener accepts connections."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.settings = settings
        self._broker: UnsBroker | None = None

    @property
    def broker(self) -> UnsBroker:
        if self._broker is None:
            raise RuntimeError("the broker is not started; await start() first")
        return self._broker

    @property
    def ports(self) -> dict[str, int]:
        """Our listener name (tcp, websocket, tls, wss) -> the port it listens on."""
        names = _listener_names(self.settings)
        return {names[k]: port for k, port in self.broker.bound_ports().items() if k in names}

    async def start(self) -> None:
        if self._broker is not None:
            raise RuntimeError("the broker is already started")
        roles = merged_roles(self.settings.custom_roles())
        broker = UnsBroker(amqtt_config(self.settings), authorizer=Authorizer(roles),
                           sys_interval=self.settings.sys_interval,
                           client_ids=ClientIdPolicy.of(roles, self.settings.reserved_client_ids),
                           max_packet_size=self.settings.max_packet_size_bytes,
                           max_queued_qos0=self.settings.max_queued_qos0_bytes)
        await broker.start()
        self._broker = broker
        log.info("broker listening: %s; anonymous access: %s; users: %s",
                 ", ".join(f"{name}={port}" for name, port in self.ports.items()),
                 self.settings.demo_anonymous.value, self.settings.password_file or "none")

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def run_broker(settings: BrokerSettings, stop: asyncio.Event | None = None) -> None:
    """Run the broker until ``stop`` is set or the task is cancelled; always shuts down cleanly."""
    broker = EmbeddedBroker(settings)
    await broker.start()
    observability = None
    try:
        address = settings.http_address()
        if address is not None:
            from .observability import BrokerObservability  # prometheus/uvicorn only when asked for

            observability = BrokerObservability(broker, *address)
            await observability.start()
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        await asyncio.shield(broker.stop())
        if observability is not None:  # last, so a probe sees "stopping" rather than a refused connection
            await asyncio.shield(observability.stop())
