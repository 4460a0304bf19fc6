"""An asyncua event client for condition tests: the way an edge node or SCADA client subscribes.

Shared by the simulator's condition tests and the node-opcua interop test, so both read conditions
with the same EventFilter (every field of AlarmConditionType and ExclusiveLimitAlarmType, the
ConditionId, LimitState/CurrentState, and the RefreshStart/RefreshEnd markers).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from asyncua import Client, ua
from asyncua.common.events import get_filter_from_event_type

REFRESH_START = ua.NodeId(ua.ObjectIds.RefreshStartEventType)
REFRESH_END = ua.NodeId(ua.ObjectIds.RefreshEndEventType)
ACKNOWLEDGE = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
CONFIRM = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm)


class Events:
    """Event notifications in arrival order, as plain dicts of the selected fields."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def event_notification(self, event: Any) -> None:
        self.items.append({k: v.Value for k, v in event.get_event_props_as_fields_dict().items()})

    def of(self, condition: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e.get("NodeId") is not None and e["NodeId"].Identifier == condition]


async def subscribe(client: Client) -> tuple[Any, Events]:
    """An event monitored item on the Server object: alarm conditions plus the refresh markers."""
    types = [client.get_node(ua.NodeId(t)) for t in (ua.ObjectIds.AlarmConditionType,
                                                      ua.ObjectIds.ExclusiveLimitAlarmType,
                                                      ua.ObjectIds.RefreshStartEventType,
                                                      ua.ObjectIds.RefreshEndEventType)]
    evfilter = await get_filter_from_event_type(types)
    limit_state = ua.SimpleAttributeOperand()
    limit_state.TypeDefinitionId = ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
    limit_state.BrowsePath = [ua.QualifiedName("LimitState"), ua.QualifiedName("CurrentState")]
    limit_state.AttributeId = ua.AttributeIds.Value
    evfilter.SelectClauses.append(limit_state)
    events = Events()
    sub = await client.create_subscription(20, events)
    await sub.subscribe_events(client.nodes.server, types, evfilter=evfilter)
    return sub, events


async def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def state(event: dict[str, Any]) -> tuple[Any, ...]:
    """(LimitState/CurrentState text, Active, Acked, Confirmed, Retain) of one condition event.

    The limit state is None when the event has none: an off-normal alarm, or a limit alarm back to
    normal whose server reports the LimitState field with a Bad StatusCode (node-opcua does).
    """
    limit = event.get("LimitState/CurrentState")
    return (limit.Text if isinstance(limit, ua.LocalizedText) else None, event["ActiveState/Id"],
            event["AckedState/Id"], event["ConfirmedState/Id"], event["Retain"])


async def truth(client: Client, ns: int, name: str) -> int:
    return int(await client.get_node(ua.NodeId(f"Simulation/Truth/{name}", ns)).read_value())


async def read_state(client: Client, ns: int, condition: str, name: str) -> bool:
    """``<condition>/<name>/Id`` read from the condition node (AckedState, ActiveState...)."""
    node = await client.get_node(ua.NodeId(condition, ns)).get_child([f"0:{name}", "0:Id"])
    return bool(await node.read_value())


async def call_condition(client: Client, ns: int, condition: str, method: ua.NodeId, event_id: bytes,
                         comment: str) -> None:
    await client.get_node(ua.NodeId(condition, ns)).call_method(
        method, ua.Variant(event_id, ua.VariantType.ByteString),
        ua.Variant(ua.LocalizedText(comment, "en"), ua.VariantType.LocalizedText))


async def refresh(client: Client, sub: Any, events: Events) -> list[dict[str, Any]]:
    """ConditionRefresh (i=3875 on the ConditionType) and what arrived between its markers."""
    start = len(events.items)
    await client.get_node(ua.NodeId(ua.ObjectIds.ConditionType)).call_method(
        ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
        ua.Variant(sub.subscription_id, ua.VariantType.UInt32))
    await wait_for(lambda: any(e["EventType"] == REFRESH_END for e in events.items[start:]))
    got = events.items[start:]
    assert got[0]["EventType"] == REFRESH_START
    end = next(i for i, e in enumerate(got) if e["EventType"] == REFRESH_END)
    return got[1:end]
