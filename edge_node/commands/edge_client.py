"""What the command side needs from the Sparkplug edge client, as a protocol.

The executor and its wiring talk to :class:`edge_node.mqtt_client.SparkplugEdgeClient` through
:class:`EdgeClient` only: the client hands over NCMD/DCMD metrics (and the commands its session
could not decode), and publishes the results. Naming the three calls here, instead of taking the
client as ``Any`` and probing it with ``hasattr``, lets a type checker and
``tests/edge_node/test_edge_client_protocol.py`` say when the client and the executor drift
apart, and keeps this package free of the MQTT library (the client satisfies the protocol by
its shape; it does not import it to subclass it).

The protocols are ``runtime_checkable`` so the app can ask, with ``isinstance``, whether the
client it was given can take commands at all (a telemetry-only client cannot: then no executor
starts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from uns.sparkplug.model import Metric

from ..session_events import RejectedCommand

#: ``async handler(device_id, metrics)`` for NCMD (device_id None) and DCMD writes
CommandHandler = Callable[[str | None, list[Metric]], Awaitable[None]]
#: ``async handler(rejected)`` for NCMD/DCMD the session could not decode (to audit and answer them)
RejectedCommandHandler = Callable[[RejectedCommand], Awaitable[None]]


@runtime_checkable
class ResultPublisher(Protocol):
    """Where results go (:mod:`edge_node.commands.reporting` needs only this)."""

    async def publish_json(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish a non-Sparkplug message now; False if it was not sent (never raises for that)."""
        ...


@runtime_checkable
class EdgeClient(ResultPublisher, Protocol):
    """The Sparkplug edge client as the command side sees it."""

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Called for NCMD/DCMD metrics other than the session's own (``Node Control/Rebirth``)."""
        ...

    def set_rejected_command_handler(self, handler: RejectedCommandHandler | None) -> None:
        """Called for every NCMD/DCMD the session could not decode."""
        ...


__all__ = ["CommandHandler", "EdgeClient", "RejectedCommandHandler", "ResultPublisher"]
