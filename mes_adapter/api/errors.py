"""Every refused request gets a 4xx with ``{"detail": <why, for people>, "reason": <code, for programs>}``.

The handlers here turn the adapter's own exceptions into that shape, so routers raise meaningful
errors (:class:`ApiError`, :class:`~mes_adapter.auth.AuthError`, the MES core's
:class:`~mes_adapter.errors.MesInputError`, the command service's
:class:`~mes_adapter.command_service.CommandError`) and never build responses by hand.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from mes_adapter.auth import AuthError
from mes_adapter.command_service import CommandError
from mes_adapter.errors import MesInputError

log = logging.getLogger("uns.adapter.api")


class ErrorBody(BaseModel):
    detail: str
    reason: str


class ApiError(Exception):
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

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append(f"{loc}: {str(err.get('msg', '')).removeprefix('Value error, ')}")
        return error_response(422, "invalid_request", "; ".join(problems) or "invalid request", None,
                              errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                                      for e in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(exc.status_code, reason, detail, getattr(exc, "headers", None))
