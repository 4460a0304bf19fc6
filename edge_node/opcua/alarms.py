"""The OPC UA side of alarms: an event subscription per session and ConditionRefresh at every connect.

:class:`AlarmSubscription` belongs to one :class:`edge_node.opcua.source.OpcUaSource`. In each
session, before the source announces its devices (DBIRTH):

1. a subscription of its own (so the refresh's events are not interleaved with tag notifications),
   one event monitored item per configured notifier with :func:`edge_node.alarms.event_filter`;
2. ConditionRefresh (method ``i=3875`` on ConditionType ``i=2782``, with this subscription's id);
3. every event up to RefreshEndEvent goes through the :class:`edge_node.alarms.AlarmBook`, so the
   DBIRTH that follows states exactly the conditions the server retains now, and every
   configured condition the refresh did not mention is cleared (no ghost alarm after an outage).

A RefreshRequiredEvent later in the session (the server lost events, Part 9 5.11.1) is answered
with another ConditionRefresh on the same subscription; its events and the clearing at its
RefreshEnd are published as data (the devices stay born: the metric set does not change).

The refresh must end within ``refresh_timeout_s``; if it does not (or the server refuses the
call), the session fails and the connection supervisor retries: births that might state a wrong
alarm set are worse than a late birth. Afterwards :meth:`consume` feeds every further event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import OpcEvent, OverflowPolicy, StatusChangeEvent, Subscription

from ..alarms import AlarmBook, event_filter, field_keys
from ..config import AlarmsConfig, OpcUaEndpointConfig
from ..model import MetricUpdate
from .connection import SessionDeadError

log = logging.getLogger(__name__)

CONDITION_TYPE = ua.NodeId(ua.ObjectIds.ConditionType)
CONDITION_REFRESH = ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh)
_KEYS = field_keys()


class AlarmSubscription:
    """Event items + ConditionRefresh of one endpoint; the state lives in :attr:`book`."""

    def __init__(self, endpoint: OpcUaEndpointConfig, alarms: AlarmsConfig, book: AlarmBook,
                 submit: Callable[[MetricUpdate], None], clock: Callable[[], int]) -> None:
        self.endpoint = endpoint
        self.alarms = alarms
        self.book = book
        self._submit = submit
        self._clock = clock
        self._sub: Subscription | None = None
        self._client: Client | None = None

    @property
    def subscription(self) -> Subscription | None:
        """This session's event subscription (its ``last_publish_at`` tells the watchdog the server lives)."""
        return self._sub

    def session_lost(self) -> None:
        """The session ended: the events the server still queued for it are gone with it (how many,
        nobody can tell); say so and count it. The next session's ConditionRefresh restates the states."""
        self.book.stats.sessions_lost += 1
        log.warning("endpoint %s: session lost with its event subscription: condition events the server still "
                    "held for it are lost (%d session(s) so far); ConditionRefresh at the reconnect restates the "
                    "states", self.endpoint.name, self.book.stats.sessions_lost)
        self._sub = None

    async def start(self, client: Client) -> None:
        """Subscribe and refresh; returns once the book states the server's retained conditions."""
        self._client = client
        await self._resolve_source_nodes(client)
        # an event lost to a full queue would leave a wrong alarm state: drop the session instead, the
        # reconnect's ConditionRefresh restates the truth
        sub = await client.create_subscription(self.endpoint.publishing_interval_ms, None, queue_maxsize=100_000,
                                               overflow=OverflowPolicy.DISCONNECT)
        self._sub = sub
        flt = event_filter()
        requests = []
        for handle, notifier in enumerate(self.alarms.notifiers, start=1):
            rv = ua.ReadValueId()
            rv.NodeId = ua.NodeId.from_string(notifier)
            rv.AttributeId = ua.AttributeIds.EventNotifier
            params = ua.MonitoringParameters()
            params.ClientHandle = 1_000_000 + handle
            params.QueueSize = 10_000
            params.DiscardOldest = False
            params.Filter = flt
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = rv
            request.MonitoringMode = ua.MonitoringMode.Reporting
            request.RequestedParameters = params
            requests.append(request)
        results = await sub.create_monitored_items(requests)
        failed = [(n, r.name) for n, r in zip(self.alarms.notifiers, results, strict=False)
                  if isinstance(r, ua.StatusCode)]
        for notifier, status in failed:
            log.error("endpoint %s: cannot subscribe to events of %s: %s", self.endpoint.name, notifier, status)
        if len(failed) == len(requests):
            raise SessionDeadError("no alarm notifier accepted an event monitored item")
        await self._refresh(client, sub)

    @staticmethod
    async def _call_refresh(client: Client, sub: Subscription) -> None:
        await client.get_node(CONDITION_TYPE).call_method(
            CONDITION_REFRESH, ua.Variant(sub.subscription_id, ua.VariantType.UInt32))

    async def _refresh(self, client: Client, sub: Subscription) -> None:
        await self._call_refresh(client, sub)
        deadline = time.monotonic() + self.alarms.refresh_timeout_s
        refreshes = self.book.stats.refreshes
        while self.book.stats.refreshes == refreshes:
            remaining = deadline - time.monotonic()
            event = await sub.next_event(timeout=max(remaining, 0.0)) if remaining > 0 else None
            if event is None:
                raise SessionDeadError(f"ConditionRefresh did not end within {self.alarms.refresh_timeout_s} s")
            self._handle(event, publish=False)
        log.info("endpoint %s: ConditionRefresh done, %d condition(s) retained", self.endpoint.name,
                 sum(1 for d in self.book.devices for u in self.book.current(d)
                     if u.name.endswith("/Retain") and u.value is True))

    async def consume(self) -> None:
        """Every event after the refresh, until the session ends (then raises)."""
        sub, client = self._sub, self._client
        if sub is None or client is None:
            raise SessionDeadError("alarm subscription not started")
        await self._answer_refresh_request(client, sub)  # one that came during the first refresh
        async for event in sub:
            self._handle(event, publish=True)
            await self._answer_refresh_request(client, sub)
        raise SessionDeadError("alarm event stream ended")

    async def _answer_refresh_request(self, client: Client, sub: Subscription) -> None:
        """ConditionRefresh when the server sent RefreshRequired; its events arrive in this stream.
        A refused call ends the session: the reconnect's refresh restates the truth."""
        if not self.book.take_refresh_request():
            return
        log.info("endpoint %s: the server asks for ConditionRefresh (RefreshRequiredEvent)", self.endpoint.name)
        try:
            await self._call_refresh(client, sub)
        except Exception as exc:
            raise SessionDeadError(f"ConditionRefresh after RefreshRequired failed: {exc}") from exc

    def _handle(self, event: Any, *, publish: bool) -> None:
        if isinstance(event, StatusChangeEvent):
            status = event.notification.Status
            if status is not None and not status.is_good():
                raise SessionDeadError(f"alarm subscription status {status.name}")
            return
        if not isinstance(event, OpcEvent):
            return
        try:
            fields = dict(zip(_KEYS, (f.Value for f in event.event.event_fields), strict=False))
            updates = self.book.apply(fields, self._clock())
        except Exception:  # a peer's malformed event must not end the session
            self.book.stats.malformed += 1
            log.exception("endpoint %s: cannot map an event", self.endpoint.name)
            return
        if publish:
            for update in updates:
                self._submit(update)

    async def _resolve_source_nodes(self, client: Client) -> None:
        """``source_node`` with ``nsu=`` gets this server's namespace index (it can change on restart)."""
        wanted = [c for c in self.alarms.conditions if c.source_node is not None]
        if not wanted:
            return
        namespaces = list(await client.get_namespace_array())
        resolved: dict[str, str] = {}
        for c in wanted:
            parsed = ua.NodeId.from_string(c.source_node or "")
            uri = getattr(parsed, "NamespaceUri", None)
            if uri:
                if uri not in namespaces:
                    log.error("endpoint %s: namespace %s of %s is unknown to the server", self.endpoint.name, uri,
                              c.source_node)
                    continue
                parsed = ua.NodeId(parsed.Identifier, namespaces.index(uri), parsed.NodeIdType)
            elif isinstance(parsed, ua.ExpandedNodeId):
                parsed = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
            resolved[parsed.to_string()] = c.cell
        self.book.set_source_nodes(resolved)
