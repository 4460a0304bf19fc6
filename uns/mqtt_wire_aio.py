"""The asyncio shell around :mod:`uns.mqtt_wire`: a TCP or TLS connection that publishes.

The protocol rules live in :class:`uns.mqtt_wire.PublisherConnection`; this module only moves
bytes and time: it opens the connection (credentials and TLS from the broker URL), writes CONNECT,
hands whatever the socket delivers to the protocol in one call (a read full of PUBACKs is one
:class:`~uns.mqtt_wire.PubAcks` event), writes each batch the caller encodes with one
``transport.write``, and keeps the connection alive: a PINGREQ when nothing was written for half
the keep-alive, and the connection ends if a PINGREQ goes unanswered for a whole keep-alive
(a broker that hangs without closing the socket). WebSocket URLs are not handled here.

``read_pause_s`` (0: off) trades a little PUBACK latency for CPU: a broker acknowledges a batch
one PUBACK at a time as it works through it, so an eager reader wakes (a loop turn, a ``recv``,
an ack event) ~10 times per batch written. With a pause, reading stops for that long after each
read and the acks that arrive meanwhile are taken in one ``recv`` (issue 20: the mirror's batch of
~50 messages at 10,000 changes/s came back in ~11 reads). Nothing is lost or reordered: the bytes
wait in the socket buffer; only the CONNACK is read without a pause.

Everything runs on the event loop thread; the listener's callbacks must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from .mqtt_url import BrokerURL
from .mqtt_wire import (
    ConnAck,
    ConnectRefusedError,
    MqttWireError,
    PingResp,
    PubAcks,
    PublisherConnection,
    ServerDisconnect,
    State,
)


class PublisherListener(Protocol):
    """What the owner of a :class:`PublisherTransport` hears (on the loop thread)."""

    def on_connack(self, connack: ConnAck) -> None: ...
    def on_acks(self, acks: PubAcks) -> None: ...
    def on_lost(self, why: str) -> None: ...


class PublisherTransport(asyncio.Protocol):
    """One MQTT publishing connection (use :func:`open_publisher`)."""

    def __init__(self, conn: PublisherConnection, listener: PublisherListener, client_id: str, *,
                 keepalive_s: int, username: str | None, password: str | None, read_pause_s: float = 0.0) -> None:
        self.conn = conn
        self._read_pause_s = read_pause_s
        self._resume: asyncio.TimerHandle | None = None
        self._listener = listener
        self._connect = conn.connect(client_id, keepalive_s=keepalive_s, username=username, password=password)
        self._keepalive_s = keepalive_s
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._last_write = self._loop.time()
        self._ping_sent_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ended = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.write(self._connect)
        if self._keepalive_s:
            self._timer = self._loop.call_later(self._keepalive_s / 2, self._keep_alive)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except ConnectRefusedError as exc:
            self.end(str(exc))
            return
        except MqttWireError as exc:
            self.end(f"broker protocol error: {exc}")
            return
        listener = self._listener
        for event in events:
            if type(event) is PubAcks:
                listener.on_acks(event)
            elif type(event) is ConnAck:
                listener.on_connack(event)
            elif type(event) is PingResp:
                self._ping_sent_at = None
            elif type(event) is ServerDisconnect:
                self.end(f"the broker disconnected us (reason code {event.code:#04x})")
        if self._read_pause_s and not self._ended and self.conn.state is State.CONNECTED \
                and self._transport is not None and self._resume is None:
            self._transport.pause_reading()
            self._resume = self._loop.call_later(self._read_pause_s, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        if self._transport is not None and not self._ended and not self._transport.is_closing():
            self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.end(f"connection lost ({exc})" if exc else "connection closed by the broker")

    # -- ours ------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and data:
            self._transport.write(data)
            self._last_write = self._loop.time()

    def _keep_alive(self) -> None:
        if self._ended:
            return
        now = self._loop.time()
        if self._ping_sent_at is not None and now - self._ping_sent_at >= self._keepalive_s:
            self.end(f"no PINGRESP within the keep-alive of {self._keepalive_s} s")
            return
        if self._ping_sent_at is None and now - self._last_write >= self._keepalive_s / 2:
            with contextlib.suppress(MqttWireError):
                self.write(self.conn.ping())
                self._ping_sent_at = now
        self._timer = self._loop.call_later(self._keepalive_s / 4, self._keep_alive)

    def end(self, why: str) -> None:
        """Close the connection (DISCONNECT first when it is up) and tell the listener once."""
        if self._timer is not None:
            self._timer.cancel()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(Exception):
                self._transport.write(self.conn.disconnect())
            self._transport.close()
        if not self._ended:
            self._ended = True
            self._listener.on_lost(why)


async def open_publisher(url: BrokerURL, client_id: str, listener: PublisherListener, *, protocol: str = "3.1.1",
                         keepalive_s: int = 30, read_pause_s: float = 0.0) -> PublisherTransport:
    """Connect to ``url`` (mqtt:// or mqtts://) and send CONNECT; the listener hears the CONNACK.

    Raises ``OSError`` when the TCP/TLS connection cannot be made, ``ValueError`` for a WebSocket URL.
    """
    if url.websocket:
        raise ValueError(f"{url}: the wire publisher speaks MQTT over TCP/TLS, not WebSocket")
    loop = asyncio.get_running_loop()
    context = url.ssl_context()
    conn = PublisherConnection(protocol)
    _, proto = await loop.create_connection(
        lambda: PublisherTransport(conn, listener, client_id, keepalive_s=keepalive_s, username=url.username,
                                   password=url.password, read_pause_s=read_pause_s),
        url.host, url.port, ssl=context, server_hostname=url.host if context is not None else None)
    return proto
