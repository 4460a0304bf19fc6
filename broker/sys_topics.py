"""``$SYS`` statistics: counters the broker shell bumps, and the topics/values to publish.

Why not amqtt's ``BrokerSysPlugin``: it subscribes to every packet sent and received, and amqtt
runs each plugin callback as its own asyncio task, which costs more per message than our whole
routing (measured, QoS 0: 5,703 msg/s with amqtt's minimal plugins, 4,373 with its defaults,
$SYS among them). Plain integer counters cost nothing.
Topics follow mosquitto's names where one exists, so existing dashboards work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class BrokerStats:
    started_at: float = field(default_factory=time.time)
    messages_received: int = 0
    messages_sent: int = 0
    publish_denied: int = 0
    connects_refused: int = 0
    keepalive_expired: int = 0
    duplicate_edge_nodes: int = 0
    #: CONNECTs refused because the user may not use the client id (also in connects_refused)
    client_id_refused: int = 0
    #: live connections closed because their client id connected again (MQTT-3.1.4-2)
    takeovers: int = 0
    #: connections closed for a protocol violation (wildcard topic name, packet over the size limit)
    protocol_violations: int = 0
    #: QoS 0 messages not sent to a connection whose backlog was over max_queued_qos0_bytes
    qos0_dropped: int = 0

    def snapshot(self, *, version: str, clients_connected: int, retained: int,
                 subscriptions: int, certificates: int, now: float | None = None) -> dict[str, bytes]:
        """The retained ``$SYS`` topics and their payloads (UTF-8 text, like mosquitto)."""
        now = time.time() if now is None else now
        values: dict[str, object] = {
            "$SYS/broker/version": version,
            "$SYS/broker/uptime": f"{int(now - self.started_at)} seconds",
            "$SYS/broker/clients/connected": clients_connected,
            "$SYS/broker/messages/received": self.messages_received,
            "$SYS/broker/messages/sent": self.messages_sent,
            "$SYS/broker/retained messages/count": retained,
            "$SYS/broker/subscriptions/count": subscriptions,
            "$SYS/uns/publish/denied": self.publish_denied,
            "$SYS/uns/connects/refused": self.connects_refused,
            "$SYS/uns/keepalive/expired": self.keepalive_expired,
            "$SYS/uns/connects/client-id-refused": self.client_id_refused,
            "$SYS/uns/connects/takeovers": self.takeovers,
            "$SYS/uns/protocol/violations": self.protocol_violations,
            "$SYS/uns/messages/qos0-dropped": self.qos0_dropped,
            "$SYS/uns/sparkplug/certificates": certificates,
            "$SYS/uns/sparkplug/duplicate-edge-nodes": self.duplicate_edge_nodes,
        }
        return {topic: str(value).encode() for topic, value in values.items()}
