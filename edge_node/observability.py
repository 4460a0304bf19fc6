"""``/metrics``, ``/healthz`` and ``/readyz`` of the edge node, served in the node's own event loop.

Why this shape:

* **Values are read at scrape time** by :class:`EdgeCollector` from the objects that already
  count them (``SparkplugEdgeClient.stats``, each ``OpcUaSource.stats``, the shared
  ``ValidationStats``, the command executor's stats). Nothing is counted twice, ``/metrics`` can
  never drift from the node's own figures, and the hot paths (20,000 changes/s) pay nothing.
* **A registry per app instance**, so two nodes in one process (tests) never share series.
* **Same loop, no thread**: the store is a SQLite connection and the counters are plain ints
  mutated by the loop; reading them from the loop's thread (an ``async`` route) needs no locks.
  The HTTP shell is :class:`uns.probes.ProbeServer`, shared with the broker.

``/readyz`` is 200 when the MQTT session is connected, the NBIRTH of that connection is out,
every OPC UA endpoint has a live session and the store-and-forward file can be written; otherwise
503 with ``{"status", "detail", "checks"}`` naming what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uns.probes import CONTENT_TYPE, ProbeServer, Readiness, counter, gauge

from .config import HttpEndpointConfig
from .mqtt_client import EdgeStats

if TYPE_CHECKING:
    from .app import EdgeNodeApp

__all__ = ["CONTENT_TYPE", "EdgeCollector", "EdgeObservability", "Readiness", "edge_readiness"]

log = logging.getLogger(__name__)


def edge_readiness(app: EdgeNodeApp) -> Readiness:
    """Ready = MQTT connected, NBIRTH out on this connection, every OPC UA endpoint connected, store writable."""
    client = app.client
    if client is None:
        return Readiness(False, "edge node not started (or stopping)", {"started": False})
    checks: dict[str, bool] = {"started": True, "mqtt_connected": client.connected, "born": client.birthed}
    for source in app.sources:
        checks[f"opcua:{source.endpoint.name}"] = source.connected.is_set()
    missing: list[str] = []
    if not checks["mqtt_connected"]:
        missing.append("MQTT not connected")
    elif not checks["born"]:
        host = app.sparkplug.primary_host_id
        missing.append(f"not born yet (waiting for primary host {host!r} STATE online)" if host
                       else "not born yet")
    down = [name.split(":", 1)[1] for name, ok in checks.items() if name.startswith("opcua:") and not ok]
    if down:
        missing.append(f"OPC UA endpoint(s) not connected: {', '.join(down)}")
    store_failing = client.store_failing
    checks["store"] = store_failing is None
    if store_failing is not None:
        missing.append(f"store failing ({store_failing}): values that cannot be delivered now are lost")
    if missing:
        return Readiness(False, "; ".join(missing), checks)
    return Readiness(True, "MQTT connected and born; every OPC UA endpoint connected", checks)


class EdgeCollector(Collector):
    """Reads one :class:`~edge_node.app.EdgeNodeApp`'s counters at scrape time (see module doc)."""

    def __init__(self, app: EdgeNodeApp) -> None:
        self._app = app

    def describe(self) -> list[Metric]:
        return []  # values come from the app at scrape time; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        app = self._app
        group_id, edge_node_id = app.sparkplug.group_id, app.sparkplug.edge_node_id  # the ids on the wire
        info = GaugeMetricFamily("uns_edge_info", "this edge node's Sparkplug ids", labels=["group_id", "edge_node_id"])
        info.add_metric([group_id, edge_node_id], 1)
        yield info
        # each section is guarded: a half-started or stopping node must still answer a scrape
        for section in (self._sparkplug, self._opcua, self._alarms, self._validation, self._commands):
            try:
                yield from section()
            except Exception:  # noqa: BLE001 - a scrape never takes the node down, nor fails whole
                log.debug("metrics section %s failed", section.__name__, exc_info=True)

    def _sparkplug(self) -> Iterator[Metric]:
        client = self._app.client
        connected = client is not None and client.connected
        yield gauge("uns_edge_mqtt_connected", "1 while the MQTT session is up", 1 if connected else 0)
        stats = client.stats if client is not None else None
        if not isinstance(stats, EdgeStats):
            return  # not started yet, or a client whose counters are not EdgeStats
        s = stats
        yield gauge("uns_edge_born", "1 once the NBIRTH of the current connection is on the wire",
                    1 if s.birthed else 0)
        yield gauge("uns_edge_bdseq", "bdSeq of the current (or next) MQTT connection", s.bd_seq)
        yield gauge("uns_edge_seq", "seq of the last Sparkplug message", s.seq)
        yield counter("uns_edge_messages_out", "MQTT PUBLISHes written (Sparkplug and command results)",
                       s.messages_out)
        yield counter("uns_edge_bytes_out", "payload bytes written", s.bytes_out)
        births = CounterMetricFamily("uns_edge_births", "births built, by message type", labels=["type"])
        births.add_metric(["NBIRTH"], s.nbirths)
        births.add_metric(["DBIRTH"], s.dbirths)
        yield births
        deaths = CounterMetricFamily("uns_edge_deaths", "device deaths built, by message type", labels=["type"])
        deaths.add_metric(["DDEATH"], s.ddeaths)
        yield deaths
        yield counter("uns_edge_data_messages", "NDATA and DDATA messages built (live and historical)",
                       self._data_messages())
        yield counter("uns_edge_rebirths", "rebirth sequences published for Node Control/Rebirth requests",
                       s.rebirths)
        yield counter("uns_edge_rebirths_throttled", "rebirth requests held back by the rebirth throttle",
                       s.rebirths_throttled)
        yield counter("uns_edge_next_server_requests", "Node Control/Next Server commands obeyed",
                      s.next_server_requests)
        yield counter("uns_edge_mqtt_connects", "MQTT sessions established", s.connects)
        yield counter("uns_edge_mqtt_connect_failures", "MQTT connection attempts that failed", s.connect_failures)
        yield counter("uns_edge_mqtt_reconnects", "MQTT reconnection attempts after a lost or failed session",
                       s.reconnects)
        yield counter("uns_edge_publish_errors", "publishes that failed (the connection is then renewed)",
                       s.publish_errors)
        yield counter("uns_edge_values_submitted", "value changes handed to the Sparkplug session", s.values_submitted)
        yield counter("uns_edge_values_published", "live values sent in NDATA/DDATA", s.values_published)
        yield counter("uns_edge_values_replayed", "stored values re-sent as historical", s.values_replayed)
        yield counter("uns_edge_values_stored", "values handed to store-and-forward (written, or counted in "
                      "uns_edge_store_lost when the store fails)", s.values_stored)
        yield counter("uns_edge_values_confirmed", "values the broker confirmed (echo or fence)", s.values_confirmed)
        yield counter("uns_edge_values_resent_after_host_loss", "values the broker confirmed shortly before the "
                      "primary host went offline, stored again to reach its next run as historical",
                      s.values_resent_after_host_loss)
        yield counter("uns_edge_values_unencodable", "values dropped because they could not be encoded",
                       s.values_unencodable)
        yield counter("uns_edge_session_errors", "session failures (e.g. a birth that could not be encoded): "
                      "disconnected and reconnected from a clean state", s.session_errors)
        yield gauge("uns_edge_store_depth", "values waiting in store-and-forward", s.store_depth)
        yield gauge("uns_edge_store_oldest_age_seconds", "age of the oldest stored value (0 when empty)",
                     s.store_oldest_age_s or 0.0)
        yield counter("uns_edge_store_dropped", "stored values deleted to make room (full_policy drop_oldest)",
                       s.store_dropped)
        yield counter("uns_edge_store_rejected", "values refused by a full store (full_policy reject_new)",
                       s.store_rejected)
        yield counter("uns_edge_store_errors", "store-and-forward I/O errors", s.store_errors)
        yield counter("uns_edge_store_lost", "values that could not be written to the store", s.store_lost)
        yield gauge("uns_edge_store_failing", "1 while store-and-forward writes fail (disk full, I/O error)",
                    1 if s.store_failing else 0)
        yield counter("uns_edge_invalid_commands", "NCMD/DCMD payloads the session could not use", s.bad_commands)
        yield counter("uns_edge_invalid_state", "primary host STATE messages that could not be parsed", s.bad_state)
        yield counter("uns_edge_stale_state", "primary host STATE messages older than the last one", s.stale_state)
        yield counter("uns_edge_command_handler_errors", "command handler failures", s.command_handler_errors)

    def _data_messages(self) -> int:
        client = self._app.client
        return client.session.counters.data_messages if client is not None else 0

    def _opcua(self) -> Iterator[Metric]:
        families = {
            "connected": GaugeMetricFamily("uns_edge_opcua_connected", "1 while the endpoint has a live session",
                                           labels=["endpoint"]),
            "reconnects": CounterMetricFamily("uns_edge_opcua_reconnects",
                                              "sessions opened after the first one (reconnects)", labels=["endpoint"]),
            "connect_failures": CounterMetricFamily("uns_edge_opcua_connect_failures",
                                                    "connection attempts that failed", labels=["endpoint"]),
            "certificate_rejections": CounterMetricFamily(
                "uns_edge_opcua_certificate_rejections", "connect attempts refused for the server's certificate",
                labels=["endpoint"]),
            "disconnects": CounterMetricFamily("uns_edge_opcua_disconnects", "sessions lost", labels=["endpoint"]),
            "keepalive_late": CounterMetricFamily(
                "uns_edge_opcua_keepalive_late", "keep-alive reads not answered in time while the server still "
                "published (the session was kept)", labels=["endpoint"]),
            "notifications": CounterMetricFamily("uns_edge_opcua_notifications", "data change notifications in",
                                                 labels=["endpoint"]),
            "monitored_items": GaugeMetricFamily("uns_edge_opcua_monitored_items", "monitored items of the session",
                                                 labels=["endpoint"]),
            "unknown_nodes": CounterMetricFamily("uns_edge_opcua_unknown_nodes", "tag NodeIds the server did not know",
                                                 labels=["endpoint"]),
            "sink_errors": CounterMetricFamily("uns_edge_opcua_sink_errors", "changes the Sparkplug side refused",
                                               labels=["endpoint"]),
        }
        for source in self._app.sources:
            st, name = source.stats, [source.endpoint.name]
            families["connected"].add_metric(name, 1 if source.connected.is_set() else 0)
            families["reconnects"].add_metric(name, max(0, st.connects - 1))
            families["connect_failures"].add_metric(name, st.connect_failures)
            families["certificate_rejections"].add_metric(name, st.certificate_rejections)
            families["disconnects"].add_metric(name, st.disconnects)
            families["keepalive_late"].add_metric(name, st.keepalive_late)
            families["notifications"].add_metric(name, st.notifications)
            families["monitored_items"].add_metric(name, st.monitored_items)
            families["unknown_nodes"].add_metric(name, st.unknown_nodes)
            families["sink_errors"].add_metric(name, st.sink_errors)
        yield from families.values()

    def _alarms(self) -> Iterator[Metric]:
        """OPC UA condition events by what became of them (docs/alarms.md), per endpoint with ``alarms:``."""
        events = CounterMetricFamily("uns_edge_alarm_events", "OPC UA condition events, by outcome",
                                     labels=["endpoint", "outcome"])
        refreshes = CounterMetricFamily("uns_edge_alarm_refreshes", "ConditionRefresh rounds completed",
                                        labels=["endpoint"])
        requests = CounterMetricFamily("uns_edge_alarm_refresh_requests",
                                       "RefreshRequiredEvents of the server, each answered with a ConditionRefresh",
                                       labels=["endpoint"])
        lost = CounterMetricFamily("uns_edge_alarm_sessions_lost", "sessions that ended with their event "
                                   "subscription: the events the server still held for it are lost",
                                   labels=["endpoint"])
        cleared = CounterMetricFamily("uns_edge_alarm_cleared_by_refresh",
                                      "conditions cleared because a ConditionRefresh did not restate them",
                                      labels=["endpoint"])
        for source in self._app.sources:
            if source.alarms is None:
                continue
            st, name = source.alarms.book.stats, source.endpoint.name
            for outcome, count in (("received", st.received), ("published", st.events),
                                   ("not_condition", st.not_conditions), ("queue_overflow", st.queue_overflows),
                                   ("malformed", st.malformed), ("unknown_source", st.unknown_sources),
                                   ("unknown_condition", st.unknown_conditions)):
                events.add_metric([name, outcome], count)
            refreshes.add_metric([name], st.refreshes)
            requests.add_metric([name], st.refresh_requests)
            cleared.add_metric([name], st.cleared_by_refresh)
            lost.add_metric([name], st.sessions_lost)
        yield from (events, refreshes, requests, cleared, lost)

    def _validation(self) -> Iterator[Metric]:
        v = self._app.validation_stats
        yield counter("uns_edge_validation_accepted", "OPC UA samples turned into metric updates", v.accepted)
        dropped = CounterMetricFamily("uns_edge_validation_dropped", "OPC UA samples dropped, by reason",
                                      labels=["reason"])
        for reason, value in sorted(v.dropped.items()):
            dropped.add_metric([reason], value)
        yield dropped
        quality = CounterMetricFamily("uns_edge_validation_samples", "non-Good samples accepted, by quality",
                                      labels=["quality"])
        quality.add_metric(["bad"], v.bad)
        quality.add_metric(["uncertain"], v.uncertain)
        yield quality
        yield counter("uns_edge_bad_quality_episodes", "runs of Bad quality on a tag (Bad start to recovery)",
                       v.bad_episodes)
        yield counter("uns_edge_future_timestamps", "samples whose SourceTimestamp was ahead of our clock",
                       v.future_timestamps)
        yield counter("uns_edge_old_timestamps", "live samples whose SourceTimestamp was older than max_source_age_s",
                      v.old_timestamps)
        yield counter("uns_edge_out_of_range", "samples outside the engineering range (any on_out_of_range)",
                      v.out_of_range)
        yield counter("uns_edge_stale_tags", "tags turned STALE by max_age_s", v.stale)
        yield counter("uns_edge_frozen_tags", "tags turned UNCERTAIN by frozen_after_s", v.frozen)

    def _commands(self) -> Iterator[Metric]:
        runtime = self._app.commands
        if runtime is None:
            return
        c = runtime.executor.stats
        yield counter("uns_edge_commands_received", "command metrics received in NCMD/DCMD", c.received)
        outcomes = CounterMetricFamily("uns_edge_command_outcomes",
                                       "finished commands by outcome (refused includes malformed)", labels=["outcome"])
        for outcome, value in (("confirmed", c.confirmed), ("mismatch", c.mismatch), ("timeout", c.timeout),
                               ("failed", c.failed), ("expired", c.expired), ("refused", c.refused + c.malformed)):
            outcomes.add_metric([outcome], value)
        yield outcomes
        yield counter("uns_edge_commands_malformed", "commands refused as malformed_command", c.malformed)
        yield counter("uns_edge_commands_replayed", "commands refused because their id was taken in before "
                      "(a replayed DCMD/NCMD)", c.replayed)
        yield counter("uns_edge_commands_queued", "commands queued while their OPC UA endpoint was down", c.queued)
        yield counter("uns_edge_command_results_unpublished", "command results that could not be published",
                       c.results_unpublished)
        yield counter("uns_edge_command_audit_errors", "audit chain appends that failed", c.audit_errors)
        yield counter("uns_edge_commands_undecodable", "NCMD/DCMD messages refused because the session could not "
                      "decode them", c.undecodable)
        yield counter("uns_edge_commands_resumed", "waiting commands resumed from the journal after a restart",
                      c.resumed)
        yield counter("uns_edge_commands_closed_at_startup", "open commands closed as failed after a restart",
                      c.closed_at_startup)
        yield counter("uns_edge_command_journal_errors", "command journal writes that failed", c.journal_errors)


class EdgeObservability(ProbeServer):
    """The probe server of one edge node."""

    def __init__(self, app: EdgeNodeApp, config: HttpEndpointConfig) -> None:
        if config.port is None:
            raise ValueError("the http endpoint is disabled (port null); nothing to serve")
        super().__init__("edge node", EdgeCollector(app), lambda: edge_readiness(app), config.host, config.port)
