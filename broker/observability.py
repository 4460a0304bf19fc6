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

The HTTP shell mirrors ``edge_node.observability`` (the two packages may not import each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .server import EmbeddedBroker

__all__ = ["CONTENT_TYPE", "BrokerCollector", "BrokerObservability", "Readiness", "broker_readiness"]

log = logging.getLogger("broker")

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


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


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
            yield _gauge("uns_broker_up", "1 while the broker is started", 0)
            return
        yield _gauge("uns_broker_up", "1 while the broker is started",
                     1 if broker.transitions.state == "started" else 0)
        stats = broker.stats
        sessions = list(broker.sessions.values())
        yield _gauge("uns_broker_clients_connected", "clients with a live, authenticated connection",
                     sum(1 for session, handler in sessions if _live(session, handler)))
        yield _gauge("uns_broker_sessions", "sessions the broker holds (live, persistent, or left by refused CONNECTs)",
                     len(sessions))
        yield _counter("uns_broker_connects_refused", "CONNECTs refused (authentication, role or Will topic)",
                       stats.connects_refused)
        yield _counter("uns_broker_messages_received", "PUBLISHes received from clients (messages in)",
                       stats.messages_received)
        yield _counter("uns_broker_messages_sent", "PUBLISHes sent to subscribers, live and retained (messages out)",
                       stats.messages_sent)
        yield _counter("uns_broker_publish_denied", "PUBLISHes dropped by the ACL", stats.publish_denied)
        yield _counter("uns_broker_keepalive_expired",
                       "connections closed after 1.5 x keep-alive of silence (their Will is then published)",
                       stats.keepalive_expired)
        yield _gauge("uns_broker_retained_messages", "retained messages held", len(broker.retained_messages))
        yield _gauge("uns_broker_subscriptions", "granted subscriptions",
                     sum(len(subs) for subs in broker.subscriptions.values()))
        yield _gauge("uns_broker_birth_certificates", "NBIRTH/DBIRTH certificates stored under $sparkplug/certificates",
                     len(broker.certificates))
        yield _counter("uns_broker_duplicate_edge_node_alarms",
                       "a second live client birthed an edge node another client holds", stats.duplicate_edge_nodes)
        yield _gauge("uns_broker_start_time_seconds", "when the broker started (Unix time)", stats.started_at)
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


def _uvicorn_server(app: Any) -> Any:
    """A uvicorn.Server that leaves SIGINT/SIGTERM to ``uns broker run`` (uvicorn would re-raise them)."""
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

    # async routes run on the loop's thread, where amqtt mutates what the collector reads
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


class BrokerObservability:
    """Registry, collector and probe server of one broker; ``await start()`` / ``await stop()``."""

    def __init__(self, embedded: EmbeddedBroker, host: str, port: int) -> None:
        self.host = host
        self.requested_port = port
        self.port: int | None = None  # the bound port, once serving
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(BrokerCollector(embedded))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, RSS, fds
        self._embedded = embedded
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self) -> bool:
        """Bind and serve; False (logged as an error) if the address cannot be bound."""
        try:
            sock = _bind(self.host, self.requested_port)
        except OSError as exc:
            log.error("cannot serve /metrics and probes on %s:%d (%s); the broker runs without them",
                      self.host, self.requested_port, exc)
            return False
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(_probe_app(self.render, lambda: broker_readiness(self._embedded)))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="uns-broker-http")
        log.info("broker /metrics, /healthz, /readyz on http://%s:%d", self.host, self.port)
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
