"""Dependencies shared by the routers: the running service (as :class:`ServiceApi`) and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mes_adapter.auth import SESSION_COOKIE, Principal, Role, TokenStore
from mes_adapter.service_api import ServiceApi

#: declares the scheme in OpenAPI (the /docs "Authorize" button); the header itself is read below so a
#: malformed header gets its own message instead of "not authenticated"
_bearer = HTTPBearer(auto_error=False, description="API token: `uns adapter token --role <role>`")


def service(request: Request) -> ServiceApi:
    return request.app.state.api  # type: ignore[no-any-return]


def require(role: Role, action: str) -> Callable[..., Principal]:
    """Dependency: the caller, authenticated by bearer token and holding at least ``role``."""

    def dependency(request: Request,
                   _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        principal = service(request).authenticate(request.headers.get("authorization"),
                                                  session_id=request.cookies.get(SESSION_COOKIE))
        TokenStore.require(principal, role, action)
        request.state.principal = principal
        return principal

    return dependency


def client_id(request: Request) -> str:
    """Where a request came from, for the audit trail (21 CFR 11.10(h) device checks)."""
    peer = request.client.host if request.client else "unknown"
    agent = request.headers.get("user-agent", "")[:80]
    return f"http:{peer}" + (f" ({agent})" if agent else "")
