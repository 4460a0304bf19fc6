"""Who may connect with which MQTT client id, with no I/O.

Why: MQTT-3.1.4-2 makes the broker hand a client id's session to whoever connects with it next,
disconnecting the current holder. With anonymous read-only access on (``uns up``), any peer on the
network could connect as ``uns-host-<id>`` or as an edge node's id and push the real host or edge
off its session (issue 13). So a client id has an owner, derived from the role table:

* each role lists the client ids its users own (``client_ids``; templates with ``{username}``,
  ``{group}``, ``{edge}``; a trailing ``*`` matches any rest). By default the ``edge`` role owns
  ``uns-edge-{group}-{edge}`` (the id an edge node derives for itself, same sanitising), the
  ``host`` role owns ``uns-host-*`` and ``uns-adapter-*`` (the MES adapter's UNS link) and
  ``admin`` owns every id;
* ``reserved_client_ids`` (broker.yaml, default ``uns-edge-*``, ``uns-host-*``, ``uns-adapter-*``): an id matching
  one of these may be used *only* by a user whose role owns it;
* any other id is free to use, but a session that an authenticated user holds (connected, or
  persistent with ``clean_session`` off) can be taken over only by the same user, or by a role
  that owns the id. An anonymous session belongs to nobody.

A refused CONNECT gets CONNACK 0x05 "not authorized" and the holder keeps its connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker.errors import UnsBrokerError
from uns.sparkplug.names import MAX_CLIENT_ID, client_id_safe

from .acl import Principal, RoleRules

#: what broker.yaml reserves unless told otherwise: the ids uns-hub's own components use
DEFAULT_RESERVED = ("uns-edge-*", "uns-host-*", "uns-adapter-*")


class ClientIdPatternError(UnsBrokerError, ValueError):
    """A client id pattern or template is unusable."""


def validate_pattern(pattern: str) -> str:
    """A pattern is a literal id, optionally ending in ``*``; ``*`` anywhere else is refused."""
    if not pattern:
        raise ClientIdPatternError("a client id pattern may not be empty")
    if "*" in pattern[:-1]:
        raise ClientIdPatternError(f"client id pattern {pattern!r}: '*' is allowed only at the end")
    return pattern


def pattern_matches(pattern: str, client_id: str) -> bool:
    if pattern.endswith("*"):
        return client_id.startswith(pattern[:-1])
    return client_id == pattern


def fill(template: str, principal: Principal) -> str:
    """The concrete pattern a role template means for one user."""
    values = {"username": principal.username or "", "group": principal.group or "", "edge": principal.edge or ""}
    try:
        filled = template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ClientIdPatternError(f"client id template {template!r}: unknown placeholder {exc}; "
                                   "use {username}, {group} or {edge}") from None
    if filled.endswith("*"):
        return client_id_safe(filled[:-1]) + "*"
    return client_id_safe(filled)[:MAX_CLIENT_ID]


@dataclass(frozen=True, slots=True)
class ClientIdPolicy:
    """``refusal(client_id, new, holder)``: None when ``new`` may connect with the id, else why not."""

    roles: Mapping[str, RoleRules]
    reserved: tuple[str, ...] = DEFAULT_RESERVED

    @classmethod
    def of(cls, roles: Mapping[str, RoleRules], reserved: Iterable[str] = DEFAULT_RESERVED) -> ClientIdPolicy:
        for pattern in reserved:
            validate_pattern(pattern)
        return cls(roles, tuple(reserved))

    def owns(self, principal: Principal, client_id: str) -> bool:
        rules = self.roles.get(principal.role)
        if rules is None:
            return False
        for template in rules.client_ids:
            try:
                if pattern_matches(fill(template, principal), client_id):
                    return True
            except ClientIdPatternError:
                continue
        return False

    def is_reserved(self, client_id: str) -> bool:
        return any(pattern_matches(p, client_id) for p in self.reserved)

    def refusal(self, client_id: str, new: Principal, holder: Principal | None) -> str | None:
        """Why ``new`` may not use ``client_id`` (``holder``: who holds its live or persistent session)."""
        who = f"user {new.username!r} (role {new.role})" if new.username else f"an anonymous client (role {new.role})"
        if self.owns(new, client_id):
            return None
        if self.is_reserved(client_id):
            return f"client id {client_id!r} is reserved (reserved_client_ids) and {who} does not own it"
        if holder is not None and holder.username is not None and holder.username != new.username:
            return f"client id {client_id!r} is held by user {holder.username!r}; {who} may not take it over"
        return None


__all__ = ["DEFAULT_RESERVED", "ClientIdPatternError", "ClientIdPolicy", "fill", "pattern_matches",
           "validate_pattern"]
