"""Prometheus metrics of one adapter instance, on a registry of its own (tests stay isolated).

Two kinds: counters the adapter increments as things happen (HTTP requests, command outcomes,
context assertions), and values read at scrape time from the parts that already count them (the
host's :class:`~mes_adapter.host.HostStats`, outbox depth, link and feed stats). Reading at scrape
time means ``/metrics`` works before the host is online and never drifts from the source.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uns.conventions import Quality

if TYPE_CHECKING:
    from mes_adapter.service import AdapterService

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class AdapterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_cpu_seconds_total, resident memory, open fds: what the edge's and the broker's
        # /metrics already carry, so one alert rule watches every service's memory and descriptors
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter("uns_adapter_http_requests", "HTTP requests by route template and status",
                                     ["method", "route", "status"], registry=self.registry)
        self.http_duration = Histogram("uns_adapter_http_request_duration_seconds", "HTTP request duration",
                                       ["method", "route"], registry=self.registry,
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.command_outcomes = Counter("uns_adapter_command_outcomes", "command status changes by outcome",
                                        ["outcome", "reason"], registry=self.registry)
        self.context_assertions = Counter("uns_adapter_context_assertions", "batch context assertions",
                                          ["source", "outcome"], registry=self.registry)
        self.context_ignored = Counter("uns_adapter_context_ignored", "messages on _context topics not applied",
                                       ["why"], registry=self.registry)
        self.material_assertions = Counter("uns_adapter_material_assertions",
                                           "lot assertions on <line>/_context/material (docs/mes-orders.md)",
                                           ["source", "outcome"], registry=self.registry)
        self.crew_assertions = Counter("uns_adapter_crew_assertions",
                                       "crew presence assertions on <line>/_context/crew (docs/mes-crew.md)",
                                       ["source", "outcome"], registry=self.registry)

    def count(self, name: str, labels: dict[str, str]) -> None:
        """The service's counting hook (``AdapterService(count=metrics.count)``)."""
        metric = {"command_outcomes": self.command_outcomes, "context_assertions": self.context_assertions,
                  "context_ignored": self.context_ignored, "material_assertions": self.material_assertions,
                  "crew_assertions": self.crew_assertions}.get(name)
        if metric is not None:
            metric.labels(**labels).inc()

    def bind(self, service: AdapterService) -> None:
        self.registry.register(_ServiceCollector(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels) if labels else None)
    family.add_metric(list(labels.values()) if labels else [], value)
    return family


class _ServiceCollector(Collector):
    def __init__(self, service: AdapterService) -> None:
        self._service = service

    def describe(self) -> list[Metric]:
        return []  # values come from the service at scrape time; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        service = self._service
        stats = service.host.stats
        yield _counter("uns_host_messages_in", "MQTT messages received by the Sparkplug host", stats.messages_in)
        yield _counter("uns_host_bytes_in", "payload bytes received by the Sparkplug host", stats.bytes_in)
        births = CounterMetricFamily("uns_host_births", "births applied, by kind", labels=["kind"])
        births.add_metric(["nbirth"], stats.nbirths)
        births.add_metric(["dbirth"], stats.dbirths)
        yield births
        deaths = CounterMetricFamily("uns_host_deaths", "deaths applied, by kind", labels=["kind"])
        deaths.add_metric(["ndeath"], stats.ndeaths)
        deaths.add_metric(["ddeath"], stats.ddeaths)
        yield deaths
        rebirths = CounterMetricFamily("uns_host_rebirths_requested", "rebirth requests sent, by cause",
                                       labels=["cause"])
        for cause, value in sorted(stats.rebirths_requested.items()):
            rebirths.add_metric([cause], value)
        yield rebirths
        yield _counter("uns_host_rebirths_suppressed", "rebirth requests held back by the throttle",
                       stats.rebirths_suppressed)
        yield _counter("uns_host_seq_gaps", "Sparkplug sequence gaps seen", stats.seq_gaps)
        yield _counter("uns_host_invalid_payloads", "payloads not applied (malformed, unknown alias, wrong type)",
                       stats.invalid_payloads)
        yield _counter("uns_host_invalid_topics", "messages on topics that are not Sparkplug", stats.invalid_topics)
        yield _counter("uns_host_oversize_payloads", "payloads over max_payload_bytes", stats.oversize)
        violations = CounterMetricFamily("uns_host_violations", "Sparkplug violations by kind", labels=["kind"])
        for kind, value in sorted(stats.violations.items()):
            violations.add_metric([kind], value)
        yield violations
        yield _counter("uns_host_metrics_decoded", "metric values decoded", stats.metrics_decoded)
        # the host's defence of the UNS against a broken or hostile edge (docs/security.md)
        refused = CounterMetricFamily("uns_host_metrics_refused", "birth metrics not mirrored, by reason",
                                      labels=["reason"])
        for reason, value in sorted(stats.extra.get("metrics_refused", {}).items()):
            refused.add_metric([reason], value)
        yield refused
        yield _counter("uns_host_refused_values", "values of refused metrics dropped",
                       stats.extra.get("refused_values", 0))
        yield _counter("uns_host_quarantines", "edge nodes quarantined for birth churn",
                       stats.extra.get("quarantines", 0))
        yield GaugeMetricFamily("uns_host_quarantined_nodes", "edge nodes in quarantine now",
                                value=len(stats.extra.get("quarantined_nodes", [])))
        yield _counter("uns_host_quarantined_messages", "messages of quarantined nodes not applied",
                       stats.extra.get("quarantined_messages", 0))
        yield _counter("uns_host_metrics_retired", "ghost metrics removed from the UNS after their grace",
                       stats.extra.get("metrics_retired", 0))
        yield _counter("uns_host_mirror_published", "UNS mirror messages published (messages out)",
                       stats.mirror_published)
        yield _counter("uns_host_mirror_conflated", "mirror updates replaced by newer ones before sending",
                       stats.mirror_conflated)
        yield _counter("uns_host_mirror_unencodable", "mirror values whose JSON could not be built (logged; the "
                       "others of their message were sent)", stats.extra.get("mirror_unencodable", 0))
        yield GaugeMetricFamily("uns_host_mirror_pending", "mirror messages waiting to be sent",
                                value=stats.mirror_pending)
        lag = GaugeMetricFamily("uns_host_mirror_lag_ms", "receive → mirror PUBACK lag", labels=["stat"])
        for stat, value in sorted(stats.mirror_lag_ms.items()):
            lag.add_metric([stat], value)
        yield lag
        yield _counter("uns_host_reconnects", "host MQTT reconnects", stats.reconnects)
        yield _counter("uns_host_handler_errors", "host bugs caught while handling a message",
                       stats.handler_errors)
        yield _counter("uns_host_change_stream_dropped", "change-stream entries dropped by slow consumers",
                       stats.change_stream_dropped)
        yield GaugeMetricFamily("uns_host_online", "1 while the host holds an MQTT session and STATE online",
                                value=1 if service.host.online else 0)
        mirror = service.host.mirror_publisher
        yield GaugeMetricFamily("uns_host_mirror_connected", "1 while the UNS mirror's own MQTT connection is up",
                                value=1 if mirror.connected else 0)
        yield _counter("uns_host_mirror_connect_failures", "UNS mirror connection attempts that failed "
                       "(refused, unreachable, no CONNACK)", mirror.connect_failures)
        nodes = service.host.model.nodes()
        yield GaugeMetricFamily("uns_host_edge_nodes_online", "edge nodes online",
                                value=sum(1 for n in nodes if n.online))
        yield GaugeMetricFamily("uns_host_devices_online", "devices online",
                                value=sum(1 for n in nodes for d in n.devices.values() if d.online))
        tags = GaugeMetricFamily("uns_host_tags", "tags in the live model by quality", labels=["quality"])
        by_quality = {q.value: 0 for q in Quality}
        for state in service.host.model.metrics():
            by_quality[state.quality.value] += 1
        for quality, value in by_quality.items():
            tags.add_metric([quality], value)
        yield tags
        outbox = GaugeMetricFamily("uns_outbox_entries", "confirmations in the outbox by status (pending = depth)",
                                   labels=["status"])
        try:
            counts = service.outbox.counts()
        except Exception:  # noqa: BLE001 - a closed store at shutdown must not break a scrape
            counts = {}
        for status, value in counts.items():
            outbox.add_metric([status.value], value)
        yield outbox
        link = service.link
        yield GaugeMetricFamily("uns_adapter_link_connected", "1 while the UNS JSON session is connected",
                                value=1 if link.connected else 0)
        yield _counter("uns_adapter_link_messages_in", "UNS JSON messages received (context, results)",
                       link.messages_in)
        yield _counter("uns_adapter_link_messages_out", "UNS JSON messages published (context, confirmations, "
                       "commands)", link.messages_out)
        yield _counter("uns_adapter_link_dropped", "queued publishes dropped while disconnected", link.dropped)
        yield GaugeMetricFamily("uns_adapter_sse_clients", "dashboard clients on /api/events",
                                value=service.feed.clients)
        yield _counter("uns_adapter_ingest_errors", "changes the MES core could not ingest", service.ingest_errors)
        ingest = service.ingest
        yield _counter("uns_adapter_ingest_write_failures", "failed record/counter writes (disk full, locked); "
                       "the data is kept and retried", ingest.write_failures)
        yield GaugeMetricFamily("uns_adapter_ingest_failing", "1 while ingest writes fail", value=int(
            ingest.failing is not None))
        yield GaugeMetricFamily("uns_adapter_ingest_pending", "records and counter samples waiting for their store",
                                value=ingest.pending)
        yield _counter("uns_adapter_counter_clock_corrected", "counter samples counted at their receive time "
                       "because their source time was wrong (future, far past, out of range)",
                       service.production.clock_corrected)
        yield _counter("uns_adapter_ingest_quarantined", "values that can never be stored (logged)",
                       service.record_store.quarantined + service.production.quarantined)
        episodes = service.episodes
        yield _counter("uns_adapter_quality_episodes_opened", "quality episodes (BAD/UNCERTAIN/STALE runs) opened",
                       episodes.opened)
        yield _counter("uns_adapter_quality_episodes_closed", "quality episodes closed by a GOOD value",
                       episodes.closed)
        yield GaugeMetricFamily("uns_adapter_quality_episodes_active", "tags in a quality episode now",
                                value=episodes.detector.open_count)
        yield _counter("uns_adapter_quality_episode_errors", "failed quality episode writes (kept and retried) and "
                       "episodes not published", episodes.errors)
        yield GaugeMetricFamily("uns_adapter_quality_episode_actions_waiting", "quality episode opens/closes kept "
                                "while the episode store fails, written first when it accepts writes again",
                                value=episodes.waiting)
        yield _counter("uns_adapter_quality_episode_actions_dropped", "quality episode opens/closes given up: the "
                       "store failed for longer than the kept actions allow", episodes.dropped)
        alarms = service.alarms  # condition events through the adapter (docs/alarms.md "Counting a flood")
        yield _counter("uns_adapter_alarm_events_received", "complete condition statements received from the "
                       "edge nodes (events and births' restatements)", alarms.folder.events_seen)
        yield _counter("uns_adapter_alarm_events_journaled", "alarm journal rows written", alarms.journaled)
        yield _counter("uns_adapter_alarm_events_not_journaled", "alarm changes given up: the journal failed for "
                       "longer than the kept rows allow (logged)", alarms.not_journaled)
        yield GaugeMetricFamily("uns_adapter_alarm_events_waiting", "alarm changes kept while the journal fails, "
                                "written first when it accepts writes again", value=alarms.waiting)
        desk = service.alarm_desk  # the alarm rules (docs/alarms.md "Exceptions and holds")
        yield _counter("uns_adapter_alarm_exceptions_opened", "production exceptions opened by alarm rules",
                       desk.exceptions_opened)
        yield _counter("uns_adapter_alarm_holds", "batches put on hold by alarm rules", desk.holds_opened)
        suppressed = CounterMetricFamily("uns_adapter_alarm_rule_suppressed",
                                         "alarm rule firings that opened no exception, by why", labels=["why"])
        for why, value in (("debounce", desk.rules.suppressed_debounce), ("rate", desk.rules.suppressed_flood),
                           ("shelved", desk.suppressed_shelved)):
            suppressed.add_metric([why], value)
        yield suppressed
        yield _counter("uns_adapter_alarm_rule_errors", "alarm rule firings that failed (logged)", desk.errors)
        yield _counter("uns_adapter_command_results_unmatched", "command results for unknown commands",
                       service.commands.results_unmatched)
        yield _counter("uns_adapter_command_results_after_final",
                       "results for a command that already had its final result (a replay refused)",
                       service.commands.results_after_final)
        yield _counter("uns_adapter_command_results_invalid", "invalid command results",
                       service.commands.results_invalid)
