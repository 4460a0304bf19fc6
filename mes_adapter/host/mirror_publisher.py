"""The UNS mirror's own MQTT connection, fed from the asyncio loop.

Since issue 20 an mqtt:// or mqtts:// broker is reached through :class:`.mirror_wire.WireLink`
(our own PUBLISH/PUBACK code, :mod:`uns.mqtt_wire`, on the loop: ~5-8 µs of host CPU per
message against ~50 through paho); ws:// and wss:// keep the paho link below. Both links keep the
same contract, so everything said here about batches, fences and restore holds for both.

Why not the Sparkplug session's aiomqtt client: aiomqtt creates an event and a waiter per QoS 1
publish (~100-150 µs of CPU each), which capped the mirror near
3,000 messages/s while the design target is 10,000 changes/s. A plain paho client costs about a
third of that per message and does its socket work in its own thread. Its own connection
(client id ``<host client id>-mirror``, no Will) also keeps mirror bulk from queueing in front of
the host's STATE and NCMD traffic, which stays on the Sparkplug session.

How it keeps the mirror's promises:

* **Retained and conflated.** Messages come from :class:`~.mirror.UnsMirror`, which conflates per
  topic. At most ``window`` messages are handed to paho and not yet confirmed; beyond that they
  stay in the mirror, where newer values replace older ones (back-pressure becomes conflation,
  not an unbounded paho queue).
* **Confirmed in batches.** Each batch handed to paho ends with a QoS 1 *fence*; its PUBACK
  confirms the whole batch, because a broker handles one connection's packets in order (MQTT
  4.6). So ``mirror_qos: 0`` needs no per-message acknowledgement and still knows what arrived.
* **Nothing lost, never older over newer.** Every connection is a fresh paho client, so paho
  never re-sends a dead connection's messages by itself (it would race with newer ones). When a
  connection ends, every unconfirmed batch is put back into the mirror unless the mirror already
  holds a newer value for that topic (:meth:`UnsMirror.restore`); values that changed while it was
  down simply wait in the mirror. Confirmation is in order, so anything newer than a lost message
  is itself lost or still unsent: putting back the latest per topic cannot reorder.
* **Reconnects forever, whatever failed.** A connection attempt ends in exactly one of: CONNACK
  (up), a refused CONNACK, a failed TCP connect (paho's ``on_connect_fail``: with
  ``reconnect_on_failure=False`` paho's thread then simply ends, calling neither ``on_connect``
  nor ``on_disconnect``), a broker that accepts TCP but never answers (bounded by
  ``connect_timeout_s``), or a connection lost later (``on_disconnect``; and, as a safety net,
  paho reporting itself not connected while the pump waits). Each ends the link, and
  :meth:`MirrorPublisher.run` tries again with back-off, forever, until the host stops.
* **Retained again on every new connection.** A broker restarted without persistence (or the
  next broker after a failover) retains nothing: on each connection after the first, the last
  message of every topic is queued again (:meth:`UnsMirror.resend_retained`), ``_meta`` included,
  so explorers see the whole UNS without waiting for edges to re-birth.

Threading: paho callbacks run in the network thread and only append to a deque or schedule a
call on the loop (``call_soon_threadsafe``); all bookkeeping runs on the asyncio loop. paho's
``publish`` is thread-safe, so the loop calls it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from uns.mqtt_session import ReconnectPolicy
from uns.mqtt_url import BrokerURL, paho_client
from uns.sparkplug.model import now_ms

from .mirror import MirrorMessage, UnsMirror
from .mirror_link import Batch, MirrorLink
from .mirror_wire import WireLink
from .stats import LagWindow

log = logging.getLogger("uns.host.mirror")

#: messages taken from the mirror and handed to paho per step (then the loop lets the reader run)
BATCH = 256
#: the pump checks paho's own view of the connection at least this often (seconds)
_LIVENESS_S = 1.0


class _Link(MirrorLink):
    """One connection: a fresh paho client whose state dies with the connection."""

    def __init__(self, owner: MirrorPublisher, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(owner)
        self._loop = loop
        kwargs: dict[str, Any] = {"protocol": paho.MQTTv5 if owner.protocol == "5" else paho.MQTTv311,
                                  "reconnect_on_failure": False}
        self.client = paho_client(owner.url, owner.client_id, **kwargs)
        # our window bounds what paho holds, so paho gets no limit of its own: with one, every
        # PUBACK scans all held messages for a queued one (_update_inflight), quadratic in the
        # window (measured: 232 µs/message at a window of 1,024, against 40 without)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(owner.reconnect_min_s, owner.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish

    def start(self) -> None:
        host, port = self._owner.url.host, self._owner.url.port
        self.client.connect_async(host, port, keepalive=self._owner.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Blocking (paho joins its thread): call through ``asyncio.to_thread``."""
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    # -- network thread ----------------------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: the host has stopped
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._call(self._set_ended, f"refused: {reason}")
        else:
            self._call(self._set_up)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._call(self._set_ended, str(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        # the TCP connect failed (refused, reset, unreachable): paho's thread ends after this
        self._call(self._set_ended, "connect failed (broker not reachable)")

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acks.append((mid, now_ms()))
        self.acked += 1
        if self.acked >= self.wake_at:
            self.wake_at = 1 << 62
            self._call(self._owner.wake)

    # -- loop thread -------------------------------------------------------------------------

    def _set_up(self) -> None:
        if not self.ended:
            self.up = True
            self.changed.set()
            self._owner.wake()

    def alive(self) -> bool:
        """False once paho itself says the connection is gone, even if no callback told us."""
        return self.client.is_connected()

    def send(self, batch: list[MirrorMessage], qos: int) -> None:
        publish = self.client.publish
        last = len(batch) - 1
        mid = 0
        for i, message in enumerate(batch):
            mid = publish(message.topic, message.payload, qos if i < last else 1, True).mid
        record = Batch(batch, fence_mid=mid)
        self._track(record)
        self.fences[mid] = record
        self.sent += len(batch)


class MirrorPublisher:
    """Publishes what :class:`UnsMirror` hands out on a dedicated paho connection (see module doc)."""

    def __init__(self, mirror: UnsMirror, url: BrokerURL, client_id: str, *, qos: int = 1,
                 protocol: str = "3.1.1", keepalive_s: int = 30, window: int = 1024,
                 reconnect_min_s: float = 0.5, reconnect_max_s: float = 15.0,
                 connect_timeout_s: float = 10.0, clock: Callable[[], int] = now_ms) -> None:
        if qos not in (0, 1):
            raise ValueError("mirror qos must be 0 or 1")
        self.mirror = mirror
        self.url = url
        self.client_id = client_id
        self.qos = qos
        self.protocol = protocol
        self.keepalive_s = keepalive_s
        self.window = window
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.connect_timeout_s = connect_timeout_s
        self._reconnect = ReconnectPolicy(f"UNS mirror {client_id} to {url}", reconnect_min_s, reconnect_max_s,
                                          logger=log)
        self._clock = clock
        self.lag = LagWindow()
        #: mirror messages confirmed by the broker
        self.published = 0
        #: messages of lost connections put back into the mirror
        self.restored = 0
        #: retained topics published again on a new connection (the broker may have lost them)
        self.resent = 0
        self.reconnects = 0
        self.connections = 0
        #: connection attempts that ended before a CONNACK (refused, unreachable, timed out)
        self.connect_failures = 0
        self._link: _Link | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._flush_all = False

    @property
    def connected(self) -> bool:
        """True while a connection is up (CONNACK in, not lost): what readiness reports."""
        return self._link is not None and self._link.up

    @property
    def unconfirmed(self) -> int:
        return self._link.unconfirmed if self._link is not None else 0

    def wake(self) -> None:
        """Something changed (a mirror value, an ack, the connection): let the pump look again."""
        self._wake.set()

    # -- lifetime ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, pump, and on a lost connection put back what was unconfirmed and reconnect."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            link: _Link | None = None
            was_up = bug = False
            why = "?"
            try:
                # MQTT over TCP/TLS: our own wire publisher (issue 20); paho for WebSocket URLs
                link = self._link = _Link(self, loop) if self.url.websocket else WireLink(self, loop)  # type: ignore[assignment]
                was_up = await self._connection(link)
                why = link.why
            except Exception as exc:  # noqa: BLE001 - our bug or a bad setting: logged, and tried again
                why, bug = f"{type(exc).__name__}: {exc}", True
                log.exception("UNS mirror connection %s failed", self.client_id)
            finally:
                if link is not None:
                    link._set_ended(why)
                    self._settle(link)
                    await asyncio.to_thread(link.stop)
            if self._closing:
                break
            if not bug:  # once per outage (uns.mqtt_session): the backoff and the log lines
                self._reconnect.failed(f"{why}; {self.mirror.pending} values wait in the mirror" if was_up else why,
                                       was_up=was_up)
            self.reconnects += 1
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_on_close(), self._reconnect.next_delay())
        self._link = None

    async def _connection(self, link: _Link) -> bool:
        """One connection attempt and, if it is accepted, its life; True if it was up."""
        link.start()
        try:
            await asyncio.wait_for(link.changed.wait(), self.connect_timeout_s)
        except TimeoutError:
            link._set_ended(f"no CONNACK within {self.connect_timeout_s:g} s")
        if not link.up:
            if not self._closing:
                self.connect_failures += 1
            return False
        self._reconnect.connected()
        self.connections += 1
        log.info("UNS mirror connected as %s to %s (QoS %d)", self.client_id, self.url, self.qos)
        if self.connections > 1:
            resent = self.mirror.resend_retained()
            self.resent += resent
            log.info("UNS mirror: publishing %d retained topics again on the new connection", resent)
        await self._pump(link)
        return True

    async def _wake_on_close(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()

    async def flush(self, timeout: float) -> bool:
        """Publish everything the mirror holds, held values too, and wait for the broker's
        confirmation (at most ``timeout`` s; at once if not connected). True if all arrived."""
        self._flush_all = True
        self.wake()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.connected:
                if self.mirror.pending == 0 and self.unconfirmed == 0:
                    return True
                await asyncio.sleep(0.005)
            return self.mirror.pending == 0 and self.unconfirmed == 0
        finally:
            self._flush_all = False

    async def close(self, task: asyncio.Task[None], flush_s: float = 2.0) -> None:
        """Flush briefly (the host flushes its STALE values before STATE offline), then disconnect."""
        await self.flush(flush_s)
        self._closing = True
        link = self._link
        if link is not None:
            link._set_ended("closing")  # our own link
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    # -- the pump (loop thread) ----------------------------------------------------------------

    async def _pump(self, link: _Link) -> None:
        mirror = self.mirror
        while link.up and not self._closing:
            self._confirm(link)
            room = self.window - link.unconfirmed
            if room > 0:
                now = self._clock()
                batch = mirror.take(now + mirror.interval_ms if self._flush_all else now, min(BATCH, room))
                if batch:
                    link.send(batch, self.qos)
                    await asyncio.sleep(0)  # let the reader decode between batches
                    continue
            self._wake.clear()
            if link.unconfirmed:
                # wake on acks: a batch's worth while the window is full, else when all are in
                link.wake_at = link.sent if room > 0 else min(link.sent, link.acked + BATCH)
                if link.acked >= link.wake_at:
                    continue
            due = mirror.next_due_ms() if room > 0 else None
            timeout = None if due is None else max(0.0, (due - self._clock()) / 1000)
            # paho may end a connection without a callback reaching us: look again at least every second
            timeout = _LIVENESS_S if timeout is None else min(timeout, _LIVENESS_S)
            # ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11 ``wait_for`` wraps the
            # wait in a new task, and the pump waits about twice per received message
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if link.up and not link.alive():
                link._set_ended("paho reports the connection lost")

    def _confirm(self, link: _Link) -> None:
        lag = self.lag
        for record, at in link.confirmed():
            self.published += len(record.messages)
            lag.add_many([at - message.received_ms for message in record.messages])

    def _settle(self, link: _Link) -> None:
        """The link ended: count what was confirmed, put everything else back into the mirror."""
        self._confirm(link)
        lost = link.unconfirmed_messages()
        if lost:
            self.restored += self.mirror.restore(lost)
