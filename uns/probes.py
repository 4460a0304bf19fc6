"""``/metrics``, ``/healthz`` and ``/readyz`` for a long-running service, in its own event loop.

The edge node and the embedded broker each bring a Prometheus collector (values read at scrape
time from the counters the service already keeps) and a readiness function; this module serves
them. Why this shape:

* **A registry per service instance**, so several in one process (tests) never share series.
* **Same loop, no thread**: the routes are ``async`` so collectors read loop-owned state (SQLite
  connections, amqtt's dicts) on the loop's thread, without locks.
* **Signals stay with the service**: uvicorn is told not to capture SIGINT/SIGTERM, which the
  service turns into a clean Sparkplug exit (NDEATH).
* **Fail soft on the port**: the socket is bound here, so a taken port is a logged error and the
  service keeps moving data (the endpoint is a side channel; ``uns up`` checks ports first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ProbeServer", "Readiness", "counter", "gauge"]

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


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _uvicorn_server(app: Any) -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # the service owns SIGINT/SIGTERM (uvicorn would re-raise them)

    # the service logs where it serves; uvicorn keeps only its warnings and errors
    return Server(uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning", access_log=False,
                                 timeout_graceful_shutdown=2))


def _probe_app(render: Callable[[], bytes], readiness: Callable[[], Readiness]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def metrics(_: Request) -> Response:
        return Response(render(), media_type=CONTENT_TYPE)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "detail": "alive"})

    async def readyz(_: Request) -> Response:
        state = readiness()
        return JSONResponse(state.as_json(), status_code=200 if state.ready else 503)

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)])


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class ProbeServer:
    """Registry (with the process collector) and the three routes; ``await start()`` / ``await stop()``."""

    def __init__(self, name: str, collector: Collector, readiness: Callable[[], Readiness],
                 host: str, port: int) -> None:
        self.name = name
        self.host = host
        self.requested_port = port
        self.port: int | None = None  # the bound port, once serving
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(collector)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, RSS, fds
        self._readiness = readiness
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def start(self) -> bool:
        """Bind and serve; False (logged as an error) if the address cannot be bound."""
        try:
            sock = _bind(self.host, self.requested_port)
        except OSError as exc:
            log.error("cannot serve /metrics and probes of the %s on %s:%d (%s); it runs without them",
                      self.name, self.host, self.requested_port, exc)
            return False
        self.port = sock.getsockname()[1]
        self._server = _uvicorn_server(_probe_app(self.render, self._readiness))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"{self.name}-http")
        log.info("%s /metrics, /healthz, /readyz on http://%s:%d", self.name, self.host, self.port)
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
