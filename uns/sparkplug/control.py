"""Node control metrics and the rebirth request: the one place a host's NCMD rebirth is made.

``Node Control/Rebirth`` is a Sparkplug name (spec §6.4, tck-id-topics-nbirth-rebirth-metric):
every NBIRTH carries it as a Boolean ``false``, and a host asks for a new birth sequence with an
NCMD holding it ``true``, by name, never by alias (tck-id-operational-behavior-data-commands-
rebirth-name-aliases), QoS 0, not retained, with no ``seq`` (tck-id-payloads-ncmd-qos,
tck-id-payloads-ncmd-retain, tck-id-payloads-ncmd-seq).

**The rebirth request carries its datatype (Boolean, 11)**, although the spec says command
metrics SHOULD NOT (tck-id-payloads-metric-datatype-not-req). That is a SHOULD, not a MUST, and
the request must work on nodes we did not write: Eclipse Tahu's npm ``sparkplug-payload`` (under
its ``sparkplug-client``) reads a metric's value through the datatype of that same metric, so a
datatype-less ``true`` decodes as ``undefined`` there and the node never rebirths
(tests/sparkplug/test_control.py shows both forms through Tahu's codec). A spec-conformant edge,
ours included, must accept the datatype in an NCMD, so carrying it costs nobody anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import build_payload
from .datatypes import DataType
from .model import Metric, Payload
from .topic import MessageType, node_topic

#: the metric that the host sets true to request a rebirth; false in every NBIRTH
NODE_REBIRTH = "Node Control/Rebirth"
#: optional in Sparkplug 3.0 (spec §6.4.x examples): true in an NCMD sends the edge to its next broker
NODE_NEXT_SERVER = "Node Control/Next Server"
#: Sparkplug's own control metrics of a node and of a device (spec §6.4 examples): requests to
#: the edge itself, not tags, so a host's mirror and an edge's command handler leave them alone
NODE_CONTROL_PREFIX = "Node Control/"
DEVICE_CONTROL_PREFIX = "Device Control/"
CONTROL_PREFIXES = (NODE_CONTROL_PREFIX, DEVICE_CONTROL_PREFIX)
#: the birth/death sequence metric of NBIRTH and NDEATH (Int64; tck-id-payloads-nbirth-bdseq)
BDSEQ = "bdSeq"


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """An NCMD/DCMD ready to publish: host commands are QoS 0 and never retained
    (tck-id-topics-ncmd-mqtt, tck-id-topics-dcmd-mqtt)."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def rebirth_request(group_id: str, edge_node_id: str, now_ms: int) -> CommandMessage:
    """The NCMD that asks ``group_id/edge_node_id`` for a new birth sequence.

    ``now_ms`` is both the payload timestamp (tck-id-payloads-ncmd-timestamp) and the metric's.
    Raises :class:`~uns.sparkplug.errors.InvalidIdError` for an id that cannot be in a topic.
    """
    topic = node_topic(group_id, MessageType.NCMD, edge_node_id)
    raw = build_payload(Payload([Metric(name=NODE_REBIRTH, value=True, datatype=DataType.Boolean,
                                        timestamp=now_ms)], timestamp=now_ms), MessageType.NCMD)
    raw.metrics[0].datatype = DataType.Boolean  # on purpose; see the module docstring
    return CommandMessage(topic, raw.SerializeToString())


__all__ = ["BDSEQ", "CONTROL_PREFIXES", "DEVICE_CONTROL_PREFIX", "NODE_CONTROL_PREFIX", "NODE_NEXT_SERVER",
           "NODE_REBIRTH", "CommandMessage", "rebirth_request"]
