"""The FastAPI application of the adapter: routers, error shape, HTTP metrics, dashboard.

``create_app(service, metrics)`` builds the app around an :class:`AdapterService`; with
``manage_lifetime`` (the default) the app's lifespan starts and stops the service, so
``uvicorn.Server(Config(app)).serve()`` runs host and API in one event loop and uvicorn's own
SIGINT/SIGTERM handling becomes a clean adapter shutdown (STATE offline, stores closed).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mes_adapter.api import (
    alarms,
    audit,
    batch_report,
    batches,
    commands,
    crew,
    downtime,
    errors,
    events,
    genealogy,
    health,
    history,
    me,
    orders,
    plant,
    production,
    quality,
    quarantine,
)
from mes_adapter.api.approvals import router as approvals_router
from mes_adapter.api.session import router as session_router
from mes_adapter.service import AdapterService
from mes_adapter.service_api import ServiceApi
from mes_adapter.status.metrics import AdapterMetrics

DASHBOARD = Path(__file__).parent.parent / "dashboard"  # mes_adapter/dashboard
DOCS_ASSETS = "/docs-assets"  # Swagger UI's script, stylesheet and icon, served by the adapter itself

DESCRIPTION = """REST API of the uns-hub MES adapter (Sparkplug B primary host + MES core).

Authenticate with `Authorization: Bearer <token>` (mint one with `uns adapter token --role operator`).
Roles, each including the ones before it: **viewer** (read), **operator** (batch context, submit and sign
own commands), **supervisor** (approve others' commands, requeue dead letters), **engineer** (audit export);
beside them **qa** (read, and classify rejects with a signature: QA disposition).
Every refusal is a 4xx (or a 503) with one error model, `ErrorBody`: `{"detail": "<why>", "reason": "<code>"}`,
plus `errors` (each problem) on a 422. A body that is not JSON is a 400 `invalid_json`; one nested deeper than
32 levels a 400 `json_too_deep`. `/healthz`, `/readyz` and `/metrics` need no token. The dashboard is at `/`.
"""


class RedactQueryTokens(logging.Filter):
    """Keep ``?token=`` (the SSE route's EventSource auth) out of access logs: a logged token is a leaked one."""

    _pattern = re.compile(r"(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._pattern.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


class HttpMetricsMiddleware:
    """Counts requests by method, route template (not raw path: bounded label values) and status."""

    def __init__(self, app: ASGIApp, metrics: AdapterMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)


def create_app(service: AdapterService, metrics: AdapterMetrics, *, manage_lifetime: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifetime:
            await service.start()
        try:
            yield
        finally:
            service.feed.close()
            if manage_lifetime:
                await service.stop()

    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryTokens) for f in access_log.filters):
        access_log.addFilter(RedactQueryTokens())
    # /docs with Swagger UI served from the installed fastapi-offline package under DOCS_ASSETS,
    # not from a CDN: plants are often offline, and FastAPI's default page is blank there
    app = FastAPIOffline(title="uns-hub MES adapter", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                         docs_url="/docs", redoc_url=None, openapi_url="/openapi.json", static_url=DOCS_ASSETS)
    app.state.service = service
    app.state.api = ServiceApi(service)  # what the handlers see (mes_adapter.service_api)
    app.state.metrics = metrics
    errors.install(app)
    for module in (health, me, plant, quarantine, batches, batch_report, production, quality, downtime, commands,
                   audit, events, orders, genealogy, crew, alarms, history):
        app.include_router(module.router)
    app.include_router(approvals_router)
    app.include_router(session_router)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=DASHBOARD), name="static")
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    return app


def build(config: Any) -> tuple[FastAPI, AdapterService]:
    """Service, metrics and app from an :class:`~mes_adapter.config.application.AdapterConfig`."""
    metrics = AdapterMetrics()
    service = AdapterService(config, count=metrics.count)
    metrics.bind(service)
    return create_app(service, metrics), service
