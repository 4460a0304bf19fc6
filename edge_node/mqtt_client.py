"""The MQTT shell around :class:`edge_node.session.EdgeSession`: sockets, timers and the store.

:class:`SparkplugEdgeClient` owns three things the session must not: the aiomqtt connection
(with reconnects over the broker list), the publish-interval timer, and the SQLite store. It feeds
the session events and executes the actions it returns, strictly in order, from one writer task,
so the wire order is the session's order (``seq`` order).

Usage (the public API the OPC UA side calls)::

    async with SparkplugEdgeClient(config, definitions, data_dir) as client:
        client.set_command_handler(on_command)           # NCMD/DCMD writes, other than rebirth
        client.set_rejected_command_handler(on_rejected) # NCMD/DCMD the session could not decode

(the command side sees it as :class:`edge_node.commands.edge_client.EdgeClient`).
        await client.device_online(DeviceOnline("Filler", current=[...]))
        client.submit(MetricUpdate("Filler", "Count", 42, ts))   # non-blocking
        await client.wait_birthed()
        client.stats                                       # counters for Prometheus

Delivery guarantee (what "accepted" means):

* :meth:`SparkplugEdgeClient.submit` hands a change to the session, in memory, and returns.
  At the next tick (within one publish interval) the change is *accepted*: either it is put in an
  NDATA/DDATA for the current connection, or committed to the SQLite store (WAL; one fsync'd
  commit per tick with the default ``synchronous=FULL``). Only changes submitted in the last
  publish interval before a kill -9 can be lost (the OPC UA subscription re-reads current values
  after a restart); nothing committed to the store is lost.
* A published change stays *in flight* until the broker is known to have routed it: we subscribe
  to our own NDATA/DDATA and match the echoed ``seq``, or a later QoS 1 publish (our NDEATH) was
  acknowledged. If the connection drops first, in-flight changes are committed to the store and
  re-sent as ``is_historical``. Stored changes are deleted only once their historical message was
  confirmed the same way. If the broker refuses the echo subscription (an ACL), a write to the
  socket counts as confirmation and a broker crash can lose what it had not routed yet.
* So every accepted change reaches the broker at least once, and exactly once unless the broker
  dies between routing a message to other subscribers and echoing it to us. In-flight changes are
  held in memory; if the broker stops confirming, new changes go to the store instead of piling up.
* A kill -9 fires the Will (NDEATH with the bdSeq of the NBIRTH); the next start uses bdSeq + 1
  and replays the store after its births.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_node.errors import EdgeError
from uns.aio import run_until_first_done
from uns.mqtt_url import BrokerURL
from uns.sparkplug.errors import LocalProtocolError
from uns.sparkplug.model import now_ms
from uns.sparkplug.peek import peek_seq
from uns.sparkplug.topic import MessageType, StateTopic, device_prefix, node_topic

from .commands.edge_client import CommandHandler, RejectedCommandHandler
from .model import DeviceOffline, DeviceOnline, MetricDefinition, MetricUpdate, TemplatesDefined
from .session import (
    Action,
    CommandReceived,
    ConnectFailed,
    ConnectStarted,
    DataConfirmed,
    DeliverCommand,
    Disconnect,
    EdgeSession,
    Event,
    FetchHistory,
    HistoryFetched,
    MqttConnected,
    MqttDisconnected,
    PersistBdSeq,
    Publish,
    RejectedCommand,
    SessionFailed,
    SessionSettings,
    Shutdown,
    StateReceived,
    StoreDelete,
    StoreForward,
    Subscribe,
    Tick,
)
from .sparkplug_config import EdgeSparkplugConfig
from .store import SparkplugStore, StoreError
from .store_health import StoreHealth

__all__ = ["EdgeStats", "SparkplugEdgeClient"]

log = logging.getLogger(__name__)


_DATA_TYPES = (MessageType.NDATA, MessageType.DDATA)
#: births and deaths: logged at INFO when published
_LIFECYCLE_TYPES = (MessageType.NBIRTH, MessageType.DBIRTH, MessageType.NDEATH, MessageType.DDEATH)
#: while the store fails, how often a small write checks whether it works again (seconds)
_STORE_PROBE_S = 1.0


@dataclass(frozen=True, slots=True)
class EdgeStats:
    """A snapshot of the edge node's counters (monotonic unless noted as a gauge)."""

    connected: bool  # gauge
    birthed: bool  # gauge
    broker: str | None  # gauge: the server we are connected to (password hidden)
    bd_seq: int  # gauge
    seq: int  # gauge: seq of the last edge message
    messages_out: int
    bytes_out: int
    nbirths: int
    dbirths: int
    ddeaths: int
    rebirths: int
    rebirths_throttled: int
    next_server_requests: int
    connects: int
    connect_failures: int
    reconnects: int
    publish_errors: int
    values_submitted: int
    values_published: int
    values_replayed: int
    values_stored: int
    values_confirmed: int
    values_unencodable: int
    store_depth: int  # gauge
    store_oldest_age_s: float | None  # gauge
    store_dropped: int
    store_rejected: int
    store_errors: int
    store_lost: int  # values that could not be written to the store (disk full, I/O error)
    store_failing: bool  # gauge: a store failure episode is running (see edge_node.store_health)
    bad_commands: int
    bad_state: int
    stale_state: int
    command_handler_errors: int
    #: the session failed and reconnected from a clean state (a birth that did not encode, a bug)
    session_errors: int = 0
    #: values confirmed shortly before the primary host's death, stored again for its next run
    values_resent_after_host_loss: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ConnectionLostError(EdgeError):
    """The current connection died while an action was being executed."""


class SparkplugEdgeClient:
    """A Sparkplug B 3.0 edge node on MQTT; see the module docstring for the guarantees."""

    def __init__(self, config: EdgeSparkplugConfig, definitions: Sequence[MetricDefinition], data_dir: Path, *,
                 clock: Callable[[], int] = now_ms, rng: random.Random | None = None) -> None:
        self.config = config
        self.definitions = list(definitions)
        self.data_dir = Path(data_dir)
        self._clock = clock
        self._rng = rng or random.Random()
        self._urls: list[BrokerURL] = config.broker_urls
        # this shell executes RejectedCommand (by handing it on, or logging that nobody listens)
        self._settings = replace(SessionSettings.from_config(config), report_rejected_commands=True)
        # Built at start(): the session needs the persisted bdSeq
        self._session: EdgeSession | None = None
        self._store: SparkplugStore | None = None
        self._outbox: deque[Action] = deque()
        self._outbox_ready = asyncio.Event()
        self._outbox_idle = asyncio.Event()
        self._outbox_idle.set()
        self._client: aiomqtt.Client | None = None
        self._client_connection = 0
        self._url: BrokerURL | None = None
        self._lost = asyncio.Event()
        self._disconnect_request: Disconnect | None = None
        self._echo = False
        self._birthed = asyncio.Event()
        self._first_birth_gate: tuple[asyncio.Event, float] | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self._command_handler: CommandHandler | None = None
        self._rejected_handler: RejectedCommandHandler | None = None
        self._state_topic = (str(StateTopic(config.primary_host_id)) if config.primary_host_id else None)
        g, e = config.group_id, config.edge_node_id
        self._ncmd_topic = node_topic(g, MessageType.NCMD, e)
        self._dcmd_prefix = device_prefix(g, MessageType.DCMD, e)
        self._echo_topics = (node_topic(g, MessageType.NDATA, e), device_prefix(g, MessageType.DDATA, e))
        # counters of the shell
        self._messages_out = 0
        self._bytes_out = 0
        self._connect_failures = 0
        self._reconnects = 0
        self._publish_errors = 0
        self._handler_errors = 0
        self._store_health = StoreHealth()
        self._last_store_probe = 0.0
        self._bd_seq_unsaved: int | None = None

    # -- lifetime -----------------------------------------------------------------------------

    async def __aenter__(self) -> SparkplugEdgeClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store, then connect in the background (this returns before the birth)."""
        if self._session is not None:
            raise LocalProtocolError("SparkplugEdgeClient.start() called twice")
        store_cfg = self.config.store
        self._store = SparkplugStore(self.config.store_path(self.data_dir), max_values=store_cfg.max_values,
                                     full_policy=store_cfg.full_policy, synchronous=store_cfg.synchronous)
        self._session = EdgeSession(self._settings, self.definitions, last_bd_seq=self._store.load_bd_seq(),
                                    has_backlog=self._store.depth > 0, clock=self._clock)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer(), name="sparkplug-writer"),
                       loop.create_task(self._ticker(), name="sparkplug-ticker"),
                       loop.create_task(self._connections_forever(), name="sparkplug-connections")]

    async def stop(self) -> None:
        """Flush, publish NDEATH, disconnect, close the store. Values not delivered stay in the store."""
        session = self._session
        if session is None or self._stopping:
            return
        self._stopping = True
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        try:
            actions = session.send(Shutdown())
            expects_disconnect = any(isinstance(a, Disconnect) for a in actions)
            self._enqueue(actions)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drained(), max(0.1, deadline - time.monotonic()))
            if expects_disconnect:  # the writer published NDEATH and asked the connection loop to close
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._tasks[2]), max(0.1, deadline - time.monotonic()))
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            # Whatever the writer did not get to: the store actions still matter
            self._run_store_actions_now()
            for task in list(self._handler_tasks):
                task.cancel()
            assert self._store is not None
            self._store.close()

    # -- the API the OPC UA side calls --------------------------------------------------------

    def submit(self, update: MetricUpdate) -> None:
        """Hand one change over; returns at once. Accepted (published or stored) within one interval.

        Raises :class:`LocalProtocolError` for a metric that is not in the definitions or after
        :meth:`stop`.
        """
        session = self._session
        if session is None:
            raise LocalProtocolError("call start() (or enter the context) before submit()")
        session.submit(update)

    def set_current(self, update: MetricUpdate) -> None:
        """A node metric's value read at (re)connect: carried by the NBIRTH if it is still to come,
        else published like a change (:meth:`EdgeSession.set_current`)."""
        self._require().set_current(update)

    def hold_first_birth(self, ready: asyncio.Event, timeout_s: float) -> None:
        """Before :meth:`start`: the first connection (hence the first NBIRTH) waits until ``ready``
        is set or ``timeout_s`` passed, so the node's OPC UA values can be read first."""
        self._first_birth_gate = (ready, timeout_s)

    async def device_online(self, event: DeviceOnline) -> None:
        """The device's source is up: DBIRTH with ``event.current`` (now if born, else at the birth)."""
        self._enqueue(self._require().send(event))

    async def templates_defined(self, event: TemplatesDefined) -> None:
        """The template definitions read from the OPC UA server: every NBIRTH declares them; a
        changed set rebirths the node (:class:`EdgeSession` rule 14)."""
        self._enqueue(self._require().send(event))

    async def device_offline(self, event: DeviceOffline) -> None:
        """The device's source is gone: its pending values, then DDEATH."""
        self._enqueue(self._require().send(event))

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Called for NCMD/DCMD metrics other than ``Node Control/Rebirth`` (the session handles that)."""
        self._command_handler = handler

    def set_rejected_command_handler(self, handler: RejectedCommandHandler | None) -> None:
        """Called for every NCMD/DCMD the session could not decode (not Sparkplug, unknown device,
        alias or metric); it is counted in ``bad_commands`` either way. Optional: without a handler
        such a command is only counted and logged, as before."""
        self._rejected_handler = handler

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    @property
    def store_failing(self) -> str | None:
        """Why the store-and-forward file cannot be written right now, or None when it works."""
        health = self._store_health
        return health.cause if health.failing else None

    @property
    def birthed(self) -> bool:
        """True once the NBIRTH of the current connection is on the wire, until the connection ends."""
        return self._birthed.is_set()

    async def wait_birthed(self, timeout: float | None = None) -> None:
        """Wait until the NBIRTH (and DBIRTHs queued with it) went out; TimeoutError otherwise."""
        await asyncio.wait_for(self._birthed.wait(), timeout)

    async def publish_json(self, topic: str, payload: bytes, qos: int = 1, *, wait_s: float = 10.0) -> bool:
        """Publish a non-Sparkplug message (a command result on the UNS ``_cmd`` topic) now.

        It bypasses the session's outbox on purpose: it carries no ``seq`` and is not stored and
        forwarded (the edge's audit chain is the durable record of a command). Waits up to
        ``wait_s`` for the node to be online; returns False if it was not sent.
        """
        if not self._birthed.is_set():
            try:
                await asyncio.wait_for(self._birthed.wait(), wait_s)
            except TimeoutError:
                return False
        client = self._client
        if client is None or self._lost.is_set():
            return False
        try:
            await self._guard(client.publish(topic, payload, qos=qos, retain=False))
        except (aiomqtt.MqttError, _ConnectionLostError) as exc:
            log.warning("publish to %s failed: %s", topic, exc)
            return False
        self._messages_out += 1
        self._bytes_out += len(payload)
        return True

    @property
    def birthed_event(self) -> asyncio.Event:
        return self._birthed

    @property
    def session(self) -> EdgeSession:
        return self._require()

    @property
    def stats(self) -> EdgeStats:
        session = self._require()
        c = session.counters
        store = self._store
        assert store is not None
        oldest = store.oldest_ts() if store.depth > 0 else None
        return EdgeStats(
            connected=session.connected, birthed=self.birthed,
            broker=str(self._url) if self._url is not None and session.connected else None,
            bd_seq=session.bd_seq, seq=session.seq, messages_out=self._messages_out, bytes_out=self._bytes_out,
            nbirths=c.nbirths, dbirths=c.dbirths, ddeaths=c.ddeaths, rebirths=c.rebirths,
            rebirths_throttled=c.rebirths_throttled, next_server_requests=c.next_server_requests,
            connects=c.connects, connect_failures=self._connect_failures,
            reconnects=self._reconnects, publish_errors=self._publish_errors,
            values_submitted=c.values_submitted, values_published=c.values_published,
            values_replayed=c.values_replayed, values_stored=c.values_stored, values_confirmed=c.values_confirmed,
            values_unencodable=c.values_unencodable, store_depth=store.depth,
            store_oldest_age_s=None if oldest is None else max(0.0, (self._clock() - oldest) / 1000.0),
            store_dropped=store.dropped, store_rejected=store.rejected, store_errors=self._store_health.errors,
            store_lost=self._store_health.lost, store_failing=self._store_health.failing, bad_commands=c.bad_commands,
            bad_state=c.bad_state, stale_state=c.stale_state, command_handler_errors=self._handler_errors,
            session_errors=c.session_errors, values_resent_after_host_loss=c.values_resent_after_host_loss,
        )

    # -- internals: the session ------------------------------------------------------------------

    def _require(self) -> EdgeSession:
        if self._session is None:
            raise LocalProtocolError("the SparkplugEdgeClient is not started")
        return self._session

    def _enqueue(self, actions: list[Action]) -> None:
        if actions:
            self._outbox.extend(actions)
            self._outbox_idle.clear()
            self._outbox_ready.set()

    def _feed(self, event: Event) -> None:
        """Send a peer-caused event; a bug surfacing here is logged, never allowed to kill the loop."""
        try:
            self._enqueue(self._require().send(event))
        except Exception:  # noqa: BLE001 - a peer must never crash the edge node
            log.exception("edge session failed on %s", type(event).__name__)

    async def _drained(self) -> None:
        await self._outbox_idle.wait()

    # -- internals: tasks --------------------------------------------------------------------------

    async def _ticker(self) -> None:
        interval = self.config.publish_interval_ms / 1000.0
        loop = asyncio.get_running_loop()
        next_at = loop.time() + interval
        while not self._stopping:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = max(next_at + interval, loop.time())
            if not self._stopping:
                self._feed(Tick())
                self._probe_store()

    def _probe_store(self) -> None:
        """While the store fails (or a bdSeq is not yet durable), try one small write per second:
        with no values to store (connected, nothing buffered) no write would otherwise tell us
        that space came back, and the episode would never end."""
        if not self._store_health.failing and self._bd_seq_unsaved is None:
            return
        now = time.monotonic()
        if now - self._last_store_probe < _STORE_PROBE_S:
            return
        self._last_store_probe = now
        if self._bd_seq_unsaved is not None:
            self._save_bd_seq(self._bd_seq_unsaved)  # the write that was owed doubles as the probe
            return
        store = self._store
        assert store is not None
        try:
            store.probe()
        except StoreError as exc:
            self._store_health.failed("probe", exc)
        else:
            self._store_health.worked()

    def _save_bd_seq(self, bd_seq: int) -> None:
        """Durable before CONNECT when the store works; when it does not, connect anyway.

        Why not refuse to connect: an edge that cannot write its disk still has live values to
        deliver, and staying offline loses all of them. The cost of a bdSeq that is not durable
        is small: only a crash before it is saved makes the next start reuse it. It is saved as
        soon as the store works again (:meth:`_probe_store`).
        """
        store = self._store
        assert store is not None
        try:
            store.save_bd_seq(bd_seq)
        except StoreError as exc:
            self._bd_seq_unsaved = bd_seq
            self._store_health.failed("save bdSeq", exc)
        else:
            self._bd_seq_unsaved = None
            self._store_health.worked()

    async def _writer(self) -> None:
        """Execute actions one at a time, in order: the only place that publishes or writes the store."""
        while True:
            if not self._outbox:
                self._outbox_idle.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
                continue
            action = self._outbox.popleft()
            try:
                await self._execute(action)
            except asyncio.CancelledError:
                self._outbox.appendleft(action)
                raise
            except Exception:  # noqa: BLE001 - log and go on; the store errors are the serious ones
                log.exception("edge node action %s failed", type(action).__name__)

    async def _execute(self, action: Action) -> None:
        store = self._store
        session = self._require()
        assert store is not None
        if isinstance(action, Publish):
            await self._publish(action)
        elif isinstance(action, StoreForward):
            # a failing store loses these values (counted, logged once per episode) and nothing else:
            # the MQTT session goes on, and the next write that works ends the episode
            try:
                store.append(action.updates, session.datatype_of)
            except StoreError as exc:
                self._store_health.failed("store values", exc, lost=len(action.updates))
            else:
                self._store_health.worked()
        elif isinstance(action, StoreDelete):
            try:
                store.delete(action.ids)
            except StoreError as exc:  # the rows stay and may be replayed again
                self._store_health.failed("delete delivered values", exc)
            else:
                self._store_health.worked()
        elif isinstance(action, FetchHistory):
            try:
                rows = store.fetch(action.limit, after=action.after, devices=action.devices)
            except Exception as exc:  # noqa: BLE001 - a read error is a store failure like any other
                self._store_health.failed("read the backlog", exc)
                self._feed(HistoryFetched([], exhausted=False))  # retried at the next tick
                return
            self._feed(HistoryFetched(rows, exhausted=len(rows) < action.limit))
        elif isinstance(action, Subscribe):
            await self._subscribe(action)
        elif isinstance(action, Disconnect):
            self._disconnect_request = action
            self._lost.set()
        elif isinstance(action, DeliverCommand):
            self._deliver(action)
        elif isinstance(action, RejectedCommand):
            self._deliver_rejected(action)
        elif isinstance(action, SessionFailed):
            # the session is in ERROR; the NDEATH and Disconnect(reconnect=True) after this end the
            # connection, and the connection loop starts a clean one
            log.error("edge session error on %s in state %s: %s; reconnecting from a clean state",
                      action.event, action.state, action.error)
        else:  # pragma: no cover - PersistBdSeq/Connect are handled by the connection loop
            raise LocalProtocolError(f"unexpected action {action!r} in the outbox")

    def _run_store_actions_now(self) -> None:
        """At stop: execute what is left for the store; publishes can no longer happen."""
        store = self._store
        session = self._session
        if store is None or session is None:
            return
        while self._outbox:
            action = self._outbox.popleft()
            try:
                if isinstance(action, StoreForward):
                    store.append(action.updates, session.datatype_of)
                elif isinstance(action, StoreDelete):
                    store.delete(action.ids)
            except StoreError as exc:
                lost = len(action.updates) if isinstance(action, StoreForward) else 0
                self._store_health.failed("store action at shutdown", exc, lost=lost)

    async def _publish(self, action: Publish) -> None:
        client = self._client
        if client is None or action.connection != self._client_connection or self._lost.is_set():
            return  # for a connection that is gone: the session stores what it carried
        try:
            await self._guard(client.publish(action.topic, action.payload, qos=action.qos, retain=action.retain))
        except (aiomqtt.MqttError, _ConnectionLostError) as exc:
            self._publish_errors += 1
            log.warning("publish to %s failed (%s); reconnecting", action.topic, exc)
            self._lost.set()
            return
        self._messages_out += 1
        self._bytes_out += len(action.payload)
        if action.message_type in _LIFECYCLE_TYPES:  # what a plant reads in the log: INFO, one line each
            session = self._session
            log.info("%s published on %s (bdSeq %s)", action.message_type.value, action.topic,
                     session.bd_seq if session is not None else "?")
        if action.message_type is MessageType.NBIRTH:
            self._birthed.set()
        if action.fence:
            self._feed(DataConfirmed(None, action.connection))
        elif action.message_type in _DATA_TYPES and not self._echo:
            self._feed(DataConfirmed(action.seq, action.connection))

    async def _subscribe(self, action: Subscribe) -> None:
        client = self._client
        if client is None or self._lost.is_set():
            return
        try:
            codes = await self._guard(client.subscribe([(f, action.qos) for f in action.filters]))
        except (aiomqtt.MqttError, _ConnectionLostError) as exc:
            log.warning("subscribe failed (%s); reconnecting", exc)
            self._lost.set()
            return
        failed = [f for f, code in zip(action.filters, codes, strict=False) if _suback_failed(code)]
        if action.required:
            if failed:
                log.error("broker refused subscriptions %s; reconnecting", failed)
                self._lost.set()
        else:
            self._echo = not failed
            if failed:
                log.warning("broker refused the delivery echo %s: a DATA counts as delivered once written", failed)

    async def _guard(self, call: Awaitable[Any]) -> Any:
        """Await an aiomqtt call, but give up as soon as the connection is known to be lost."""
        task = asyncio.ensure_future(call)
        done = await run_until_first_done(task, self._lost.wait())  # raises the call's own failure
        if task in done:
            return task.result()
        raise _ConnectionLostError("connection lost")

    def _deliver(self, action: DeliverCommand) -> None:
        handler = self._command_handler
        if handler is None:
            log.warning("no command handler: %d metric(s) of a command for %s ignored", len(action.metrics),
                        action.device_id or "the node")
            return
        self._spawn_handler(lambda: handler(action.device_id, action.metrics), action.device_id)

    def _deliver_rejected(self, action: RejectedCommand) -> None:
        handler = self._rejected_handler
        if handler is not None:  # else the session's count and log line are all there is
            self._spawn_handler(lambda: handler(action), action.device_id)

    def _spawn_handler(self, call: Callable[[], Awaitable[None]], device_id: str | None) -> None:
        """Run a handler call in its own task: tasks start in creation order, so a handler that
        enqueues before its first await sees commands in arrival order."""

        async def run() -> None:
            try:
                await call()
            except Exception:  # noqa: BLE001 - the handler's bug must not stop the edge node
                self._handler_errors += 1
                log.exception("command handler failed for %s", device_id or "the node")

        task = asyncio.get_running_loop().create_task(run())
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    # -- internals: connections --------------------------------------------------------------------

    async def _connections_forever(self) -> None:
        """:meth:`_connections`, restarted after a bug of ours: nothing may end the reconnect loop
        while the node runs (an edge that silently stops reconnecting loses every value after)."""
        failures = 0
        while not self._stopping:
            try:
                await self._connections()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged with its traceback, then connect again
                failures += 1
                self._connect_failures += 1
                log.exception("the MQTT connection loop failed; starting it again")
                await asyncio.sleep(self._backoff(failures))

    async def _connections(self) -> None:
        """Connect, run, and reconnect with jittered backoff, walking the broker list on failure."""
        session = self._require()
        index = 0
        failures = 0
        first = True
        if self._first_birth_gate is not None:
            ready, timeout_s = self._first_birth_gate
            try:
                await asyncio.wait_for(ready.wait(), timeout_s)
            except TimeoutError:
                log.info("first birth: not every OPC UA source was read within %.1f s; birthing without them "
                         "(their node metrics are null until read)", timeout_s)
        while not self._stopping:
            if not first:
                delay = self._backoff(failures)
                log.info("reconnecting in %.2fs to %s", delay, self._urls[index])
                await asyncio.sleep(delay)
                if self._stopping:
                    break
                self._reconnects += 1
            first = False
            url = self._urls[index]
            actions = session.send(ConnectStarted())
            if not isinstance(actions[0], PersistBdSeq):  # the session failed (SessionFailed): log, wait, again
                self._enqueue(actions)
                failures += 1
                continue
            persist, connect = actions[0], actions[1]
            self._save_bd_seq(persist.bd_seq)  # type: ignore[union-attr]
            self._lost = asyncio.Event()
            self._disconnect_request = None
            self._echo = False
            try:
                client = aiomqtt.Client(**url.aiomqtt_kwargs(**self._client_kwargs(connect)))  # type: ignore[arg-type]
                await client.__aenter__()
            except Exception as exc:  # noqa: BLE001 - whatever failed, the next attempt follows
                self._connect_failures += 1
                failures += 1
                log.warning("cannot connect to %s: %s", url, exc)
                session.send(ConnectFailed(str(exc)))
                index = (index + 1) % len(self._urls)
                continue
            if self._stopping:  # stop() came while we were connecting: the session is closed
                await self._close(client, None)
                break
            self._client, self._url = client, url
            self._client_connection = session.connection
            self._echo = False
            failures = 0
            log.info("connected to %s (bdSeq %d)", url, session.bd_seq)
            reader = asyncio.get_running_loop().create_task(self._reader(client), name="sparkplug-reader")
            try:
                self._enqueue(session.send(MqttConnected()))
                await self._lost.wait()
            finally:
                request = self._disconnect_request
                self._lost.set()
                await self._close(client, request)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                self._client = None
                self._birthed.clear()
                self._enqueue(session.send(MqttDisconnected(request.reason if request else "connection lost")))
            if request is None or request.next_server or len(self._urls) == 1:
                index = (index + 1) % len(self._urls)
            if request is not None and not request.next_server and not request.reconnect:
                break  # shutdown

    def _client_kwargs(self, connect: Any) -> dict[str, Any]:
        v5 = self.config.mqtt_version == "5"
        kwargs: dict[str, Any] = {
            "identifier": self.config.mqtt_client_id,
            "protocol": aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            "will": aiomqtt.Will(connect.will_topic, connect.will_payload, qos=connect.will_qos,
                                 retain=connect.will_retain),
            "keepalive": self.config.keepalive_s,
            "timeout": self.config.connect_timeout_s,
        }
        if v5:
            # Clean Start = 1 and no Session Expiry property (= 0): tck-id-principles-persistence-clean-session-50
            kwargs["clean_start"] = True
        else:
            kwargs["clean_session"] = True  # tck-id-principles-persistence-clean-session-311
        return kwargs

    async def _close(self, client: aiomqtt.Client, request: Disconnect | None) -> None:
        """DISCONNECT; after our own NDEATH on MQTT 5 with reason 0x04, as the spec asks
        (tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50). aiomqtt has no reason code
        parameter, so this goes through its paho client (aiomqtt is pinned <3)."""
        try:
            if request is not None and request.publish_will and self.config.mqtt_version == "5":
                inner: paho.Client = client._client  # noqa: SLF001
                inner.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(client._disconnected), 2.0)  # noqa: SLF001
            await asyncio.wait_for(client.__aexit__(None, None, None), 5.0)
        except Exception as exc:  # noqa: BLE001 - the connection is gone either way
            log.debug("disconnect: %s", exc)

    async def _reader(self, client: aiomqtt.Client) -> None:
        connection = self._client_connection
        try:
            async for message in client.messages:
                topic = message.topic.value
                payload = message.payload if isinstance(message.payload, bytes) else bytes(message.payload or b"")
                if topic.startswith(self._echo_topics[1]) or topic == self._echo_topics[0]:
                    seq = peek_seq(payload)
                    if seq is not None:
                        self._feed(DataConfirmed(seq, connection))
                elif topic == self._state_topic:
                    self._feed(StateReceived(topic.rsplit("/", 1)[1], payload))
                elif topic == self._ncmd_topic:
                    self._feed(CommandReceived(None, payload))
                elif topic.startswith(self._dcmd_prefix):
                    self._feed(CommandReceived(topic[len(self._dcmd_prefix):], payload))
        except aiomqtt.MqttError as exc:
            if self._stopping:  # our own disconnect after NDEATH: expected, not a fault to warn about
                log.debug("connection to %s closed at stop: %s", self._url, exc)
            else:
                log.warning("connection to %s lost: %s", self._url, exc)
        finally:
            self._lost.set()

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        base = min(cfg.reconnect_max_s, cfg.reconnect_min_s * (2 ** min(failures, 30)))
        return base * (1.0 - cfg.reconnect_jitter * self._rng.random())


def _suback_failed(code: Any) -> bool:
    if isinstance(code, ReasonCode):
        return code.is_failure
    return int(code) >= 0x80
