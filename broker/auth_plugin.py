"""amqtt authentication plugin: our password file, verified off the event loop.

Why not amqtt's ``FileAuthPlugin``: it runs argon2 on the event loop (≈155 ms per CONNECT on
the project machine), stalling every connected client meanwhile, and it knows
nothing of roles. This plugin verifies with ``asyncio.to_thread`` and, on success, leaves a
:class:`broker.acl.Principal` in ``session.attributes[PRINCIPAL_KEY]`` for the ACL. The password
file is re-read when its modification time changes, so ``uns broker passwd`` takes effect at the
next CONNECT without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from .acl import Principal
from .passwords import PasswordFile, PasswordFileError, dummy_hash, load_password_file, verify_password

PRINCIPAL_KEY = "uns.broker.principal"
log = logging.getLogger("broker.auth")


class UnsAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        password_file: str | None = None
        anonymous_role: str | None = None
        """Role granted to a client that sends no user name; None refuses it."""

    def __init__(self, context) -> None:  # type: ignore[no-untyped-def]  # amqtt passes its BaseContext
        super().__init__(context)
        self._path = Path(self.config.password_file) if self.config.password_file else None
        self._anonymous_role: str | None = self.config.anonymous_role
        self._users = PasswordFile()
        self._mtime: float | None = None
        if self._path is not None:
            self._users = load_password_file(self._path)  # fail at start on a bad file
            self._mtime = self._path.stat().st_mtime

    def _current_users(self) -> PasswordFile:
        if self._path is None:
            return self._users
        try:
            mtime = self._path.stat().st_mtime
            if mtime != self._mtime:
                self._users = load_password_file(self._path)
                self._mtime = mtime
                log.info("password file %s reloaded: %d user(s)", self._path, len(self._users.users))
        except (OSError, PasswordFileError) as exc:
            log.error("password file %s could not be reloaded, keeping the previous users: %s", self._path, exc)
        return self._users

    async def authenticate(self, *, session: Session) -> bool:
        client_id = session.client_id or ""
        session.attributes.pop(PRINCIPAL_KEY, None)
        if not session.username:
            if self._anonymous_role is None:
                log.info("refused anonymous client %r: anonymous access is off", client_id)
                return False
            session.attributes[PRINCIPAL_KEY] = Principal(None, self._anonymous_role, client_id)
            session.is_anonymous = True
            return True
        record = self._current_users().users.get(session.username)
        if record is None:
            # still spend the time of a verify so user names can't be probed by timing
            await asyncio.to_thread(verify_password, dummy_hash(), session.password or "")
            log.info("refused client %r: unknown user %r", client_id, session.username)
            return False
        if not await asyncio.to_thread(verify_password, record.hash, session.password or ""):
            log.info("refused client %r: wrong password for user %r", client_id, session.username)
            return False
        session.attributes[PRINCIPAL_KEY] = Principal(
            session.username, record.role, client_id, record.group, record.edge)
        return True

