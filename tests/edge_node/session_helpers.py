"""Shared helpers for the EdgeSession unit tests: a fake clock, a definition set, decoding actions."""

from __future__ import annotations

from dataclasses import dataclass

from edge_node.model import DeviceOnline, MetricDefinition
from edge_node.session import (
    Action,
    ConnectStarted,
    EdgeSession,
    MqttConnected,
    Publish,
    SessionSettings,
    StateReceived,
)
from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.state import StatePayload
from uns.sparkplug.topic import MessageType

DEFS = [
    MetricDefinition(None, "Line/Speed", DataType.Double, unit="m/min", eng_low=0, eng_high=200,
                     description="line speed"),
    MetricDefinition(None, "Line/State", DataType.String),
    MetricDefinition("Filler", "Count", DataType.Int64),
    MetricDefinition("Filler", "Running", DataType.Boolean, writable=True),
    MetricDefinition("Capper", "Torque", DataType.Float),
]


@dataclass
class FakeClock:
    now: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


def make_session(clock: FakeClock | None = None, *, last_bd_seq: int | None = None, has_backlog: bool = False,
                 **settings: object) -> EdgeSession:
    base: dict[str, object] = {"group_id": "G", "edge_node_id": "E", **settings}
    return EdgeSession(SessionSettings(**base), DEFS, clock=clock or FakeClock(),  # type: ignore[arg-type]
                       last_bd_seq=last_bd_seq, has_backlog=has_backlog)


def publishes(actions: list[Action], kind: MessageType | None = None) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish) and (kind is None or a.message_type is kind)]


def raw(action: Publish) -> pb.Payload:
    return pb.Payload.FromString(action.payload)


def connect(session: EdgeSession, *, devices: tuple[str, ...] = ("Filler",)) -> list[Action]:
    """CONNECT + CONNACK (and devices online first); returns the actions of the CONNACK."""
    for device in devices:
        session.send(DeviceOnline(device))
    session.send(ConnectStarted())
    return session.send(MqttConnected())


def state(host: str, online: bool, ts: int) -> StateReceived:
    return StateReceived(host, StatePayload(online=online, timestamp=ts).to_bytes())
