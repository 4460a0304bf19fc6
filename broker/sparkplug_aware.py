"""Sparkplug-aware broker logic (Sparkplug 3.0 chapter 10), with no I/O.

* :class:`BirthCertificateStore` keeps the original bytes of the latest NBIRTH of every edge node
  and DBIRTH of every device, and says where to serve them retained:
  ``$sparkplug/certificates/spBv1.0/<group>/NBIRTH/<edge>`` and
  ``$sparkplug/certificates/spBv1.0/<group>/DBIRTH/<edge>/<device>``
  (tck-id-conformance-mqtt-aware-store, -nbirth-mqtt-topic, -dbirth-mqtt-topic; retained:
  -nbirth-mqtt-retain, -dbirth-mqtt-retain). Bytes are never decoded or re-encoded.
* :class:`EdgeNodeRegistry` knows which live MQTT client last birthed each edge node. A second
  live client birthing the same ``group/edge`` is a *duplicate edge node* (two gateways
  configured with the same id fight over one Sparkplug session and every host sees rebirth
  storms and sequence gaps). The broker logs it and publishes :class:`DuplicateEdgeNode` as JSON
  on :data:`DUPLICATE_ALARM_TOPIC`. The newest client becomes the owner; the message is routed
  either way (the spec gives a broker no right to drop it).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from uns.sparkplug.errors import InvalidTopicError
from uns.sparkplug.topic import MessageType, SparkplugTopic, certificate_topic, is_sparkplug_topic, parse_node_topic

DUPLICATE_ALARM_TOPIC = "$SYS/uns/alarms/duplicate-edge-node"

Node = tuple[str, str]  # (group_id, edge_node_id)


def sparkplug_topic_or_none(topic: str) -> SparkplugTopic | None:
    """The parsed edge-node topic, or None for anything else (STATE, UNS JSON, malformed)."""
    if not is_sparkplug_topic(topic):
        return None
    try:
        return parse_node_topic(topic)
    except InvalidTopicError:
        return None


@dataclass
class BirthCertificateStore:
    """Latest NBIRTH/DBIRTH bytes keyed by their certificate topic."""

    _certificates: dict[str, bytes] = field(default_factory=dict)

    def record(self, topic: SparkplugTopic, payload: bytes) -> str | None:
        """Store a birth; returns the certificate topic to publish retained, or None if not a birth."""
        if not topic.message_type.is_birth:
            return None
        cert = certificate_topic(topic)
        self._certificates[cert] = bytes(payload)
        return cert

    def get(self, certificate: str) -> bytes | None:
        return self._certificates.get(certificate)

    def __len__(self) -> int:
        return len(self._certificates)


@dataclass(frozen=True)
class DuplicateEdgeNode:
    group_id: str
    edge_node_id: str
    existing_client_id: str
    new_client_id: str
    timestamp_ms: int

    def to_json(self) -> bytes:
        return json.dumps({"alarm": "duplicate-edge-node", **asdict(self)}, sort_keys=True).encode()


@dataclass
class EdgeNodeRegistry:
    """Which connected client owns each birthed edge node."""

    _owner: dict[Node, str] = field(default_factory=dict)
    _nodes_of: dict[str, set[Node]] = field(default_factory=dict)

    def on_publish(self, client_id: str, topic: SparkplugTopic, now_ms: int) -> DuplicateEdgeNode | None:
        """Feed every accepted edge-node publish; returns an alarm when a second client births a node."""
        node = topic.node
        if topic.message_type is MessageType.NDEATH:
            if self._owner.get(node) == client_id:
                self._release(node)
            return None
        if topic.message_type is not MessageType.NBIRTH:
            return None
        previous = self._owner.get(node)
        self._release(node)
        self._owner[node] = client_id
        self._nodes_of.setdefault(client_id, set()).add(node)
        if previous is not None and previous != client_id:
            return DuplicateEdgeNode(node[0], node[1], previous, client_id, now_ms)
        return None

    def on_disconnect(self, client_id: str) -> None:
        """The client is gone (clean or not): it owns no node any more."""
        for node in self._nodes_of.pop(client_id, set()):
            if self._owner.get(node) == client_id:
                del self._owner[node]

    def owner(self, group_id: str, edge_node_id: str) -> str | None:
        return self._owner.get((group_id, edge_node_id))

    def _release(self, node: Node) -> None:
        owner = self._owner.pop(node, None)
        if owner is not None:
            nodes = self._nodes_of.get(owner)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self._nodes_of[owner]
