"""One reconnecting MQTT session loop for every service's own connection (host, UNS link, mirror).

Rules, shared so that the copies cannot drift apart again:

1. **Connect, run the caller's session body, and on any end but a stop connect again** with a
   doubling backoff from ``minimum_s`` to ``maximum_s`` (no jitter: one adapter has a handful of
   connections, not a fleet). The body reports a session that is up with
   :meth:`ReconnectPolicy.connected`, which resets the backoff: a connection that was up for an
   hour and then dropped starts again from the minimum, not from where the last outage left it.
   Services call it after their own set-up (SUBSCRIBE, a birth), not at CONNACK, so a broker
   that drops them during the set-up still sees the backoff grow.
2. **Errors are classified** (:func:`classify`): a broker that refuses the credentials or the
   client id (*not authorised*) is a configuration problem an operator must fix and is logged as
   an error; anything else (*refused* for other CONNACK codes, *network*) as a warning.
3. **One log line per outage, not per attempt.** The first failure of an outage is logged with
   its class and reason; further attempts of the same outage log at DEBUG, unless the class of
   error changes; the reconnect logs once, with how many attempts and how long the outage took.
4. **A bug in the body is not an outage**: an exception that is not an ``MqttError`` is logged
   with its traceback every time (it is ours to fix) and the loop goes on.
5. **Stops cleanly**: the loop ends as soon as ``stop`` is set, also in the middle of a backoff;
   ``CancelledError`` is never swallowed; ``on_down`` runs after every session, cancelled or not.

:class:`ReconnectPolicy` holds rules 1 to 3 without any I/O, so a client library that runs its own
network thread (paho in :mod:`mes_adapter.host.mirror_publisher`) shares them too;
:func:`reconnect_forever` is the loop for aiomqtt sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

#: CONNACK reason codes that mean "these credentials / this client may not connect" (3.1.1 and 5.0)
_NOT_AUTHORISED = frozenset({4, 5, 0x86, 0x87, 0x8A})


class ErrorClass(enum.Enum):
    NOT_AUTHORISED = "not authorised"
    REFUSED = "refused"
    NETWORK = "network"


def classify(exc: BaseException | str) -> ErrorClass:
    """What kind of failure ended a connection attempt (a paho reason text is classified too)."""
    rc = getattr(exc, "rc", None)
    # an int rc is a CONNACK code only in MqttConnectError; elsewhere it is paho's MQTT_ERR_* (4 = no
    # connection); a ReasonCode (CONNACK or DISCONNECT) always carries the broker's reason
    code = rc.value if isinstance(rc, ReasonCode) else rc if isinstance(exc, MqttConnectError) else None
    if isinstance(code, int) and code:
        return ErrorClass.NOT_AUTHORISED if code in _NOT_AUTHORISED else ErrorClass.REFUSED
    text = str(exc).lower()
    if "not authori" in text or "bad user name or password" in text or "bad username or password" in text:
        return ErrorClass.NOT_AUTHORISED
    if text.startswith("refused"):  # the mirror publisher's text for a refused CONNACK
        return ErrorClass.REFUSED
    return ErrorClass.NETWORK


class ReconnectPolicy:
    """Backoff and outage logging for one MQTT connection (no I/O; see the module doc)."""

    def __init__(self, label: str, minimum_s: float, maximum_s: float, *,
                 logger: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < minimum_s <= maximum_s:
            raise ValueError(f"reconnect backoff needs 0 < minimum ({minimum_s}) <= maximum ({maximum_s})")
        self.label = label
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self.delay_s = minimum_s
        #: failed attempts in the current outage (0: connected or never tried)
        self.attempts = 0
        #: accepted connections so far
        self.connections = 0
        self.logger = logger or logging.getLogger(__name__)
        self._clock = clock
        self._outage_since: float | None = None
        self._outage_class: ErrorClass | None = None

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    def connected(self) -> None:
        """The broker accepted the connection: reset the backoff, close the outage (one log line)."""
        if self._outage_since is not None:
            self.logger.info("%s: connected again after %d failed attempt(s) in %.1f s", self.label, self.attempts,
                           self._clock() - self._outage_since)
        self._outage_since = None
        self._outage_class = None
        self.attempts = 0
        self.connections += 1
        self.delay_s = self.minimum_s

    def failed(self, reason: BaseException | str, *, was_up: bool = False) -> ErrorClass:
        """A connection attempt failed or a connection was lost; logs once per outage and class."""
        kind = classify(reason)
        self.attempts += 1
        first = self._outage_since is None or kind is not self._outage_class
        if self._outage_since is None:
            self._outage_since = self._clock()
        self._outage_class = kind
        what = "connection lost" if was_up else f"cannot connect ({kind.value})"
        if not first:
            self.logger.debug("%s: %s: %s (attempt %d)", self.label, what, reason, self.attempts)
        elif kind is ErrorClass.NOT_AUTHORISED:
            self.logger.error("%s: %s: %s; check the credentials and the broker's ACL; retrying every %.1f s "
                            "at most", self.label, what, reason, self.maximum_s)
        else:
            self.logger.warning("%s: %s: %s; reconnecting in %.2f s", self.label, what, reason, self.delay_s)
        return kind

    def next_delay(self) -> float:
        """The wait before the next attempt; doubles it for the attempt after."""
        delay = self.delay_s
        self.delay_s = min(self.delay_s * 2, self.maximum_s)
        return delay


async def reconnect_forever(session: Callable[[], Awaitable[None]], *, stop: asyncio.Event,
                            policy: ReconnectPolicy, on_down: Callable[[], None] = lambda: None,
                            on_retry: Callable[[], None] = lambda: None) -> None:
    """Run ``session()`` again and again until ``stop`` is set (rules 1, 4 and 5).

    ``session`` connects, calls ``policy.connected()`` once the session is really up (CONNACK and
    whatever the service needs before it counts as online, e.g. its SUBSCRIBE), and returns
    only when ``stop`` is set (a clean end); an ``aiomqtt.MqttError`` is an outage.
    ``on_down`` runs after every session (clear "connected" state); ``on_retry`` only before a
    reconnect (announce the loss to the rest of the service).
    """
    while not stop.is_set():
        before = policy.connections
        try:
            await session()
        except aiomqtt.MqttError as exc:
            policy.failed(exc, was_up=policy.connections > before)
        except Exception:  # noqa: BLE001 - our bug: logged with its traceback, and the session starts again
            policy.logger.exception("%s: the session failed; reconnecting in %.2f s", policy.label, policy.delay_s)
        finally:
            on_down()
        if stop.is_set():
            break
        on_retry()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), policy.next_delay())


__all__ = ["ErrorClass", "ReconnectPolicy", "classify", "reconnect_forever"]
