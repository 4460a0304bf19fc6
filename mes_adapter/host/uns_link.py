"""The adapter's own MQTT session for UNS JSON topics (not Sparkplug): context in, results in, MES data out.

Why a second session beside the Sparkplug host's: the host subscribes only to Sparkplug and STATE
topics, and the command request side needs a publish that raises when the broker is not there
(a command must never be reported dispatched when it was not). This link subscribes to
``<line>/_context/#`` (batch context asserted by other plant apps, retained) and
``<line>/_cmd/result/+`` (what edge nodes did with commands), and publishes retained context,
confirmations, dead-letter alarms and the DCMD/NCMD bytes of signed commands.

Retained messages are published again on every new connection: a broker restarted without
persistence (or the next one after a failover) has forgotten the batch context this adapter
asserted, and plant apps subscribing afterwards would see no batch running. The link keeps the last
retained payload it published per topic (a handful: one context topic per line, dead-letter
alarms) and forgets a topic once another client publishes something else there (their assertion is
newer than ours, and re-publishing ours would undo it).

Handlers run on the event loop; one that raises is logged and counted, never fatal. Publishes made
while disconnected wait in a bounded queue (oldest dropped and counted) except :meth:`publish_now`,
which raises :class:`LinkDownError` so a command is never reported dispatched when it was not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt

from mes_adapter.errors import MesError
from uns.aio import run_until_first_done
from uns.mqtt_session import ReconnectPolicy, reconnect_forever
from uns.mqtt_url import BrokerURL

log = logging.getLogger("uns.adapter.link")

Handler = Callable[[str, bytes], Awaitable[None] | None]

#: our recent retained payloads remembered per topic, to tell our own echo from another client's
_RECENT = 8


class LinkDownError(MesError, RuntimeError):
    """The UNS session is not connected; nothing was published."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class UnsLink:
    """Reconnecting aiomqtt session with topic-filter handlers and a publish queue."""

    def __init__(self, broker: BrokerURL, client_id: str, *, keepalive_s: int = 30, queue_size: int = 10_000,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 15.0) -> None:
        self._broker = broker
        self._client_id = client_id
        self._keepalive_s = keepalive_s
        self._handlers: list[tuple[str, Handler]] = []
        self._queue: deque[_Outgoing] = deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconnect = ReconnectPolicy(f"UNS link {client_id} to {broker}", reconnect_min_s, reconnect_max_s,
                                          logger=log)
        self.messages_in = 0
        self.messages_out = 0
        self.dropped = 0
        self.handler_errors = 0
        self.connections = 0
        #: topic -> our recent retained payloads there, newest last (the newest is re-published)
        self._retained: dict[str, deque[bytes]] = {}
        #: retained messages published again on a new connection
        self.resent = 0

    def on(self, topic_filter: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for messages matching ``topic_filter`` (register before start)."""
        self._handlers.append((topic_filter, handler))

    @property
    def connected(self) -> bool:
        """The session is up (CONNACK and SUBACK in): what readiness reports."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish; sent as soon as the session is up."""
        if retain:
            self._retained.setdefault(topic, deque(maxlen=_RECENT)).append(payload)
        self._enqueue(_Outgoing(topic, payload, qos, retain))

    def _enqueue(self, item: _Outgoing) -> None:
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(item)
        self._wake.set()

    def _resend_retained(self) -> None:
        """A new connection after the first: the broker may have lost what we retained."""
        queued = {item.topic for item in self._queue if item.retain}
        for topic, payloads in self._retained.items():
            if topic not in queued:  # a newer one already waits to go out
                self._enqueue(_Outgoing(topic, payloads[-1], 1, True))
                self.resent += 1

    def _seen(self, topic: str, payload: bytes) -> None:
        """A message on a topic we retained: someone else's newer payload supersedes ours."""
        ours = self._retained.get(topic)
        if ours is not None and payload not in ours:
            del self._retained[topic]

    async def publish_now(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """Publish at once or raise :class:`LinkDownError`."""
        client = self._client
        if client is None or not self.connected:
            raise LinkDownError("the adapter's MQTT session is down")
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=5)
        except aiomqtt.MqttError as exc:
            raise LinkDownError(f"publish to {topic} failed: {exc}") from exc
        self.messages_out += 1

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"uns-link-{self._client_id}")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None

    async def _run(self) -> None:
        await reconnect_forever(self._session, stop=self._stop, policy=self._reconnect, on_down=self._down)

    def _down(self) -> None:
        self._client = None
        self._connected.clear()

    async def _session(self) -> None:
        kwargs = self._broker.aiomqtt_kwargs(identifier=self._client_id, keepalive=self._keepalive_s,
                                             clean_session=True)
        async with aiomqtt.Client(**kwargs) as client:
            if self._handlers:
                await client.subscribe([(f, 1) for f in dict.fromkeys(f for f, _ in self._handlers)])
            self._client = client
            self._connected.set()
            self._reconnect.connected()  # after SUBSCRIBE: a broker that drops us there still backs off
            self.connections += 1
            if self.connections > 1:
                self._resend_retained()
            log.info("UNS link %s connected to %s", self._client_id, self._broker)
            stopper = asyncio.ensure_future(self._stop.wait())
            done = await run_until_first_done(self._reader(client), self._writer(client), stopper)
            if stopper in done:
                await self._flush(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            while self._queue:
                item = self._queue.popleft()
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain, timeout=2)
                self.messages_out += 1

    async def _writer(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            while self._queue:
                item = self._queue[0]
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
                self._queue.popleft()
                self.messages_out += 1
            await self._wake.wait()

    async def _reader(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.messages_in += 1
            payload = message.payload
            data = bytes(payload) if isinstance(payload, (bytes, bytearray)) else str(payload or "").encode()
            if message.topic.value in self._retained:
                self._seen(message.topic.value, data)
            for topic_filter, handler in self._handlers:
                if not message.topic.matches(topic_filter):
                    continue
                try:
                    result = handler(message.topic.value, data)
                    if result is not None:
                        await result
                except Exception:  # noqa: BLE001 - a peer's message must never stop the link
                    self.handler_errors += 1
                    log.exception("UNS link: handler for %s failed on %s", topic_filter, message.topic.value)
