"""Dashboard login: named users with passwords (argon2id, ``auth.users_file``) and sessions.

``POST /api/session`` checks the user name and password and sets the session cookie (HttpOnly,
SameSite=Strict: no script can read it, no other site can send it); ``DELETE /api/session`` ends
it. Every ``/api`` route accepts the cookie as it accepts a bearer token; API tokens stay for
machines and win when both are presented. A failed login also ends any session the browser still
had, so a wrong credential never leaves the previous user's live data on the screen.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mes_adapter.auth import SESSION_COOKIE, AuthError
from mes_adapter.service_api import ServiceApi
from mes_adapter.timefmt import now_ms

from .deps import service
from .errors import AUTH_RESPONSES, ErrorBody, error_response

router = APIRouter(prefix="/api", tags=["session"], responses=AUTH_RESPONSES)


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class SessionView(BaseModel):
    user_id: str
    full_name: str
    role: str
    expires_ms: int = Field(description="the session ends then (auth.session_ttl_s after login)")


def _end(request: Request, response: Response, svc: ServiceApi) -> Response:
    """Forget the browser's session (if any) on the server and in the browser."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        svc.logout(session_id)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/session", response_model=SessionView,
             responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}},
             summary="Log in with user name and password: sets the HttpOnly session cookie")
async def login(body: Login, request: Request, response: Response,
                svc: ServiceApi = Depends(service)) -> SessionView | Response:
    if not svc.logins_enabled():
        raise AuthError(404, "logins_disabled", "no dashboard users are configured (auth.users_file); use a token")
    try:
        session_id, session = await asyncio.to_thread(svc.login, body.user_id, body.password)
    except AuthError as exc:  # the previous session of this browser ends too
        return _end(request, error_response(exc.status, exc.reason, exc.message), svc)
    who = session.principal
    max_age = max(1, (session.expires_ms - now_ms()) // 1000)
    response.set_cookie(SESSION_COOKIE, session_id, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=max_age)
    return SessionView(user_id=who.user_id, full_name=who.full_name, role=who.role.label,
                       expires_ms=session.expires_ms)


@router.delete("/session", status_code=204, summary="Log out: ends the session and clears the cookie")
def logout(request: Request, svc: ServiceApi = Depends(service)) -> Response:
    return _end(request, Response(status_code=204), svc)
