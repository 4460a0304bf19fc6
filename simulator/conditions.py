"""The OPC UA face of :mod:`simulator.alarms`: condition nodes, condition events, Acknowledge/Confirm.

What asyncua 2.1 does for us: the standard event object classes, the event notifier on the Server
object, and ConditionRefresh (i=3875, called on the ConditionType with the subscription id): it sends
RefreshStartEvent, the last event of every condition whose Retain is True (asyncua keeps them keyed
by the ``NodeId`` field, i.e. the ConditionId), then RefreshEndEvent; it needs
``iserver.bind_condition_methods`` set before ``init``. What we add: one object node per condition
(its NodeId is the ConditionId a client calls methods on), the event fields of each condition event,
the Acknowledge (i=9111) and Confirm (i=9113) methods, and, after a restart, the retained events
seeded back into the fresh server so a ConditionRefresh states the model's truth.

Every event is emitted by the Server object (``i=2253``), the notifier clients subscribe to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common import event_objects

from simulator.alarms import ConditionError, ConditionEvent, ConditionKind, LimitState

log = logging.getLogger(__name__)

LIMIT_STATE_IDS: dict[LimitState, int] = {
    LimitState.HIGHHIGH: ua.ObjectIds.ExclusiveLimitStateMachineType_HighHigh,
    LimitState.HIGH: ua.ObjectIds.ExclusiveLimitStateMachineType_High,
    LimitState.LOW: ua.ObjectIds.ExclusiveLimitStateMachineType_Low,
    LimitState.LOWLOW: ua.ObjectIds.ExclusiveLimitStateMachineType_LowLow,
}
TYPE_IDS: dict[ConditionKind, int] = {
    ConditionKind.LIMIT: ua.ObjectIds.ExclusiveLimitAlarmType,
    ConditionKind.OFF_NORMAL: ua.ObjectIds.OffNormalAlarmType,
}

#: a subscription id no subscription has (asyncua's ids are UInt32 from 1): an event "triggered" for it is
#: remembered for ConditionRefresh and delivered to nobody, i.e. a client missed it
NO_SUBSCRIPTION = -1
#: condition events fired between two yields to the event loop
_FIRE_SLICE = 50

#: what the Acknowledge/Confirm handler calls: (condition path, EventId, comment) -> None
ConditionCall = Callable[[str, bytes, str], Awaitable[None]]


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _text(text: str) -> ua.LocalizedText:
    return ua.LocalizedText(text, "en")


def to_ua_event(event: ConditionEvent, ns: int, received: datetime | None = None) -> Any:
    """A condition event as the asyncua event object the subscription service sends and keeps."""
    limit = event.kind is ConditionKind.LIMIT
    ev = event_objects.ExclusiveLimitAlarm() if limit else event_objects.OffNormalAlarm()
    ev.emitting_node = ua.NodeId(ua.ObjectIds.Server)
    ev.EventId = event.event_id
    ev.SourceNode = ua.NodeId(event.source, ns)
    ev.SourceName = event.source_name
    ev.Time = _dt(event.time)
    ev.ReceiveTime = received or datetime.now(UTC)
    ev.Message = _text(event.message)
    ev.Severity = event.severity
    ev.add_property("NodeId", ua.NodeId(event.condition, ns), ua.VariantType.NodeId)  # ConditionId
    ev.ConditionClassId = ua.NodeId(ua.ObjectIds.ProcessConditionClassType)
    ev.ConditionClassName = _text("ProcessConditionClassType")
    ev.ConditionName = event.condition_name
    ev.BranchId = ua.NodeId()
    ev.Retain = event.retain
    setattr(ev, "EnabledState/Id", True)
    ev.EnabledState = _text("Enabled")
    setattr(ev, "ActiveState/Id", event.active)
    ev.ActiveState = _text("Active" if event.active else "Inactive")
    setattr(ev, "AckedState/Id", event.acked)
    ev.AckedState = _text("Acknowledged" if event.acked else "Unacknowledged")
    setattr(ev, "ConfirmedState/Id", event.confirmed)
    ev.ConfirmedState = _text("Confirmed" if event.confirmed else "Unconfirmed")
    ev.Comment = _text(event.comment)
    ev.Quality = ua.StatusCode(ua.StatusCodes.Good)
    if limit:
        state = event.limit_state
        ev.add_property("LimitState/CurrentState", _text(state.value if state else ""),
                        ua.VariantType.LocalizedText)
        ev.add_property("LimitState/CurrentState/Id",
                        ua.NodeId(LIMIT_STATE_IDS[state]) if state else ua.NodeId(),
                        ua.VariantType.NodeId)
        if state is not None:
            setattr(ev, "ActiveState/EffectiveDisplayName", _text(state.value))
        if event.limits is not None:
            ev.HighHighLimit, ev.HighLimit, ev.LowLimit, ev.LowLowLimit = event.limits
        ev.InputNode = ua.NodeId(f"{event.source}/Temperature", ns)
    else:
        ev.NormalState = ua.NodeId()
    return ev


async def _variables(node: Node) -> dict[str, ua.NodeId]:
    """Variables of a condition node and of its state variables, by event field name."""
    found: dict[str, ua.NodeId] = {}
    for child in await node.get_children():
        node_class = await child.read_node_class()
        if node_class not in (ua.NodeClass.Variable, ua.NodeClass.Object):
            continue
        name = (await child.read_browse_name()).Name
        if node_class is ua.NodeClass.Variable:
            found[name] = child.nodeid
        # state variables (AckedState/Id) and state machines (LimitState/CurrentState)
        for grandchild in await child.get_children(nodeclassmask=ua.NodeClass.Variable):
            found[f"{name}/{(await grandchild.read_browse_name()).Name}"] = grandchild.nodeid
    return found


class ConditionShell:
    """Condition nodes and methods on one asyncua server; rebuilt on every (re)start of the server."""

    def __init__(self, server: Server, ns: int) -> None:
        self.server = server
        self.ns = ns
        #: per condition path: event field name ("AckedState/Id") -> NodeId of that variable
        self._fields: dict[str, dict[str, ua.NodeId]] = {}
        #: method nodes instantiated under the conditions, by browse name ("Acknowledge")
        self._instance_methods: dict[str, list[ua.NodeId]] = {}

    async def add_nodes(self, parents: dict[str, Node], conditions: list[tuple[str, ConditionKind]]) -> None:
        """One object per condition under its cell (typed AlarmConditionType subtypes, browseable)."""
        for path, kind in conditions:
            parent_path, _, name = path.rpartition("/")
            node = await parents[parent_path].add_object(ua.NodeId(path, self.ns), ua.QualifiedName(name, self.ns),
                                                         objecttype=TYPE_IDS[kind], instantiate_optional=False)
            await node.write_attribute(ua.AttributeIds.EventNotifier, ua.DataValue(
                ua.Variant(ua.EventNotifier.SubscribeToEvents.mask, ua.VariantType.Byte)))
            # ConfirmedState is optional in the type; we model it, so a client reads back what Confirm did
            confirmed = await node.add_variable(ua.NodeId(f"{path}/ConfirmedState", self.ns),
                                                ua.QualifiedName("ConfirmedState", 0), _text("Confirmed"),
                                                varianttype=ua.VariantType.LocalizedText)
            await confirmed.add_property(ua.NodeId(f"{path}/ConfirmedState/Id", self.ns), ua.QualifiedName("Id", 0),
                                         True, varianttype=ua.VariantType.Boolean)
            self._fields[path] = await _variables(node)
            for method in await node.get_children(nodeclassmask=ua.NodeClass.Method):
                name = (await method.read_browse_name()).Name
                self._instance_methods.setdefault(name, []).append(method.nodeid)

    def bind_methods(self, acknowledge: ConditionCall, confirm: ConditionCall) -> None:
        """Acknowledge and Confirm, called with the condition as ObjectId on the type's method (what
        Part 9 specifies) or on the method node instantiated under the condition (what a generic
        client browsing the condition finds)."""
        session = self.server.iserver.isession
        for name, type_method, call in (
                ("Acknowledge", ua.ObjectIds.AcknowledgeableConditionType_Acknowledge, acknowledge),
                ("Confirm", ua.ObjectIds.AcknowledgeableConditionType_Confirm, confirm)):
            handler = self._handler(name, call)
            for method_id in [ua.NodeId(type_method), *self._instance_methods.get(name, [])]:
                session.add_method_callback(method_id, handler)

    def _handler(self, name: str, call: ConditionCall) -> Callable[..., Awaitable[Any]]:
        ns = self.ns

        async def handler(parent: ua.NodeId, *args: Any) -> Any:
            values = [arg.Value if isinstance(arg, ua.Variant) else arg for arg in args]
            if len(values) != 2 or not isinstance(values[0], bytes | bytearray):
                return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            if parent.NamespaceIndex != ns or not isinstance(parent.Identifier, str):
                return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
            comment = values[1]
            text = comment.Text if isinstance(comment, ua.LocalizedText) else str(comment or "")
            try:
                await call(parent.Identifier, bytes(values[0]), text or "")
            except ConditionError as exc:
                log.info("%s on %s refused: %s", name, parent.Identifier, exc)
                return ua.StatusCode(getattr(ua.StatusCodes, exc.status_name))
            except ValueError as exc:  # unknown condition
                log.info("%s on %s refused: %s", name, parent.Identifier, exc)
                return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
            return []

        return handler

    async def fire(self, events: list[ConditionEvent], *, deliver: bool = True) -> None:
        """Send condition events to every event subscription on the Server object.

        The condition node's variables (AckedState/Id, ActiveState/Id, Retain...) are written first,
        so a client reading them back after a method call or an event sees the same state. With
        ``deliver`` false the events are lost on the way (a server whose event queue overflowed):
        the nodes and the retained set of ConditionRefresh follow them, no subscription gets them.
        """
        service = self.server.iserver.subscription_service
        for n, event in enumerate(events, start=1):
            ua_event = to_ua_event(event, self.ns)
            await self._mirror(event.condition, ua_event)
            await service.trigger_event(ua_event, **({} if deliver else {"subscription_id": NO_SUBSCRIPTION}))
            if n % _FIRE_SLICE == 0:
                # a late tick of a flood fires hundreds at once: let the server answer reads and
                # publish in between, or a busy machine turns the burst into seconds of silence and
                # the clients end their sessions (and lose the events queued for them)
                await asyncio.sleep(0)

    async def refresh_required(self) -> None:
        """A RefreshRequiredEvent (Part 9 5.11.1) from the Server object, to every subscription: the
        server lost events and asks each client to call ConditionRefresh."""
        generator = await self.server.get_event_generator(ua.ObjectIds.RefreshRequiredEventType,
                                                          emitting_node=ua.ObjectIds.Server)
        generator.event.Severity = 1000
        await generator.trigger(message="condition events were lost: call ConditionRefresh")

    async def _mirror(self, condition: str, ua_event: Any) -> None:
        for name, node_id in self._fields.get(condition, {}).items():
            value = getattr(ua_event, name, None)
            vtype = ua_event.data_types.get(name)
            if value is None or not isinstance(vtype, ua.VariantType):
                continue
            await self.server.write_attribute_value(node_id, ua.DataValue(ua.Variant(value, vtype)))

    async def seed(self, current: list[ConditionEvent], retained: list[ConditionEvent]) -> None:
        """A fresh server (start, restart) states every condition in its node and learns the
        retained ones for ConditionRefresh.

        Called before any client can subscribe, so nothing is sent: the events keep their EventIds
        (a client that acknowledged by EventId before the restart still names a known one).
        """
        for event in current:
            await self._mirror(event.condition, to_ua_event(event, self.ns))
        await self.fire(retained)
