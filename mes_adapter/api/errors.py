"""Every refused request gets a 4xx with ``{"detail": <why, for people>, "reason": <code, for programs>}``.

One error model, :class:`ErrorBody`, for every refusal. The handlers here turn the adapter's own
exceptions into that shape, so routers raise meaningful errors (:class:`ApiError`,
:class:`~mes_adapter.auth.AuthError`, the MES core's :class:`~mes_adapter.errors.MesInputError`,
the command service's :class:`~mes_adapter.commands.service.CommandError`) and never build
responses by hand. FastAPI's own refusals get the same shape: a request that fails validation is
a 422 whose ``detail`` is one string and whose ``errors`` lists each problem; a body that is not
JSON is a 400 ``invalid_json``; a body nested deeper than :data:`uns.json_guard.MAX_JSON_DEPTH`
is a 400 ``json_too_deep``, refused before anything parses it (``json.loads`` would recurse). The
one 5xx with this shape: the shared PostgreSQL of the MES state (``mes.state_dsn``) is unreachable, a
503 ``state_store_unavailable`` (retry later; nothing is lost).

:func:`install` also makes the OpenAPI say so: every operation documents :class:`ErrorBody` for
each status it can refuse with (401/403 when it needs a token, 422 when it takes parameters or a
body, 400 when it takes a body, 404 when its path has parameters, and whatever its decorator
declares: 409, 429, 503...), replacing FastAPI's default 422 schema (whose ``detail`` is an array).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mes_adapter.auth import AuthError
from mes_adapter.commands.service import CommandError
from mes_adapter.errors import MesError, MesInputError, StateStoreUnavailableError
from uns import json_guard

log = logging.getLogger("uns.adapter.api")


class Problem(BaseModel):
    """One reason a request failed validation."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every refusal (4xx) and of a 503."""

    #: why, for people
    detail: str
    #: a stable code, for programs (``invalid_request``, ``invalid_json``, ``not_found``, ...)
    reason: str
    #: 422 only: each validation problem
    errors: list[Problem] | None = None
    #: command refusals: the command concerned and its status
    command_id: str | None = None
    status: str | None = None


#: a refusal without a declared description gets this one in the OpenAPI
_DESCRIPTIONS = {400: "the body is not JSON, or is nested too deep", 401: "no token, malformed header or unknown token",
                 403: "the user's role is too low", 404: "no such resource", 409: "conflicts with the current state",
                 422: "a parameter or the body is invalid; `errors` lists each problem",
                 429: "rate limit", 503: "a service the request needs is down"}


class ApiError(MesError):
    def __init__(self, status: int, reason: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.extra = extra


def error_response(status: int, reason: str, detail: str, headers: dict[str, str] | None = None, /,
                   **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "reason": reason, **extra}, status_code=status, headers=headers)


#: documented on every protected route, so the OpenAPI says what a refusal looks like
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, malformed header or unknown token"},
    403: {"model": ErrorBody, "description": "the user's role is too low; the detail names the role needed"},
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.reason, exc.detail, None, **exc.extra)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.reason, exc.message, headers)

    @app.exception_handler(CommandError)
    async def _command_error(_: Request, exc: CommandError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if exc.record is not None:
            extra = {"command_id": str(exc.record.request.command_id), "status": exc.record.status.value}
        return error_response(exc.status, exc.reason, exc.message, None, **extra)

    @app.exception_handler(MesInputError)
    async def _mes_input(_: Request, exc: MesInputError) -> JSONResponse:
        return error_response(422, type(exc).__name__, str(exc))

    @app.exception_handler(StateStoreUnavailableError)
    async def _state_store(_: Request, exc: StateStoreUnavailableError) -> JSONResponse:
        return error_response(503, "state_store_unavailable", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        invalid_json = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if invalid_json:
            ctx = invalid_json[0].get("ctx") or {}
            return error_response(400, "invalid_json", f"the body is not JSON: {ctx.get('error', 'parse error')}")
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request", None,
                              errors=[{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                                       "msg": str(e.get("msg")), "type": str(e.get("type"))}
                                      for e in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, reason, detail, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # our bug, never a client's doing: logged with its traceback by Starlette, answered in the same shape
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the adapter log")

    app.add_middleware(JsonDepthLimit)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            _document_errors(build())  # FastAPI caches the schema: patched once, in place
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class JsonDepthLimit:
    """Refuse request bodies nested deeper than ``limit`` before FastAPI parses them.

    FastAPI's ``json.loads`` of a 5,000-deep body raises RecursionError and answers an
    undocumented 400; here it is a documented 400 ``json_too_deep`` and nothing recurses.
    """

    def __init__(self, app: ASGIApp, limit: int = json_guard.MAX_JSON_DEPTH) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            json_guard.check_depth(body, self.limit)
        except json_guard.JsonTooDeepError as exc:
            await error_response(400, "json_too_deep", f"the body is {exc}")(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _document_errors(schema: dict[str, Any]) -> None:
    """Document :class:`ErrorBody` for every refusal of every operation (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    body_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(body_schema.pop("$defs", {}))
    components["ErrorBody"] = body_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            statuses = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            if operation.get("parameters") or "requestBody" in operation:
                statuses.add(422)
            if "requestBody" in operation:
                statuses.add(400)
            if any(param.get("in") == "path" for param in operation.get("parameters", ())):
                statuses.add(404)  # a path that names nothing, or does not route at all
            for status in sorted(statuses):
                entry = responses.setdefault(str(status), {})
                entry.setdefault("description", _DESCRIPTIONS.get(status, "refused"))
                content = entry.get("content", {}).get("application/json", {}).get("schema", {})
                if status == 422 or not content or "HTTPValidationError" in str(content):
                    entry["content"] = ref
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and unused not in str(schema["paths"]):
            del components[unused]
