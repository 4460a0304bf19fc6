"""``/metrics``, ``/healthz`` and ``/readyz`` of the edge node, served in the node's own event loop.

Why this shape:

* **Values are read at scrape time** by :class:`EdgeCollector` from the objects that already
  count them (``SparkplugEdgeClient.stats``, each ``OpcUaSource.stats``, the shared
  ``ValidationStats``, the command executor's stats). Nothing is counted twice, ``/metrics`` can
  never drift from the node's own figures, and the hot paths (20,000 changes/s) pay nothing.
* **A registry per app instance**, so two nodes in one process (tests) never share series.
* **Same loop, no thread**: the store is a SQLite connection and the counters are plain ints
  mutated by the loop; reading them from the loop's thread (an ``async`` route) needs no locks.
  uvicorn serves a three-route Starlette app; it is told to leave the process's signals alone
  (the node's ``run()`` owns SIGINT/SIGTERM and must publish NDEATH on them).
* **Fail soft on the port**: if the port is taken the node logs an error and keeps moving data
  (the endpoint is a side channel; ``uns up`` checks its ports before starting anything).

``/readyz`` is 200 when the MQTT session is connected, the NBIRTH of that connection is out and
every OPC UA endpoint has a live session; otherwise 503 with ``{"status", "detail", "checks"}``
naming what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import HttpEndpointConfig
from .mqtt_client import EdgeStats

if TYPE_CHECKING:
    from .app import EdgeNodeApp

__all__ = ["CONTENT_TYPE", "EdgeCollector", "EdgeObservability", "Readiness", "edge_readiness"]

log = logging.getLogger(__name__)

#: the classic text format every Prometheus (and the MES adapter's /metrics) speaks
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` answers: ready or not, a sentence for humans, each check for machines."""

    ready: bool
    detail: str
    checks: dict[str, bool] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": "ready" if self.ready else "not_ready", "detail": self.detail, "checks": self.checks}


def edge_readiness(app: EdgeNodeApp) -> Readiness:
    """Ready = MQTT connected, NBIRTH out on this connection, every OPC UA endpoint connected."""
    client = app.client
    if client is None:
        return Readiness(False, "edge node not started (or stopping)", {"started": False})
    checks: dict[str, bool] = {"started": True, "mqtt_connected": bool(getattr(client, "connected", False)),
                               "born": bool(getattr(client, "birthed", False))}
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
    if missing:
        return Readiness(False, "; ".join(missing), checks)
    return Readiness(True, "MQTT connected and born; every OPC UA endpoint connected", checks)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


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
        for section in (self._sparkplug, self._opcua, self._validation, self._commands):
            try:
                yield from section()
            except Exception:  # noqa: BLE001 - a scrape never takes the node down, nor fails whole
                log.debug("metrics section %s failed", section.__name__, exc_info=True)

    def _sparkplug(self) -> Iterator[Metric]:
        client = self._app.client
        stats = getattr(client, "stats", None) if client is not None else None
        connected = bool(client is not None and getattr(client, "connected", False))
        yield _gauge("uns_edge_mqtt_connected", "1 while the MQTT session is up", 1 if connected else 0)
        if not isinstance(stats, EdgeStats):
            return  # not started yet, or a client without EdgeStats (tests' fakes)
        s = stats
        yield _gauge("uns_edge_born", "1 once the NBIRTH of the current connection is on the wire", 1 if s.birthed else 0)
        yield _gauge("uns_edge_bdseq", "bdSeq of the current (or next) MQTT connection", s.bd_seq)
        yield _gauge("uns_edge_seq", "seq of the last Sparkplug message", s.seq)
        yield _counter("uns_edge_messages_out", "MQTT PUBLISHes written (Sparkplug and command results)",
                       s.messages_out)
        yield _counter("uns_edge_bytes_out", "payload bytes written", s.bytes_out)
        births = CounterMetricFamily("uns_edge_births", "births built, by message type", labels=["type"])
        births.add_metric(["NBIRTH"], s.nbirths)
        births.add_metric(["DBIRTH"], s.dbirths)
        yield births
        deaths = CounterMetricFamily("uns_edge_deaths", "device deaths built, by message type", labels=["type"])
        deaths.add_metric(["DDEATH"], s.ddeaths)
        yield deaths
        yield _counter("uns_edge_data_messages", "NDATA and DDATA messages built (live and historical)",
                       self._data_messages())
        yield _counter("uns_edge_rebirths", "rebirth sequences published for Node Control/Rebirth requests",
                       s.rebirths)
        yield _counter("uns_edge_rebirths_throttled", "rebirth requests held back by the rebirth throttle",
                       s.rebirths_throttled)
        yield _counter("uns_edge_mqtt_connects", "MQTT sessions established", s.connects)
        yield _counter("uns_edge_mqtt_connect_failures", "MQTT connection attempts that failed", s.connect_failures)
        yield _counter("uns_edge_mqtt_reconnects", "MQTT reconnection attempts after a lost or failed session",
                       s.reconnects)
        yield _counter("uns_edge_publish_errors", "publishes that failed (the connection is then renewed)",
                       s.publish_errors)
        yield _counter("uns_edge_values_submitted", "value changes handed to the Sparkplug session", s.values_submitted)
        yield _counter("uns_edge_values_published", "live values sent in NDATA/DDATA", s.values_published)
        yield _counter("uns_edge_values_replayed", "stored values re-sent as historical", s.values_replayed)
        yield _counter("uns_edge_values_stored", "values written to store-and-forward", s.values_stored)
        yield _counter("uns_edge_values_confirmed", "values the broker confirmed (echo or fence)", s.values_confirmed)
        yield _counter("uns_edge_values_unencodable", "values dropped because they could not be encoded",
                       s.values_unencodable)
        yield _gauge("uns_edge_store_depth", "values waiting in store-and-forward", s.store_depth)
        yield _gauge("uns_edge_store_oldest_age_seconds", "age of the oldest stored value (0 when empty)",
                     s.store_oldest_age_s or 0.0)
        yield _counter("uns_edge_store_dropped", "stored values deleted to make room (full_policy drop_oldest)",
                       s.store_dropped)
        yield _counter("uns_edge_store_rejected", "values refused by a full store (full_policy reject_new)",
                       s.store_rejected)
        yield _counter("uns_edge_store_errors", "store-and-forward I/O errors", s.store_errors)
        yield _counter("uns_edge_store_lost", "values that could not be written to the store", s.store_lost)
        yield _counter("uns_edge_invalid_commands", "NCMD/DCMD payloads the session could not use", s.bad_commands)
        yield _counter("uns_edge_invalid_state", "primary host STATE messages that could not be parsed", s.bad_state)
        yield _counter("uns_edge_stale_state", "primary host STATE messages older than the last one", s.stale_state)
        yield _counter("uns_edge_command_handler_errors", "command handler failures", s.command_handler_errors)

    def _data_messages(self) -> int:
        session = getattr(self._app.client, "session", None)
        return int(getattr(getattr(session, "counters", None), "data_messages", 0))

    def _opcua(self) -> Iterator[Metric]:
        families = {
            "connected": GaugeMetricFamily("uns_edge_opcua_connected", "1 while the endpoint has a live session",
                                           labels=["endpoint"]),
            "reconnects": CounterMetricFamily("uns_edge_opcua_reconnects",
                                              "sessions opened after the first one (reconnects)", labels=["endpoint"]),
            "connect_failures": CounterMetricFamily("uns_edge_opcua_connect_failures", "connection attempts that failed",
                                                    labels=["endpoint"]),
            "disconnects": CounterMetricFamily("uns_edge_opcua_disconnects", "sessions lost", labels=["endpoint"]),
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
            families["disconnects"].add_metric(name, st.disconnects)
            families["notifications"].add_metric(name, st.notifications)
            families["monitored_items"].add_metric(name, st.monitored_items)
            families["unknown_nodes"].add_metric(name, st.unknown_nodes)
            families["sink_errors"].add_metric(name, st.sink_errors)
        yield from families.values()

    def _validation(self) -> Iterator[Metric]:
        v = self._app.validation_stats
        yield _counter("uns_edge_validation_accepted", "OPC UA samples turned into metric updates", v.accepted)
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
        yield _counter("uns_edge_bad_quality_episodes", "runs of Bad quality on a tag (Bad start to recovery)",
                       v.bad_episodes)
        yield _counter("uns_edge_future_timestamps", "samples whose SourceTimestamp was ahead of our clock",
                       v.future_timestamps)

    def _commands(self) -> Iterator[Metric]:
        runtime = self._app.commands
        if runtime is None:
            return
        c = runtime.executor.stats
        yield _counter("uns_edge_commands_received", "command metrics received in NCMD/DCMD", c.received)
        outcomes = CounterMetricFamily("uns_edge_command_outcomes",
                                       "finished commands by outcome (refused includes malformed)", labels=["outcome"])
        for outcome, value in (("confirmed", c.confirmed), ("mismatch", c.mismatch), ("timeout", c.timeout),
                               ("failed", c.failed), ("expired", c.expired), ("refused", c.refused + c.malformed)):
            outcomes.add_metric([outcome], value)
        yield outcomes
        yield _counter("uns_edge_commands_malformed", "commands refused as malformed_command", c.malformed)
        yield _counter("uns_edge_commands_queued", "commands queued while their OPC UA endpoint was down", c.queued)
        yield _counter("uns_edge_command_results_unpublished", "command results that could not be published",
                       c.results_unpublished)
        yield _counter("uns_edge_command_audit_errors", "audit chain appends that failed", c.audit_errors)


def _uvicorn_server(app: Any) -> Any:
    """A uvicorn.Server that leaves SIGINT/SIGTERM to the service embedding it.

    uvicorn's ``serve()`` replaces the process's signal handlers and re-raises the signal when it
    stops; in the edge node that would fight ``EdgeNodeApp.run()``, which must publish NDEATH.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    # our own INFO line says where it serves; uvicorn keeps only its warnings and errors
    return Server(uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning", access_log=False,
                                 timeout_graceful_shutdown=2))


def _probe_app(render: Callable[[], bytes], readiness: Callable[[], Readiness]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    # async routes run on the loop's thread: the counters and the SQLite store are the loop's
    async def metrics(_: Request) -> Response:
        return Response(render(), media_type=CONTENT_TYPE)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "detail": "alive"})

    async def readyz(_: Request) -> Response:
        state = readiness()
        return JSONResponse(state.as_json(), status_code=200 if state.ready else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)])


def _bind(host: str, port: int) -> socket.socket:
    """Bound here so a taken port is an OSError we handle, not uvicorn's ``sys.exit``."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class EdgeObservability:
    """Registry, collector and probe server of one edge node; ``await start()`` / ``await stop()``."""

    def __init__(self, app: EdgeNodeApp, config: HttpEndpointConfig) -> None:
        if config.port is None:
            raise ValueError("the http endpoint is disabled (port null); nothing to serve")
        self.host = config.host
        self.requested_port = config.port
        self.port: int | None = None  # the bound port, once serving
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EdgeCollector(app))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, RSS, fds
        self._app = app
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self) -> bool:
        """Bind and serve; False (logged as an error) if the address cannot be bound."""
        try:
            sock = _bind(self.host, self.requested_port)
        except OSError as exc:
            log.error("cannot serve /metrics and probes on %s:%d (%s); the edge node runs without them",
                      self.host, self.requested_port, exc)
            return False
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(_probe_app(self.render, lambda: edge_readiness(self._app)))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="edge-node-http")
        log.info("edge node /metrics, /healthz, /readyz on http://%s:%d", self.host, self.port)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(task, 5.0)
        except (TimeoutError, asyncio.CancelledError, Exception) as exc:  # noqa: BLE001 - closing anyway
            log.debug("probe server stop: %r", exc)
            task.cancel()
