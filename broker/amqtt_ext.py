"""The thin amqtt shell: a ``Broker`` subclass that routes through our ACL and Sparkplug logic.

amqtt 0.12.1 (pinned exactly in pyproject) has three faults that break Sparkplug
(tests/broker/test_amqtt_faults.py shows each). Each is fixed here by overriding one amqtt method,
never by copying its files:

1. **No Will on keep-alive expiry.** ``BrokerProtocolHandler.handle_read_timeout`` is ``pass``,
   so a frozen edge node never gets its NDEATH. :class:`KeepAliveBrokerHandler` closes the
   connection instead (the reader loop then reports an abnormal close and amqtt publishes the
   Will), and :meth:`UnsBroker._initialize_client_session` sets the read timeout to
   1.5 × keep-alive, as MQTT 3.1.1 §3.1.2.10 prescribes.
2. **Retained messages leak to clients that never subscribed** (and bypass the ACL): on every
   CONNECT amqtt replays retained messages for *every* subscription filter in the broker.
   :meth:`UnsBroker._publish_retained_messages_for_subscription` is disabled, and retained
   messages are sent only from :meth:`UnsBroker._handle_subscription`, for that client's own
   granted filter, each topic checked against the client's ``receive`` rights.
3. **Delivery QoS upgraded to the subscription's.** :meth:`UnsBroker._handle_message_delivery`
   carries the publish QoS with each message and :meth:`UnsBroker._run_broadcast` delivers
   ``min(publish QoS, subscription QoS)`` (MQTT 3.1.1 §3.8.4); retained delivery likewise.

Hardening (issue 13), also here:

4. **Client-id ownership and clean takeovers** (MQTT-3.1.4-2). amqtt 0.12.1 let a clean-session
   CONNECT with a live client's id delete that client's session while leaving its connection
   open: the old client stayed connected with no subscriptions, receiving nothing. Now a CONNECT
   is checked against :class:`broker.client_ids.ClientIdPolicy` (only the user whose role owns an
   id may take it; refused with CONNACK 0x05) and an allowed takeover first closes the old
   connection (its Will is published, as for any close without DISCONNECT) and waits for it to end.
5. **Protocol limits.** A PUBLISH to a topic name with ``+`` or ``#`` closes the connection
   (MQTT-3.3.2-2; amqtt's decoder raised mid-packet and its reader went on parsing the payload as
   packets), and so does a packet larger than ``max_packet_size_bytes`` (amqtt buffered any size).
   Both are seen on the byte stream, ahead of amqtt's decoder (:mod:`broker.packet_limit`).

The hot path (issue 20), each piece checked against amqtt 0.12.1 by tests/broker/test_hot_path_guards.py
and for loss and order by tests/broker/test_hot_path.py:

6. **Delivery without a task per message.** :meth:`UnsBroker._route` hands each message to the
   subscriber's :class:`broker.outbox.Outbox` (encoded once for all subscribers, a bounded QoS 1
   window, PUBACKs handled in :meth:`KeepAliveBrokerHandler.handle_puback`) instead of
   ``ensure_future(handler.mqtt_publish(...))``; TCP/TLS connections write through
   :class:`broker.outbox.CoalescingWriter` (one socket write per batch instead of per packet).
7. **A reader loop of our own** (TCP/TLS). amqtt's reader awaits ~5 reads per packet, each
   wrapped in ``asyncio.wait_for`` (a task per packet on Python 3.11), and handles each packet in
   a new task. :meth:`KeepAliveBrokerHandler._read_packets` reads what the socket has, cuts it
   into packets (:mod:`broker.incoming`, same protocol limits), handles PUBLISH QoS 0/1, PUBACK
   and PINGREQ in place and every other packet with amqtt's own classes and methods; the
   keep-alive is a timer, same expiry (fix 1). WebSocket connections keep amqtt's loop.
8. **Incoming messages routed in batches, none lost at a DISCONNECT.** The client loop routes the
   queued PUBLISHes in batches (:meth:`UnsBroker._handle_message_delivery`), and the ones still
   queued when the client leaves before anything else (:meth:`UnsBroker._handle_disconnect`):
   amqtt dropped them, or routed one after the disconnect.
9. **A bounded QoS 0 backlog per connection** (``max_queued_qos0_bytes``, :class:`broker.outbox.Outbox`):
   QoS 0 messages for a TCP/TLS subscriber with more unsent are dropped and counted.

Also here: authorization on publish/subscribe/receive and on the Will topic (amqtt publishes a
Will without any ACL check), the Sparkplug-aware certificate topics and duplicate edge-node alarm
(:mod:`broker.sparkplug_aware`), and cheap ``$SYS`` counters (:mod:`broker.sys_topics`).
The per-message paths avoid amqtt's per-message f-string debug logs and plugin round-trips, so
routing costs less than in plain amqtt.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib.metadata
import logging
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import BufferReader, ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action as AmqttAction
from amqtt.contexts import BrokerConfig, ListenerConfig
from amqtt.errors import MQTTError, NoDataError
from amqtt.events import BrokerEvents, MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.packet import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.packet import PINGREQ as AMQTT_PINGREQ
from amqtt.mqtt.packet import PUBLISH as AMQTT_PUBLISH
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import IncomingApplicationMessage, Session

from uns.sparkplug.topic import is_sparkplug_topic

from .acl import Action, Authorizer, PolicyError, Principal
from .auth_plugin import PRINCIPAL_KEY
from .client_ids import ClientIdPolicy
from .incoming import PINGREQ, PUBLISH, READ_SIZE, MalformedPacketError, PacketSplitter, parse_publish, puback
from .incoming import PINGRESP as PINGRESP_PACKET
from .outbox import CoalescingWriter, EncodedPublish, Outbox
from .packet_limit import StreamGuard
from .sparkplug_aware import (
    DUPLICATE_ALARM_TOPIC,
    BirthCertificateStore,
    EdgeNodeRegistry,
    sparkplug_topic_or_none,
)
from .sys_topics import BrokerStats
from .topics import topic_matches

_AUTHENTICATED = "uns.authenticated"
_CONNECTED_AS = "uns.connected_as"  # the _Identity a session last connected with (restored on a refusal)
_CLOSING = "uns.closing"  # set when a connection is closed for a protocol violation in a PUBLISH
_LOOP_ENDED = "uns.loop_ended"  # asyncio.Event set when the session's message loop has ended
_QUEUED: Any = object()  # what KeepAliveBrokerHandler.mqtt_deliver_next_message returns
TAKEOVER_WAIT_S = 5.0  # how long a takeover waits for the old connection's clean close
#: client ids whose sessions amqtt wanted to delete during a CONNECT not yet authenticated (per task)
_DEFERRED_DELETES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "uns_deferred_deletes", default=None
)
log = logging.getLogger("broker")

KEEPALIVE_FACTOR = 1.5  # MQTT 3.1.1 §3.1.2.10
_BROADCAST_BATCH = 256  # messages routed per broadcast-loop turn before yielding
_DELIVERY_BATCH = 256  # queued incoming messages one client's loop routes per wake-up
_SUBACK_FAILURE = 0x80
#: packet type -> the handler method amqtt's reader loop calls for it (KeepAliveBrokerHandler._handle_decoded)
_HANDLED = {CONNACK: "handle_connack", SUBSCRIBE: "handle_subscribe", UNSUBSCRIBE: "handle_unsubscribe",
            SUBACK: "handle_suback", UNSUBACK: "handle_unsuback", PUBACK: "handle_puback", PUBREC: "handle_pubrec",
            PUBREL: "handle_pubrel", PUBCOMP: "handle_pubcomp", AMQTT_PINGREQ: "handle_pingreq",
            PINGRESP: "handle_pingresp", AMQTT_PUBLISH: "handle_publish", DISCONNECT: "handle_disconnect",
            CONNECT: "handle_connect"}
_ACTIONS = {AmqttAction.PUBLISH: Action.PUBLISH, AmqttAction.SUBSCRIBE: Action.SUBSCRIBE,
            AmqttAction.RECEIVE: Action.RECEIVE}


@dataclass(frozen=True, slots=True)
class _Identity:
    """What a CONNECT sets on a session; amqtt overwrites it on the *existing* session object of a
    persistent client id before authentication, so it is kept to be put back on a refusal."""

    principal: Principal | None
    username: str | None
    password: str | None
    keep_alive: float
    will: tuple[Any, ...]

    @classmethod
    def of(cls, session: Session) -> _Identity:
        return cls(session.attributes.get(PRINCIPAL_KEY), session.username, session.password, session.keep_alive,
                   (session.will_flag, session.will_topic, session.will_message, session.will_qos,
                    session.will_retain))

    def apply(self, session: Session) -> None:
        if self.principal is not None:
            session.attributes[PRINCIPAL_KEY] = self.principal
        session.username, session.password, session.keep_alive = self.username, self.password, self.keep_alive
        (session.will_flag, session.will_topic, session.will_message, session.will_qos,
         session.will_retain) = self.will


def _close_connection(handler: BrokerProtocolHandler) -> None:
    """End a live connection from the broker side: the reader loop stops, reports an abnormal close
    (so the message loop publishes the Will and stops the handler, which closes the socket)."""
    task = handler._reader_task  # noqa: SLF001 - amqtt has no public way to end one connection
    if task is not None and not task.done():
        task.cancel()


class _GuardedReader(ReaderAdapter):
    """A reader that ends the stream (NoDataError, which amqtt takes for the peer's EOF) at the
    first protocol-limit violation :class:`broker.packet_limit.StreamGuard` sees.

    On TCP/TLS (``stream`` set) the broker's own reader loop reads with :meth:`read_some` and checks
    the same limits itself (:class:`broker.incoming.PacketSplitter`); amqtt reads the CONNECT, and a
    WebSocket connection everything, through :meth:`read`."""

    def __init__(self, inner: ReaderAdapter, guard: StreamGuard, on_violation: Any) -> None:
        self._inner = inner
        self._guard = guard
        self._on_violation = on_violation
        self._loop = asyncio.get_running_loop()
        self.last_read = self._loop.time()
        self.limit = guard.limit
        self.stream: asyncio.StreamReader | None = (
            inner._reader if isinstance(inner, StreamReaderAdapter) else None)  # noqa: SLF001

    last_read: float = 0.0  # loop time of the last bytes read (the keep-alive watch, fix 1)

    async def read(self, n: int = -1) -> bytes:
        if self._guard.violation is not None:
            raise NoDataError("connection closed: protocol limit")
        data = await self._inner.read(n)
        self.last_read = self._loop.time()
        if self._guard.feed(data) is not None:
            self._on_violation(self._guard.violation)
            raise NoDataError("connection closed: protocol limit")
        return data

    async def read_some(self) -> bytes:
        """Whatever the socket has, up to :data:`broker.incoming.READ_SIZE` bytes (b"" at EOF)."""
        assert self.stream is not None
        data = await self.stream.read(READ_SIZE)
        self.last_read = self._loop.time()
        return data

    def violated(self, what: str) -> None:
        self._on_violation(what)

    def feed_eof(self) -> None:
        self._inner.feed_eof()


class KeepAliveBrokerHandler(BrokerProtocolHandler):
    """A broker handler that drops the connection when the keep-alive read timeout fires."""

    on_keepalive_expired: Any = None  # set per instance by UnsBroker: Callable[[Session], None]
    _idle_timer: asyncio.TimerHandle | None = None

    async def _reader_loop(self) -> None:
        """On TCP/TLS our own reader loop (:meth:`_read_packets`, issue 20); elsewhere amqtt's. Either
        way the keep-alive is watched by a timer instead of amqtt's per-packet ``asyncio.wait_for``
        (on Python 3.11 that is a new task for every packet read).

        amqtt 0.12.1's loop reads ``session.keep_alive`` once, synchronously, before its first
        await, and passes it to ``wait_for``; it sees 0 here (no timeout: ``wait_for`` then awaits
        directly), and the real value is back on the session at the next loop turn. The watch
        (:meth:`_check_idle`) fires :meth:`handle_read_timeout` once nothing was read for that long
        (MQTT 3.1.2.10), as amqtt's ``wait_for`` timeout did between two packets.
        """
        session, reader = self.session, self.reader
        if session is None or not isinstance(reader, _GuardedReader):
            await super()._reader_loop()
            return
        own = reader.stream is not None and isinstance(self.writer, CoalescingWriter)
        keep_alive = session.keep_alive
        if keep_alive and keep_alive > 0:
            if not own:
                session.keep_alive = 0
                self._loop.call_soon(setattr, session, "keep_alive", keep_alive)
            self._idle_timer = self._loop.call_later(keep_alive, self._check_idle, reader, keep_alive)
        try:
            if own:
                await self._read_packets(reader)
            else:
                await super()._reader_loop()
        finally:
            if self._idle_timer is not None:
                self._idle_timer.cancel()

    async def _read_packets(self, reader: _GuardedReader) -> None:
        """The reader loop of an established TCP/TLS connection (replaces amqtt's ``_reader_loop``).

        amqtt's loop awaits about five reads per packet and runs each packet's handler in a new
        task; a QoS 1 PUBLISH is then acknowledged through ``_send_packet``. Here one read takes
        whatever the socket has, :class:`broker.incoming.PacketSplitter` cuts it into packets, and
        the three packets of the hot path are handled in place: a PUBLISH (QoS 0/1) is queued for
        the client loop exactly as amqtt's QoS 0/1 flow queues it, its PUBACK joins the
        connection's write batch (after the message is queued, as in amqtt), and the PUBACKs of
        one read leave in one socket write at once (the publisher's in-flight window waits on
        them, so they skip the outbox's 0.5 ms hold); a PUBACK frees the outbox window; a PINGREQ
        is answered. Every other packet is decoded by amqtt's own packet
        classes and handled by the same handler methods amqtt's loop calls (a QoS 2 PUBLISH in a
        task, as it waits for its PUBREL; the others, DISCONNECT among them, awaited in order).
        The end is amqtt's: the connection is reported closed (no DISCONNECT before it: the Will
        is published), then the handler stops. amqtt's PACKET_RECEIVED plugin event is fired for
        the decoded packets only; no plugin of ours listens to it.
        """
        session = self.session
        assert session is not None
        if self._reader_ready is not None:
            self._reader_ready.set()
        splitter = PacketSplitter(reader.limit)
        queue = session.delivered_message_queue
        write = self.writer.write  # type: ignore[union-attr]  # a CoalescingWriter: batched per turn
        running: deque[asyncio.Task[None]] = deque()
        try:
            while data := await reader.read_some():
                for first, body in splitter.feed(data):
                    kind = first >> 4
                    if kind == PUBLISH and first & 0x06 != 0x04:  # QoS 0 and 1 (QoS 3: parse_publish)
                        publish = parse_publish(first, body)
                        if isinstance(publish, str):
                            reader.violated(publish)
                            return
                        if publish.dup and not publish.qos:
                            log.warning("client %r sent a QoS 0 PUBLISH with DUP set: ignored (MQTT-3.3.1-2)",
                                        session.client_id)
                            continue
                        queue.put_nowait(IncomingApplicationMessage(publish.packet_id, publish.topic, publish.qos,
                                                                    publish.payload, publish.retain))
                        if publish.packet_id is not None:
                            write(puback(publish.packet_id))
                    elif kind == PUBACK and len(body) == 2 and self.uns_outbox is not None \
                            and self.uns_outbox.on_puback((body[0] << 8) | body[1]):
                        pass
                    elif kind == PINGREQ:
                        write(PINGRESP_PACKET)
                    else:
                        await self._handle_decoded(first, body, running)
                if splitter.violation is not None:
                    reader.violated(splitter.violation)
                    return
        except asyncio.CancelledError:
            log.debug("client %r: reader cancelled", session.client_id)
        except (NoDataError, ConnectionError, OSError, asyncio.IncompleteReadError):
            log.debug("client %r: connection lost", session.client_id)
        except MalformedPacketError as exc:
            log.warning("client %r sent a malformed packet (%s): closing it", session.client_id, exc)
        except Exception as exc:  # noqa: BLE001 - amqtt's loop also ends the connection on anything else
            log.warning("client %r: unexpected error in the reader, closing it: %r", session.client_id, exc)
        finally:
            await self._reader_ended(running)

    async def _reader_ended(self, running: deque[asyncio.Task[None]]) -> None:
        """amqtt's reader-loop tail: report the close (Will if no DISCONNECT), then stop."""
        while running:
            running.popleft().cancel()
        await self.handle_connection_closed()
        if self._reader_stopped is not None:
            self._reader_stopped.set()
        await self.stop()

    async def _handle_decoded(self, first: int, body: bytes, running: deque[asyncio.Task[None]]) -> None:
        """Any packet but the hot three: decoded by amqtt's classes, handled by amqtt's methods."""
        header = MQTTFixedHeader(first >> 4, first & 0x0F, len(body))
        name = _HANDLED.get(header.packet_type)
        if name is None:  # RESERVED_0 / RESERVED_15 (MQTT 3.1.1 §2.2.1: forbidden)
            raise MalformedPacketError(f"reserved packet type {header.packet_type}")
        try:
            packet = await packet_class(header).from_stream(BufferReader(body), fixed_header=header)
        except MQTTError:
            log.debug("client %r: undecodable packet of type %d discarded", self.session and self.session.client_id,
                      header.packet_type)
            return
        await self.plugins_manager.fire_event(MQTTEvents.PACKET_RECEIVED, packet=packet, session=self.session)
        handle = getattr(self, name)
        if header.packet_type == AMQTT_PUBLISH:  # QoS 2: waits for its PUBREL
            while running and running[0].done():
                running.popleft()
            running.append(asyncio.create_task(handle(packet)))
        else:
            await handle(packet)

    async def mqtt_deliver_next_message(self) -> Any:
        """Wait for a queued incoming PUBLISH, but leave it queued (put back at the head).

        amqtt 0.12.1's client loop waits on this and, when a DISCONNECT arrives in the same turn,
        handles the disconnect first and the message it took afterwards. The broker routes every
        queued message from the queue itself, in order (:meth:`UnsBroker._handle_message_delivery`,
        and :meth:`UnsBroker._handle_disconnect` for those still queued when the client leaves).
        """
        message = await super().mqtt_deliver_next_message()
        if message is None or self.session is None:
            return None
        self.session.delivered_message_queue._queue.appendleft(message)  # noqa: SLF001
        return _QUEUED

    def _check_idle(self, reader: _GuardedReader, keep_alive: float) -> None:
        task = self._reader_task
        if task is None or task.done():
            return
        idle = self._loop.time() - reader.last_read
        if idle >= keep_alive:
            self._idle_timer = None
            self.handle_read_timeout()
            return
        self._idle_timer = self._loop.call_later(keep_alive - idle, self._check_idle, reader, keep_alive)

    def handle_read_timeout(self) -> None:
        session = self.session
        log.info("client %r sent nothing for %.1f s (1.5 x keep-alive): closing it, its Will is due",
                 session.client_id if session else None, session.keep_alive if session else 0)
        if self.on_keepalive_expired is not None and session is not None:
            self.on_keepalive_expired(session)
        # We run inside the reader task: cancelling it ends the reader loop at its next await,
        # which then calls handle_connection_closed() -> abnormal disconnect -> Will published.
        if self._reader_task is not None:
            self._reader_task.cancel()

    # ---- outgoing hot path (issue 20, broker/outbox.py) -----------------------------------
    uns_outbox: Outbox | None = None
    uns_qos0_limit: int | None = None  # set per instance by UnsBroker (max_queued_qos0_bytes)

    def outbox(self) -> Outbox:
        """This connection's :class:`broker.outbox.Outbox` (made on first delivery: the writer and
        session are attached by then)."""
        box = self.uns_outbox
        if box is None:
            box = self.uns_outbox = Outbox(self.session, self.writer, self._write_lock,
                                           qos0_limit=self.uns_qos0_limit)
        return box

    async def handle_puback(self, puback: PubackPacket) -> None:
        """A PUBACK for a message the outbox sent frees its window slot; any other goes to amqtt
        (its own flows, e.g. redelivery after a reconnect, wait on ``_puback_waiters``)."""
        box = self.uns_outbox
        header = puback.variable_header
        if box is not None and header is not None and box.on_puback(header.packet_id):
            return
        await super().handle_puback(puback)


class UnsBroker(Broker):
    """amqtt's broker with our authorization, the three fixes, and Sparkplug awareness."""

    def __init__(self, config: BrokerConfig, *, authorizer: Authorizer, sys_interval: float,
                 client_ids: ClientIdPolicy | None = None, max_packet_size: int | None = None,
                 max_queued_qos0: int | None = None) -> None:
        super().__init__(config)
        self.max_queued_qos0 = max_queued_qos0
        self.authorizer = authorizer
        self.client_ids = client_ids or ClientIdPolicy.of(authorizer.roles)
        self.max_packet_size = max_packet_size
        self.stats = BrokerStats()
        self.certificates = BirthCertificateStore()
        self.edge_nodes = EdgeNodeRegistry()
        self._sys_interval = sys_interval
        self._sys_task: asyncio.Task[None] | None = None
        self._version = (f"uns-hub {_version('uns-hub')} (amqtt {_version('amqtt')})")

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        if self._sys_interval > 0:
            self._sys_task = asyncio.create_task(self._sys_loop(), name="uns-broker-sys")

    async def shutdown(self) -> None:
        if self._sys_task is not None:
            self._sys_task.cancel()
            await asyncio.gather(self._sys_task, return_exceptions=True)
        await super().shutdown()

    def bound_ports(self) -> dict[str, int]:
        """Listener name -> the port it really listens on (useful with port 0)."""
        ports: dict[str, int] = {}
        for name, server in self._servers.items():
            sockets = getattr(server.instance, "sockets", None) or ()
            for sock in sockets:
                ports[name] = sock.getsockname()[1]
                break
        return ports

    # ---- connect: keep-alive and authentication -------------------------------------------
    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[BrokerProtocolHandler, Session]:
        # amqtt deletes the old session of a clean-session client id here, before authenticating:
        # hold that back until the new client has proved who it is (_handle_client_session)
        _DEFERRED_DELETES.set([])
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        handler.__class__ = KeepAliveBrokerHandler  # same layout, one method differs (fix 1)
        handler.on_keepalive_expired = self._count_keepalive_expired
        handler.uns_qos0_limit = self.max_queued_qos0
        if session.keep_alive > 0:
            session.keep_alive = session.keep_alive * KEEPALIVE_FACTOR
        return handler, session

    def _count_keepalive_expired(self, _session: Session) -> None:
        self.stats.keepalive_expired += 1

    async def _handle_client_session(self, reader: Any, writer: Any, client_session: Session,
                                     handler: BrokerProtocolHandler, server: Any, listener_name: str) -> None:
        """Refuse before amqtt touches its session table.

        amqtt 0.12.1 authenticates, then takes over any live client with the same client id and
        files the new session as connected *whatever the verdict*: a refused CONNECT kicked a
        legitimate client off and left a session behind forever (memory any anonymous peer could
        grow), and a clean-session CONNECT deleted the live client's session before its password
        was checked. A refused client here gets its CONNACK and is closed without any of that.
        """
        held = self._sessions.get(client_session.client_id or "")
        holder_session, holder_handler = held if held is not None else (None, None)
        reused = holder_session is client_session  # a persistent session amqtt already overwrote
        holder = self._holder(holder_session)
        if not await self._authenticate(client_session, self.listeners_config[listener_name]):
            await self._refuse(client_session, handler, reader, writer, reused)
            return
        principal: Principal = client_session.attributes[PRINCIPAL_KEY]
        why = self.client_ids.refusal(client_session.client_id or "", principal, holder)
        if why is not None:
            log.warning("refused client %r: %s", client_session.client_id, why)
            self.stats.connects_refused += 1
            self.stats.client_id_refused += 1
            await self._refuse(client_session, handler, reader, writer, reused)
            return
        if holder_session is not None and holder_handler is not None and holder_session.transitions.is_connected():
            await self._take_over(holder_session, holder_handler, client_session if reused else None)
        client_session.attributes.pop(_CLOSING, None)  # a persistent session's earlier connection set it
        client_session.attributes[_AUTHENTICATED] = True  # amqtt asks again: answer from the verdict
        client_session.attributes[_CONNECTED_AS] = _Identity.of(client_session)
        deferred, _ = _DEFERRED_DELETES.get(), _DEFERRED_DELETES.set(None)
        for client_id in deferred or ():
            await super()._delete_session(client_id)
        await super()._handle_client_session(reader, writer, client_session, handler, server, listener_name)

    @staticmethod
    def _holder(session: Session | None) -> Principal | None:
        """Who holds a client id: the user of its live or persistent session (None: nobody)."""
        if session is None or (session.clean_session and not session.transitions.is_connected()):
            return None
        identity: _Identity | None = session.attributes.get(_CONNECTED_AS)
        return identity.principal if identity is not None else None

    async def _refuse(self, session: Session, handler: BrokerProtocolHandler, reader: Any, writer: Any,
                      reused: bool) -> None:
        """CONNACK "not authorized" and close; the holder of a persistent session keeps it as it was."""
        if reused:
            identity: _Identity | None = session.attributes.get(_CONNECTED_AS)
            if identity is not None:
                identity.apply(session)
        handler.attach(session, reader, writer)
        parent, session.parent = session.parent, 0  # MQTT-3.2.2-4: no session present with a refusal
        try:
            await handler.mqtt_connack_authorize(False)
        finally:
            session.parent = parent
            with suppress(Exception):
                await writer.close()

    async def _take_over(self, old: Session, old_handler: BrokerProtocolHandler, reused: Session | None) -> None:
        """MQTT-3.1.4-2: close the existing connection of this client id before the new one goes on.

        The old connection ends like any close without DISCONNECT (its Will is published). For a
        persistent session (``reused``) the session object is shared, and amqtt has already put the
        new CONNECT's Will on it: the old connection's own Will is put back for its close.
        """
        log.warning("client %r connected again (user %r): closing its previous connection (MQTT-3.1.4-2)",
                    old.client_id, getattr(old.attributes.get(PRINCIPAL_KEY), "username", None))
        self.stats.takeovers += 1
        ended: asyncio.Event | None = old.attributes.get(_LOOP_ENDED)
        new_identity = _Identity.of(reused) if reused is not None else None
        previous: _Identity | None = old.attributes.get(_CONNECTED_AS)
        if reused is not None and previous is not None:
            previous.apply(reused)
        try:
            _close_connection(old_handler)
            if ended is not None:
                try:
                    await asyncio.wait_for(ended.wait(), TAKEOVER_WAIT_S)
                except TimeoutError:
                    log.error("the previous connection of client %r did not close in %.0f s; stopping it",
                              old.client_id, TAKEOVER_WAIT_S)
            if old.transitions.is_connected():
                await self._stop_handler(old_handler)
                old.transitions.disconnect()
        finally:
            if reused is not None and new_identity is not None:
                new_identity.apply(reused)

    async def _client_message_loop(self, client_session: Session, handler: BrokerProtocolHandler) -> None:
        ended = asyncio.Event()
        client_session.attributes[_LOOP_ENDED] = ended
        try:
            await super()._client_message_loop(client_session, handler)
        finally:
            ended.set()

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        """Every connection reads through the protocol limits; its socket is closed when it ends."""
        peer = writer.get_peer_info()

        def violated(what: str) -> None:
            self.stats.protocol_violations += 1
            log.warning("client at %s sent %s: closing it", f"{peer[0]}:{peer[1]}" if peer else "?", what)

        guarded = _GuardedReader(reader, StreamGuard(self.max_packet_size), violated)
        if isinstance(writer, StreamWriterAdapter):  # TCP and TLS: one socket write per loop turn
            writer = CoalescingWriter(writer)
        try:
            await super()._client_connected(listener_name, guarded, writer)
        finally:
            with suppress(Exception):  # amqtt leaves the socket open when the CONNECT can't be read
                await writer.close()

    async def _delete_session(self, client_id: str) -> None:
        deferred = _DEFERRED_DELETES.get()
        if deferred is not None:  # a CONNECT not yet authenticated (see _initialize_client_session)
            deferred.append(client_id)
            return
        await super()._delete_session(client_id)

    async def _authenticate(self, session: Session, listener: ListenerConfig) -> bool:
        if session.attributes.pop(_AUTHENTICATED, False):
            return True
        if not await super()._authenticate(session, listener):
            self.stats.connects_refused += 1
            return False
        principal: Principal | None = session.attributes.get(PRINCIPAL_KEY)
        if principal is None:
            self.stats.connects_refused += 1
            return False
        try:
            self.authorizer.check_principal(principal)
        except PolicyError as exc:
            log.error("refused client %r: %s", session.client_id, exc)
            self.stats.connects_refused += 1
            return False
        if session.will_flag and session.will_topic and not self.authorizer.allowed(
                principal, Action.PUBLISH, session.will_topic):
            log.warning("refused client %r (user %r): its Will topic %r is not one it may publish",
                        session.client_id, principal.username, session.will_topic)
            self.stats.connects_refused += 1
            return False
        return True

    async def _topic_filtering(self, session: Session, topic: str, action: AmqttAction) -> bool:
        principal = session.attributes.get(PRINCIPAL_KEY)
        return principal is not None and self.authorizer.allowed(principal, _ACTIONS[action], topic)

    async def _handle_disconnect(self, client_session: Session, *args: Any, **kwargs: Any) -> None:
        handler = args[0] if args else kwargs.get("handler")
        # amqtt's loop ends at the disconnect even with PUBLISHes it already read still queued (a
        # publisher that sends a burst and DISCONNECT lost its tail): route them first, in order,
        # and before any Will, as they were received before the connection ended
        queue = client_session.delivered_message_queue
        while not queue.empty() and not client_session.attributes.get(_CLOSING):
            if not await self._deliver_one(client_session, handler, queue.get_nowait()):
                break
        box: Outbox | None = getattr(handler, "uns_outbox", None)
        if box is not None:
            box.close()
        await super()._handle_disconnect(client_session, *args, **kwargs)
        await self._queue_unsent(client_session, box)
        if client_session.client_id:
            self.edge_nodes.on_disconnect(client_session.client_id)

    async def _queue_unsent(self, session: Session, box: Outbox | None) -> None:
        """QoS 1 messages the outbox of an ended connection never sent (beyond its window, or
        routed while it closed) are queued for the session like any message routed while it is
        away (MQTT 3.1.2.4), ahead of those (see :meth:`_route`); those sent and not acknowledged
        stay in ``inflight_out``, which amqtt resends first on reconnect."""
        if box is None:
            return
        unsent = box.take_pending()
        if session.clean_session or session.is_anonymous:
            return
        for message in unsent:
            await self._retain_broadcast_message({"session": None, "topic": message.topic, "data": message.data},
                                                 1, session)

    # ---- subscribe and retained delivery (fix 2) ------------------------------------------
    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        """Disabled: amqtt calls it on CONNECT for every filter of every client (the leak)."""

    async def _handle_subscription(self, client_session: Session, handler: BrokerProtocolHandler,
                                   subscribe_waiter: asyncio.Future[Any]) -> None:
        subscriptions = subscribe_waiter.result()
        granted = [await self.add_subscription(sub, client_session) for sub in subscriptions.topics]
        await handler.mqtt_acknowledge_subscription(subscriptions.packet_id, granted)
        for (topic_filter, requested), qos in zip(subscriptions.topics, granted, strict=True):
            if qos == _SUBACK_FAILURE:
                log.info("client %r denied subscription to %r", client_session.client_id, topic_filter)
                continue
            await self.plugins_manager.fire_event(BrokerEvents.CLIENT_SUBSCRIBED, client_id=client_session.client_id,
                                                  topic=topic_filter, qos=requested)
            await self._deliver_retained(client_session, handler, topic_filter, qos)

    async def _deliver_retained(self, session: Session, handler: BrokerProtocolHandler,
                                topic_filter: str, granted_qos: int) -> None:
        principal = session.attributes.get(PRINCIPAL_KEY)
        if principal is None:
            return
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not topic_matches(topic_filter, topic):
                continue
            if not self.authorizer.allowed(principal, Action.RECEIVE, topic):
                continue
            qos = granted_qos if retained.qos is None else min(granted_qos, retained.qos)
            if qos < 2 and isinstance(handler, KeepAliveBrokerHandler):
                # through the outbox: written before any live message routed after this SUBSCRIBE
                self._count_sent(handler.outbox().publish(EncodedPublish(topic, retained.data, retain=True), qos))
            else:
                self.stats.messages_sent += 1
                sends.append(handler.mqtt_publish(topic, retained.data, qos, retain=True))
        if sends:
            await asyncio.gather(*sends, return_exceptions=True)

    # ---- publish and routing (fix 3) --------------------------------------------------------
    async def _handle_message_delivery(self, client_session: Session, handler: BrokerProtocolHandler,
                                       wait_deliver: asyncio.Future[Any]) -> bool:
        """Route the message amqtt's loop waited for, then those already queued behind it (up to
        :data:`_DELIVERY_BATCH`, in order): amqtt's loop costs a new waiter task and an
        ``asyncio.wait`` over four futures per message; a burst now pays that once per batch."""
        queue = client_session.delivered_message_queue
        routed = 0  # wait_deliver only says the queue has messages (KeepAliveBrokerHandler)
        while routed < _DELIVERY_BATCH and not queue.empty() and not client_session.attributes.get(_CLOSING):
            routed += 1
            if not await self._deliver_one(client_session, handler, queue.get_nowait()):
                break
        return True

    async def _deliver_one(self, client_session: Session, handler: BrokerProtocolHandler, app_message: Any) -> bool:
        """Route one incoming PUBLISH; False once the connection is being closed for it."""
        await self.plugins_manager.fire_event(BrokerEvents.MESSAGE_RECEIVED,
                                              client_id=client_session.client_id, message=app_message)
        if app_message is None:
            return True
        topic = app_message.topic
        if not topic or "#" in topic or "+" in topic:
            log.warning("client %r published to invalid topic name %r (MQTT-3.3.2-2, MQTT-4.7.3-1): closing it",
                        client_session.client_id, topic)
            self.stats.protocol_violations += 1
            # amqtt's answer (return False) only stopped the message loop and left the socket open;
            # closing the connection lets the loop see the disconnect: Will published, session ended
            client_session.attributes[_CLOSING] = True  # nothing queued behind it is routed
            _close_connection(handler)
            return False
        self.stats.messages_received += 1
        principal = client_session.attributes.get(PRINCIPAL_KEY)
        if principal is None or topic.startswith("$") or not self.authorizer.allowed(
                principal, Action.PUBLISH, topic):
            self.stats.publish_denied += 1
            if log.isEnabledFor(logging.INFO):
                log.info("client %r (user %r) may not publish to %r: dropped", client_session.client_id,
                         principal.username if principal else None, topic)
            return True
        await self.plugins_manager.fire_event(BrokerEvents.MESSAGE_BROADCAST,
                                              client_id=client_session.client_id, message=app_message)
        qos = app_message.qos or 0
        data = app_message.data
        await self._broadcast_message(client_session, topic, data, qos)
        if app_message.retain:  # amqtt sets it from the packet; our reader loop builds no packet
            await self.retain_message(client_session, topic, data, qos)
        if is_sparkplug_topic(topic):
            await self._sparkplug_aware(client_session, topic, bytes(data), qos)
        return True

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        broadcast = await self._broadcast_queue.get()
        for _ in range(_BROADCAST_BATCH):
            await self._route(broadcast, running_tasks)
            if self._broadcast_queue.empty():
                break
            broadcast = self._broadcast_queue.get_nowait()
        else:
            await self._route(broadcast, running_tasks)

    async def _route(self, broadcast: dict[str, Any], running_tasks: deque[asyncio.Task[Any]]) -> None:
        topic: str = broadcast["topic"]
        data = broadcast["data"]
        publish_qos: int | None = broadcast.get("qos")
        allowed = self.authorizer.allowed
        encoded: EncodedPublish | None = None
        for topic_filter, subscriptions in self._subscriptions.items():
            if not topic_matches(topic_filter, topic):
                continue
            for target, sub_qos in subscriptions:
                principal = target.attributes.get(PRINCIPAL_KEY)
                if principal is None or not allowed(principal, Action.RECEIVE, topic):
                    continue
                qos = sub_qos if publish_qos is None else min(publish_qos, sub_qos)
                if target.transitions.state != "connected":
                    # MQTT 3.1.2.4: queue QoS 1/2 for a disconnected persistent session, behind
                    # what its closing outbox still holds (handed over in _handle_disconnect)
                    box = getattr(self._get_handler(target), "uns_outbox", None)
                    if box is not None and box.closed and not box.drained and qos == 1:
                        if encoded is None:
                            encoded = EncodedPublish(topic, data)
                        box.publish(encoded, qos)
                    elif not target.clean_session and qos and not target.is_anonymous:
                        await self._retain_broadcast_message(broadcast, qos, target)
                    continue
                handler = self._get_handler(target)
                if handler is None:
                    continue
                if qos < 2 and isinstance(handler, KeepAliveBrokerHandler):
                    # issue 20: no task per message, one encoding for all subscribers (broker/outbox.py)
                    if encoded is None:
                        encoded = EncodedPublish(topic, data)
                    self._count_sent(handler.outbox().publish(encoded, qos))
                else:  # QoS 2 keeps amqtt's own flow
                    self.stats.messages_sent += 1
                    running_tasks.append(asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False)))

    def _count_sent(self, sent: bool) -> None:
        """Count one delivery through an outbox: sent, or a QoS 0 message dropped for a connection
        over max_queued_qos0_bytes (:meth:`broker.outbox.Outbox.publish`)."""
        if sent:
            self.stats.messages_sent += 1
        else:
            self.stats.qos0_dropped += 1

    # ---- Sparkplug awareness ------------------------------------------------------------------
    async def _sparkplug_aware(self, session: Session, topic: str, data: bytes, qos: int) -> None:
        parsed = sparkplug_topic_or_none(topic)
        if parsed is None:
            return
        certificate = self.certificates.record(parsed, data)
        if certificate is not None:
            await self.retain_message(None, certificate, data, qos)
            await self._broadcast_message(None, certificate, data, qos)
        alarm = self.edge_nodes.on_publish(session.client_id or "", parsed, int(time.time() * 1000))
        if alarm is not None:
            self.stats.duplicate_edge_nodes += 1
            log.warning("duplicate edge node %s/%s: client %r births it while client %r is still connected "
                        "with it; alarm on %s", alarm.group_id, alarm.edge_node_id, alarm.new_client_id,
                        alarm.existing_client_id, DUPLICATE_ALARM_TOPIC)
            await self._broadcast_message(None, DUPLICATE_ALARM_TOPIC, alarm.to_json(), 1)

    # ---- $SYS ---------------------------------------------------------------------------------
    async def _sys_loop(self) -> None:
        last: dict[str, bytes] = {}
        while True:
            snapshot = self.stats.snapshot(
                version=self._version,
                clients_connected=sum(1 for s, _ in self._sessions.values() if s.transitions.state == "connected"),
                retained=len(self._retained_messages),
                subscriptions=sum(len(subs) for subs in self._subscriptions.values()),
                certificates=len(self.certificates),
            )
            for sys_topic, payload in snapshot.items():
                if last.get(sys_topic) != payload:
                    await self.retain_message(None, sys_topic, payload, 0)
                    await self._broadcast_message(None, sys_topic, payload, 0)
            last = snapshot
            await asyncio.sleep(self._sys_interval)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
