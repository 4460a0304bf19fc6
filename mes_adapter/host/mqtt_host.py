"""The aiomqtt shell of the Sparkplug primary host: sockets around the pure parts.

    async with SparkplugHost(HostConfig(broker_url="mqtt://127.0.0.1:1883", host_id="mes")) as host:
        await host.wait_online()
        host.model.metric("acme:plant1", "packaging:line1", "filler", "Speed")
        async with host.model.subscribe() as changes:
            async for change in changes: ...

What it does with each piece:

* :class:`~.session.HostSession` says what to send around CONNECT/SUBSCRIBE/STATE; this shell
  registers the Will, subscribes (``$sparkplug/certificates/spBv1.0/#``, its own STATE,
  ``spBv1.0/#``, in one SUBSCRIBE so an aware broker's retained births come before live data),
  publishes the STATE birth first, re-asserts it, and publishes offline before DISCONNECT.
* :class:`~.tracker.EdgeTracker` turns each message into events; rebirth requests become an NCMD
  ``Node Control/Rebirth``=true by name, QoS 0, no seq (tck-id-operational-behavior-data-commands-
  ncmd-rebirth-verb/-name/-value, tck-id-payloads-ncmd-seq/-qos/-retain; the metric is never
  aliased, the one exception to tck-id-payloads-alias-data-cmd-requirement).
* :class:`~.live_model.LiveModel` applies the events and streams changes;
  :class:`~.mirror.UnsMirror` shapes and conflates them into retained JSON, and
  :class:`~.mirror_publisher.MirrorPublisher` publishes it on its own paho connection
  (``<client id>-mirror``, no Will), so mirror bulk neither costs aiomqtt's per-publish overhead
  nor queues in front of STATE and NCMD; a slow broker only makes the mirror conflate more,
  never blocks decoding.
* If the connection drops, every node goes offline and every tag STALE (spec ch. 5), and the
  shell reconnects with back-off and a new STATE timestamp, forever: a refused or timed-out
  CONNECT, a reset, a keep-alive timeout and even a bug of ours in one session all end in the
  next attempt (aiomqtt bounds CONNECT and SUBSCRIBE with its timeout).

Nothing a peer sends stops the host: the pure parts count violations, and a bug of ours while
handling one message is logged and counted (``handler_errors``), never fatal to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from mes_adapter.errors import MesError
from uns.aio import run_until_first_done
from uns.mqtt_session import ReconnectPolicy, reconnect_forever
from uns.sparkplug.control import rebirth_request
from uns.sparkplug.errors import MalformedPayloadError
from uns.sparkplug.model import now_ms
from uns.sparkplug.topic import CERTIFICATES_PREFIX, STATE_PREFIX, group_of

from .config import HostConfig
from .live_model import LiveModel
from .mirror import UnsMirror
from .mirror_publisher import MirrorPublisher
from .session import Disconnect, HostSession, Publish, SessionState, parse_state
from .stats import HostStats
from .tracker import (
    DeviceBorn,
    DeviceDied,
    EdgeTracker,
    Event,
    MetricsRetired,
    NodeBorn,
    NodeDied,
    NodeQuarantined,
    NodeReleased,
    ProtocolViolation,
    RebirthNeeded,
)

log = logging.getLogger("uns.host")


def _log_lifecycle(host_id: str, event: NodeBorn | DeviceBorn | NodeDied | DeviceDied) -> None:
    """Births and deaths at INFO, one line each: what an operator reads to see a line come and go."""
    node = f"{event.node[0]}/{event.node[1]}"
    if isinstance(event, NodeBorn):
        source = " (from the broker's stored birth certificate)" if event.from_certificate else ""
        log.info("host %s: edge node %s born (bdSeq %s)%s", host_id, node, event.bd_seq, source)
    elif isinstance(event, DeviceBorn):
        source = " (from the broker's stored birth certificate)" if event.from_certificate else ""
        log.info("host %s: device %s/%s born%s", host_id, node, event.device_id, source)
    elif isinstance(event, NodeDied):
        log.info("host %s: edge node %s dead (%s, bdSeq %s); its tags are STALE", host_id, node, event.reason,
                 event.bd_seq)
    else:
        log.info("host %s: device %s/%s dead (%s); its tags are STALE", host_id, node, event.device_id, event.reason)


_SHUTDOWN_FLUSH_S = 5.0


class HostNotOnlineError(MesError, RuntimeError):
    """A command was asked for while the host has no MQTT session."""


class GroupNotOwnedError(MesError):
    """A command for a Sparkplug group another instance owns (``host.groups``)."""


class _ViolationLog:
    """Log the first few violations of each kind per minute with their topic, count the rest."""

    def __init__(self, per_minute: int = 20) -> None:
        self.per_minute = per_minute
        self._window: dict[str, tuple[float, int]] = {}

    def __call__(self, violation: ProtocolViolation) -> None:
        now = time.monotonic()
        start, count = self._window.get(violation.kind, (now, 0))
        if now - start > 60:
            start, count = now, 0
        count += 1
        self._window[violation.kind] = (start, count)
        if count <= self.per_minute:
            log.warning("sparkplug %s on %s: %s", violation.kind, violation.topic, violation.detail)
        elif count == self.per_minute + 1:
            log.warning("sparkplug %s: more than %d this minute, counting silently", violation.kind,
                        self.per_minute)


class SparkplugHost:
    """Sparkplug 3.0 primary host + UNS JSON mirror over one MQTT server."""

    def __init__(self, config: HostConfig, *, clock: Callable[[], int] = now_ms) -> None:
        self.config = config
        self._clock = clock
        self.session = HostSession(config.host_id, use_certificates=config.use_certificates, groups=config.groups)
        self.tracker = EdgeTracker(**config.tracker_options())
        self.model = LiveModel(config.change_stream_size)
        self.mirror = UnsMirror(config.mapping, interval_ms=config.conflation_interval_ms,
                                fallback_root=config.fallback_root,
                                include_control_metrics=config.include_control_metrics)
        #: STATE of other hosts seen on the broker: host_id -> (online, timestamp)
        self.other_hosts: dict[str, tuple[bool, int]] = {}
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._online = asyncio.Event()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._control: list[Publish] = []
        self.mirror_publisher = MirrorPublisher(
            self.mirror, config.broker, config.mirror_client_id, qos=config.mirror_qos, protocol=config.protocol,
            keepalive_s=config.keepalive_s, window=config.mirror_window, reconnect_min_s=config.reconnect_min_s,
            reconnect_max_s=config.reconnect_max_s, clock=clock)
        self._mirror_task: asyncio.Task[None] | None = None
        self._log_violation = _ViolationLog()
        self._messages_in = 0
        self._bytes_in = 0
        self._reconnects = 0
        self._reconnect = ReconnectPolicy(f"host {config.host_id} to {config.broker}", config.reconnect_min_s,
                                          config.reconnect_max_s, logger=log)
        self._handler_errors = 0
        self._connections = 0
        #: messages of groups this host does not own (``host.groups``), ignored
        self._foreign_group_messages = 0

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> SparkplugHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("host already started")
        self._mirror_task = asyncio.create_task(self.mirror_publisher.run(),
                                                name=f"uns-mirror-{self.config.host_id}")
        self._task = asyncio.create_task(self._run(), name=f"sparkplug-host-{self.config.host_id}")

    async def wait_online(self, timeout: float = 15.0) -> None:
        await asyncio.wait_for(self._online.wait(), timeout)

    @property
    def online(self) -> bool:
        return self.session.online

    @property
    def connected(self) -> bool:
        """The Sparkplug session is up (CONNACK, SUBACK, STATE birth out): what readiness reports."""
        return self.session.online

    @property
    def mirror_connected(self) -> bool:
        """The UNS mirror's own connection is up."""
        return self.mirror_publisher.connected

    async def stop(self) -> None:
        """Clean shutdown: STALE mirror (if configured), STATE offline, DISCONNECT; then the mirror
        connection (after a short flush of whatever is still pending, e.g. STALE values offered
        while the Sparkplug session was already down)."""
        if self._task is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _SHUTDOWN_FLUSH_S + 5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._task = None
        if self._mirror_task is not None:
            await self.mirror_publisher.close(self._mirror_task)
            self._mirror_task = None

    # -- read access -------------------------------------------------------------------------

    @property
    def stats(self) -> HostStats:
        t = self.tracker.counters
        v = t.violations
        m = self.mirror.counters
        out = self.mirror_publisher
        lag = out.lag
        return HostStats(
            messages_in=self._messages_in, bytes_in=self._bytes_in,
            births=t.nbirths + t.dbirths, nbirths=t.nbirths, dbirths=t.dbirths,
            deaths=t.ndeaths + t.ddeaths, ndeaths=t.ndeaths, ddeaths=t.ddeaths,
            metrics_decoded=t.metrics_decoded, seq_gaps=t.seq_gaps,
            rebirths_requested=dict(t.rebirths_requested), rebirths_suppressed=t.rebirths_suppressed,
            invalid_payloads=v["malformed"] + v["unknown_alias"] + v["datatype_mismatch"],
            invalid_topics=v["invalid_topic"], oversize=v["oversize"], violations=dict(v),
            certificates_used=t.certificates_used, historical_values=self.model.historical_values,
            out_of_order_values=self.model.out_of_order_values,
            mirror_published=out.published, mirror_conflated=m.conflated,
            mirror_pending=self.mirror.pending + out.unconfirmed,
            mirror_lag_ms={"last": lag.last, "max": lag.max, "p50": lag.percentile(0.5), "p99": lag.percentile(0.99)},
            change_stream_dropped=self.model.dropped_changes, reconnects=self._reconnects,
            state_reasserted=self.session.reasserted, handler_errors=self._handler_errors,
            extra={"mirror_connected": out.connected, "mirror_reconnects": out.reconnects,
                   "mirror_restored": out.restored, "mirror_resent": out.resent, "mirror_qos": out.qos,
                   "mirror_unencodable": m.unencodable,
                   "reorder_held": t.reorder_held, "reorder_recovered": t.reorder_recovered,
                   "metrics_refused": dict(t.metrics_refused), "refused_values": t.refused_values,
                   "quarantines": t.quarantines, "quarantined_nodes": ["/".join(k) for k in self.tracker.quarantined()],
                   "quarantined_messages": t.quarantined_messages, "metrics_retired": t.metrics_retired,
                   "foreign_group_messages": self._foreign_group_messages},
        )

    # -- commands ----------------------------------------------------------------------------

    async def request_rebirth(self, group_id: str, edge_node_id: str) -> None:
        if not self.config.owns_group(group_id):
            raise GroupNotOwnedError(f"host {self.config.host_id!r} does not own Sparkplug group {group_id!r} "
                                     f"(host.groups: {', '.join(self.config.groups or ())})")
        await self._publish_now(self._rebirth_command(group_id, edge_node_id))

    def _rebirth_command(self, group_id: str, edge_node_id: str) -> Publish:
        """NCMD ``Node Control/Rebirth`` = true: the one rebirth request (uns.sparkplug.control)."""
        request = rebirth_request(group_id, edge_node_id, self._clock())
        return Publish(request.topic, request.payload, request.qos, request.retain)

    async def _publish_now(self, publish: Publish) -> None:
        client = self._client
        if client is None or not self.session.online:
            raise HostNotOnlineError(f"host {self.config.host_id!r} has no MQTT session")
        await client.publish(publish.topic, publish.payload, qos=publish.qos, retain=publish.retain)

    # -- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        await reconnect_forever(self._connection, stop=self._stop, policy=self._reconnect, on_down=self._down,
                                on_retry=self._retry)
        self.session.closed()

    def _down(self) -> None:
        self._client = None
        self._online.clear()

    def _retry(self) -> None:
        self._lost()
        self._reconnects += 1

    def _lost(self) -> None:
        if self.session.state is not SessionState.DISCONNECTED:
            self.session.connection_lost()
        self._control.clear()  # rebirth requests of the old connection are moot
        now = self._clock()
        self._apply(self.tracker.host_disconnected(now), now)

    async def _connection(self) -> None:
        cfg = self.config
        will = self.session.connect(self._clock())
        protocol = aiomqtt.ProtocolVersion.V5 if cfg.protocol == "5" else aiomqtt.ProtocolVersion.V311
        client_kwargs: dict[str, Any] = {
            "identifier": cfg.mqtt_client_id, "protocol": protocol, "keepalive": cfg.keepalive_s,
            "will": aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
        }
        if protocol is aiomqtt.ProtocolVersion.V311:
            client_kwargs["clean_session"] = True  # tck-id-message-flow-phid-sparkplug-clean-session-311
        else:
            client_kwargs["clean_start"] = True  # -clean-session-50 (session expiry 0 is the default)
        client = aiomqtt.Client(**cfg.broker.aiomqtt_kwargs(**client_kwargs))
        async with client:
            self._connections += 1
            subscribe = self.session.connected()
            await client.subscribe(list(subscribe.filters))
            birth = self.session.subscribed()
            await client.publish(birth.topic, birth.payload, qos=birth.qos, retain=birth.retain)
            self._client = client
            self._online.set()
            self._reconnect.connected()  # after SUBSCRIBE and STATE: a broker that drops us there still backs off
            log.info("host %s online on %s (STATE timestamp %s)", cfg.host_id, cfg.broker,
                     self.session.connect_timestamp)
            stopper = asyncio.ensure_future(self._stop.wait())
            bodies = [self._reader(client), self._publisher(client), stopper]
            if cfg.reorder_timeout_ms > 0:
                bodies.append(self._reorder_timer())
            done = await run_until_first_done(*bodies)  # raises the failure that ended the session
            if stopper in done:
                await self._shutdown(client)

    async def _shutdown(self, client: aiomqtt.Client) -> None:
        now = self._clock()
        if self.config.stale_on_shutdown:
            self._apply(self.tracker.host_disconnected(now), now)
        # the STALE values are confirmed by the broker before STATE offline goes out
        if not await self.mirror_publisher.flush(_SHUTDOWN_FLUSH_S):
            log.warning("host %s: %d mirror values not confirmed at shutdown", self.config.host_id,
                        self.mirror.pending + self.mirror_publisher.unconfirmed)
        for action in self.session.shutdown(self._clock()):
            if isinstance(action, Publish):
                await client.publish(action.topic, action.payload, qos=action.qos, retain=action.retain, timeout=5)
            elif isinstance(action, Disconnect):
                pass  # leaving ``async with client`` sends DISCONNECT
        log.info("host %s offline (clean shutdown)", self.config.host_id)

    async def _reader(self, client: aiomqtt.Client) -> None:
        handled = 0
        async for message in client.messages:
            handled += 1
            if handled % 32 == 0:
                await asyncio.sleep(0)  # a queue with messages never suspends: let the publisher run
            if not self.model.has_room:
                await self.model.wait_for_room()  # a lossless consumer is behind: back-pressure
            payload = message.payload
            if not isinstance(payload, (bytes, bytearray)):
                payload = b"" if payload is None else str(payload).encode()
            try:
                self.handle_message(message.topic.value, bytes(payload))
            except Exception:  # our bug; one message must not take the host down
                self._handler_errors += 1
                log.exception("host %s: error handling a message on %s", self.config.host_id, message.topic.value)

    async def _reorder_timer(self) -> None:
        """Expire the tracker's reorder timers (a held message's gap becomes a rebirth request)."""
        step = max(0.01, self.config.reorder_timeout_ms / 4000)
        while True:
            await asyncio.sleep(step)
            if self.tracker.next_reorder_deadline_ms() is not None:
                now = self._clock()
                self._apply(self.tracker.tick(now), now)

    async def _publisher(self, client: aiomqtt.Client) -> None:
        """The session's own publishes (STATE re-assertions, rebirth NCMDs); the mirror has its own."""
        while True:
            self._wake.clear()
            while self._control:
                action = self._control.pop(0)
                await client.publish(action.topic, action.payload, qos=action.qos, retain=action.retain)
            await self._wake.wait()

    # -- one message (sync, pure parts only) ---------------------------------------------------

    def handle_message(self, topic: str, payload: bytes) -> None:
        """Feed one received message through session/tracker/model/mirror (no awaits)."""
        now = self._clock()
        self._messages_in += 1
        self._bytes_in += len(payload)
        if topic == self.session.topic:
            try:
                actions = self.session.state_received(payload)
            except MalformedPayloadError as exc:
                self._log_violation(ProtocolViolation(topic, "bad_state", str(exc)))
                return
            for action in actions:
                if isinstance(action, Publish):
                    log.warning("host %s: saw itself declared offline; re-asserting online", self.config.host_id)
                    self._control.append(action)
            self._wake.set()
            return
        if self.config.groups is not None:
            group = group_of(topic)  # None for STATE and for topics the tracker will refuse anyway
            if group is not None and group not in self.config.groups:
                self._foreign_group_messages += 1  # not subscribed to; a broker may still deliver it
                return
        if topic.startswith(CERTIFICATES_PREFIX):
            events = self.tracker.handle_certificate(topic, payload, now)
        elif topic.startswith(STATE_PREFIX):
            self._other_host(topic, payload)
            return
        else:
            events = self.tracker.handle(topic, payload, now)
        self._apply(events, now)

    def _apply(self, events: list[Event], now: int) -> None:
        if not events:
            return
        for event in events:
            if isinstance(event, RebirthNeeded):
                log.info("host %s: requesting rebirth of %s/%s (%s: %s)", self.config.host_id, event.node[0],
                         event.node[1], event.cause.value, event.detail)
                self._control.append(self._rebirth_command(*event.node))
            elif isinstance(event, ProtocolViolation):
                self._log_violation(event)
            elif isinstance(event, MetricsRetired):
                self.mirror.retire(*event.node, event.device_id, event.names, now)
                self.model.apply(event)
            elif isinstance(event, (NodeBorn, DeviceBorn, NodeDied, DeviceDied)):
                _log_lifecycle(self.config.host_id, event)
                self.mirror.offer(self.model.apply(event), now)
            elif isinstance(event, (NodeQuarantined, NodeReleased)):
                log.warning("host %s: edge node %s/%s %s", self.config.host_id, event.node[0], event.node[1],
                            f"QUARANTINED: {event.detail}" if isinstance(event, NodeQuarantined)
                            else f"released from quarantine ({event.reason})")
            else:
                self.mirror.offer(self.model.apply(event), now)
        self._wake.set()
        self.mirror_publisher.wake()

    def _other_host(self, topic: str, payload: bytes) -> None:
        try:
            state = parse_state(payload)
        except MalformedPayloadError as exc:
            self._log_violation(ProtocolViolation(topic, "bad_state", str(exc)))
            return
        self.other_hosts[topic[len(STATE_PREFIX):]] = (state.online, state.timestamp)
