"""One supervisor for every OPC UA session the edge node keeps (subscription source, command writer).

Rules (each one was learnt from a failure; the source and the writer used to keep their own copy
of this loop and the copies had drifted apart):

1. **A new Client per attempt.** asyncua can hang reconnecting an old instance
   (FreeOpcUa/opcua-asyncio#1660), so every attempt calls ``build_client`` again.
2. **Every network step is bounded.** ``build_client`` talks to the server too (GetEndpoints for
   the server certificate of a secure endpoint), so it and ``connect`` each get
   ``2 * timeout_s``: a socket that accepts and never answers must cost one timeout, not a hang.
3. **The session body decides what "connected" means.** After connect the supervisor awaits the
   caller's ``session(client)`` hook (the source resolves nodes, announces the devices,
   subscribes and pumps; the writer resolves namespaces and marks itself ready). The hook runs
   until the session dies; returning is treated as a death too (:class:`SessionDeadError`).
4. **A watchdog reads ``Server/ServerStatus/State``** every ``keepalive_interval_s`` with a
   ``timeout_s`` bound (:func:`watch_server_state`); no answer, a Bad status or a state other than
   Running ends the session. The caller may add its own check (the source: the subscription
   still publishes).
5. **Cancellation is never swallowed.** ``CancelledError`` always propagates; an ``except
   Exception`` calls :func:`uns.aio.raise_if_cancelling` (Python 3.11's ``wait_for`` can turn a
   cancel into the inner exception), otherwise ``stop()`` of the owner would wait forever.
6. **The client is closed on every exit path** (failure, cancellation during connect, during the
   session or during backoff): a bounded DISCONNECT (errors ignored, a cancel propagates) and then,
   always, the socket is dropped.
7. **Hooks in a fixed order.** On a failure: ``on_error(exc)`` (log, count), then, cancelled or
   not, ``on_closed()`` (synchronous: clear "connected" flags) and the client is closed; only if
   not cancelled ``on_lost()`` (async: announce DDEATH, mark tags stale) runs after the close, and
   then the jittered exponential backoff (:class:`edge_node.backoff.Backoff`) before the next
   attempt. The hook calls ``backoff.reset()`` itself once the session is really up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from asyncua import Client, ua

from edge_node.errors import EdgeError
from uns.aio import raise_if_cancelling

from ..backoff import Backoff
from ..config import OpcUaCredentials, OpcUaEndpointConfig
from .security import build_client

log = logging.getLogger("edge_node.opcua_connection")  # its name before edge_node.opcua

_DISCONNECT_TIMEOUT_S = 2.0


class SessionDeadError(EdgeError, ConnectionError):
    """The watchdog or the session body says the OPC UA session is gone."""


async def watch_server_state(client: Client, endpoint: OpcUaEndpointConfig, *,
                             check: Callable[[], None] | None = None,
                             heard: Callable[[], float | None] | None = None,
                             on_late: Callable[[], None] | None = None) -> None:
    """Read ``ServerStatus/State`` every ``keepalive_interval_s``; raise :class:`SessionDeadError` when it fails.

    ``check`` runs after every good read and raises :class:`SessionDeadError` for a caller's own
    condition (the source: the subscription has been silent for too long).

    ``heard`` (monotonic time the server last delivered a publish response, or None) keeps a
    session whose read is late but whose subscriptions still deliver: under an alarm flood on a
    busy machine the read's answer queues behind seconds of notifications, and ending that session
    lost every event the server still held for it (bench/alarm_flood.py). A late read is then
    counted (``on_late``) and logged; a server silent in both ways for ``timeout_s`` is dead.
    """
    state_node = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)
    while True:
        await asyncio.sleep(endpoint.keepalive_interval_s)
        try:
            results = await asyncio.wait_for(client.uaclient.read_attributes([state_node], ua.AttributeIds.Value),
                                             timeout=endpoint.timeout_s)
        except TimeoutError:
            last = heard() if heard is not None else None
            if last is None or time.monotonic() - last > endpoint.timeout_s:
                raise SessionDeadError(f"no answer to the keep-alive read within {endpoint.timeout_s} s") from None
            if on_late is not None:
                on_late()
            log.warning("%s: no answer to the keep-alive read within %s s, but the server published %.1f s ago: "
                        "busy, not dead; the session stays", endpoint.name, endpoint.timeout_s,
                        time.monotonic() - last)
            continue
        dv = results[0]
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            raise SessionDeadError(f"ServerStatus/State read failed: {dv.StatusCode.name}")
        state = dv.Value.Value if dv.Value is not None else None
        if state is not None and int(state) != ua.ServerState.Running:
            raise SessionDeadError(f"server state is {ua.ServerState(int(state)).name}")
        if check is not None:
            check()


def silence_check(endpoint: OpcUaEndpointConfig, last_publish_at: Callable[[], float | None],
                  keepalive_count: int) -> Callable[[], None]:
    """A watchdog ``check`` that fails when the session's subscriptions have published nothing
    (keep-alives included; ``last_publish_at`` gives the newest of them) for ``max(5 s, 3 keep-alive
    periods, 3 watchdog intervals)``."""
    publishing_s = endpoint.publishing_interval_ms / 1000
    stale_after = max(5.0, 3 * max(1, keepalive_count) * publishing_s, 3 * endpoint.keepalive_interval_s)
    started = time.monotonic()

    def check() -> None:
        last = last_publish_at() or started
        if time.monotonic() - last > stale_after:
            raise SessionDeadError(f"subscription silent for more than {stale_after:.1f} s")

    return check


class OpcUaConnection:
    """Connect, run the caller's session, close, back off, again; ``await run()`` until cancelled."""

    def __init__(self, endpoint: OpcUaEndpointConfig, data_dir: Path, *, label: str,
                 session: Callable[[Client], Awaitable[None]],
                 on_error: Callable[[Exception], None],
                 on_closed: Callable[[], None] = lambda: None,
                 on_lost: Callable[[], Awaitable[None]] | None = None,
                 credentials: OpcUaCredentials | None = None,
                 backoff: Backoff | None = None) -> None:
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.label = label
        self.backoff = backoff or Backoff(endpoint.reconnect_min_s, endpoint.reconnect_max_s)
        self.client: Client | None = None
        self._session = session
        self._on_error = on_error
        self._on_closed = on_closed
        self._on_lost = on_lost
        self._credentials = credentials

    async def run(self) -> None:
        """Returns only by cancellation (rule 5)."""
        while True:
            try:
                await self._session(await self._connect())
                raise SessionDeadError("the session ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure of a peer or the network ends up here
                raise_if_cancelling()
                self._on_error(exc)
            finally:
                self._on_closed()
                await self.close()
            if self._on_lost is not None:
                await self._on_lost()
            delay = self.backoff.next_delay()
            log.info("%s: reconnecting in %.2f s", self.label, delay)
            await asyncio.sleep(delay)

    async def _connect(self) -> Client:
        timeout = self.endpoint.timeout_s * 2
        client = await asyncio.wait_for(build_client(self.endpoint, self.data_dir, credentials=self._credentials),
                                        timeout=timeout)
        self.client = client  # from here on close() owns it, whatever happens next
        await asyncio.wait_for(client.connect(), timeout=timeout)
        return client

    async def close(self) -> None:
        """Drop the current client (rule 6): bounded DISCONNECT, then always the socket."""
        client, self.client = self.client, None
        if client is None:
            return
        try:
            with contextlib.suppress(Exception):  # never CancelledError: the owner's stop() waits on it
                await asyncio.wait_for(client.disconnect(), timeout=_DISCONNECT_TIMEOUT_S)
        finally:
            with contextlib.suppress(Exception):
                client.disconnect_socket()


__all__ = ["OpcUaConnection", "SessionDeadError", "silence_check", "watch_server_state"]
