"""``/metrics``, ``/healthz`` and ``/readyz`` of ``uns broker run``, served in the broker's event loop.

Why this shape:

* **Values are read at scrape time** by :class:`BrokerCollector` from what the broker already
  keeps: the ``$SYS`` counters (:class:`broker.sys_topics.BrokerStats`), amqtt's sessions,
  subscriptions and retained messages, and the Sparkplug certificate store. The routing path
  (thousands of messages/s) gains no work, and ``/metrics`` agrees with ``$SYS`` by construction.
* **A registry per broker**, so tests running several brokers in one process stay isolated.
* **Same loop, no thread**: amqtt's dicts are mutated by the loop; an ``async`` route reads
  them on the loop's thread, so a scrape never sees a dict change size under it.
* **Fail soft on the port**: a taken port is logged as an error and the broker keeps routing
  (the endpoint is a side channel; ``uns up`` checks its ports before starting anything).
* Only :func:`broker.server.run_broker` (what ``uns broker run`` runs) serves it: in-process
  :class:`broker.server.EmbeddedBroker` users (tests, benchmarks) must not all race for 9101.

The HTTP shell is :class:`uns.probes.ProbeServer`, shared with the edge node.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uns.probes import CONTENT_TYPE, ProbeServer, Readiness, counter, gauge

from .server import EmbeddedBroker

__all__ = ["CONTENT_TYPE", "BrokerCollector", "BrokerObservability", "Readiness", "broker_readiness"]

log = logging.getLogger("broker")


def broker_readiness(embedded: EmbeddedBroker) -> Readiness:
    """Ready = amqtt reports "started" and every configured listener is bound."""
    try:
        broker = embedded.broker
    except RuntimeError:
        return Readiness(False, "broker not started (or stopping)", {"started": False})
    started = broker.transitions.state == "started"
    checks = {"started": started}
    bound = embedded.ports if started else {}
    for name in ("tcp", "websocket", "tls", "wss"):
        if getattr(embedded.settings, name) is not None:
            checks[f"listener:{name}"] = name in bound
    missing = [name.split(":", 1)[1] for name, ok in checks.items() if name.startswith("listener:") and not ok]
    if not started:
        return Readiness(False, f"broker is {broker.transitions.state}", checks)
    if missing:
        return Readiness(False, f"listener(s) not bound: {', '.join(missing)}", checks)
    return Readiness(True, "every listener accepts connections", checks)


class BrokerCollector(Collector):
    """Reads one :class:`~broker.server.EmbeddedBroker`'s state at scrape time (see module doc)."""

    def __init__(self, embedded: EmbeddedBroker) -> None:
        self._embedded = embedded

    def describe(self) -> list[Metric]:
        return []  # values come from the broker at scrape time; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        try:
            broker = self._embedded.broker
        except RuntimeError:
            yield gauge("uns_broker_up", "1 while the broker is started", 0)
            return
        yield gauge("uns_broker_up", "1 while the broker is started",
                     1 if broker.transitions.state == "started" else 0)
        stats = broker.stats
        sessions = list(broker.sessions.values())
        yield gauge("uns_broker_clients_connected", "clients with a live, authenticated connection",
                     sum(1 for session, handler in sessions if _live(session, handler)))
        yield gauge("uns_broker_sessions", "sessions the broker holds (live, persistent, or left by refused CONNECTs)",
                     len(sessions))
        yield counter("uns_broker_connects_refused", "CONNECTs refused (authentication, role or Will topic)",
                       stats.connects_refused)
        yield counter("uns_broker_messages_received", "PUBLISHes received from clients (messages in)",
                       stats.messages_received)
        yield counter("uns_broker_messages_sent", "PUBLISHes sent to subscribers, live and retained (messages out)",
                       stats.messages_sent)
        yield counter("uns_broker_publish_denied", "PUBLISHes dropped by the ACL", stats.publish_denied)
        yield counter("uns_broker_keepalive_expired",
                       "connections closed after 1.5 x keep-alive of silence (their Will is then published)",
                       stats.keepalive_expired)
        yield counter("uns_broker_client_id_refused",
                       "CONNECTs refused because the user may not use that client id", stats.client_id_refused)
        yield counter("uns_broker_takeovers",
                       "live connections closed because their client id connected again (MQTT-3.1.4-2)",
                       stats.takeovers)
        yield counter("uns_broker_protocol_violations",
                       "connections closed for a wildcard topic name or a packet over max_packet_size_bytes",
                       stats.protocol_violations)
        yield counter("uns_broker_qos0_dropped",
                       "QoS 0 messages dropped for a subscriber whose unsent backlog was over max_queued_qos0_bytes",
                       stats.qos0_dropped)
        yield gauge("uns_broker_retained_messages", "retained messages held", len(broker.retained_messages))
        yield gauge("uns_broker_subscriptions", "granted subscriptions",
                     sum(len(subs) for subs in broker.subscriptions.values()))
        yield gauge("uns_broker_birth_certificates", "NBIRTH/DBIRTH certificates stored under $sparkplug/certificates",
                     len(broker.certificates))
        yield counter("uns_broker_duplicate_edge_node_alarms",
                       "a second live client birthed an edge node another client holds", stats.duplicate_edge_nodes)
        yield gauge("uns_broker_start_time_seconds", "when the broker started (Unix time)", stats.started_at)
        ports = GaugeMetricFamily("uns_broker_listener_port", "bound port per listener", labels=["listener"])
        for name, port in sorted(self._embedded.ports.items()):
            ports.add_metric([name], port)
        yield ports


def _live(session: Any, handler: Any) -> bool:
    """A session whose connection is being served.

    Not just ``state == "connected"``: amqtt 0.12.1 moves a session to "connected" *before*
    authenticating and leaves a refused one there (its handler is attached but never started).
    Only a started handler has a reader task; amqtt is pinned exactly (broker.amqtt_ext uses the
    same attribute for the keep-alive fix).
    """
    reader = getattr(handler, "_reader_task", None)
    return session.transitions.state == "connected" and reader is not None and not reader.done()


class BrokerObservability(ProbeServer):
    """The probe server of one broker."""

    def __init__(self, embedded: EmbeddedBroker, host: str, port: int) -> None:
        super().__init__("broker", BrokerCollector(embedded), lambda: broker_readiness(embedded), host, port)
