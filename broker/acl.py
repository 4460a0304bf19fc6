"""Who may publish, subscribe to and receive what: the broker's authorization, with no I/O.

A :class:`Principal` is what authentication proved about a connection (user name, role, and for
an edge node the Sparkplug group/edge it speaks for). A :class:`RoleRules` holds allow and deny
filter templates per action; templates may name ``{username}``, ``{client_id}``, ``{group}`` and
``{edge}``, filled in per principal, and ``{group_path}`` / ``{edge_path}``: the same ids with
``:`` turned into ``/``, which under uns-hub's ISA-95 mapping (``<enterprise>:<site>`` /
``<area>:<line>``) is the line's UNS topic. The rules, stated once:

* **publish** a topic: it matches an allowed publish filter and no denied one.
* **subscribe** a filter: an allowed subscribe filter *covers* it (every topic the filter could
  match is allowed) and no denied filter covers it. A subscription to ``#`` by a role allowed only
  ``spBv1.0/#`` is refused, not silently narrowed.
* **receive** a topic (live *and* retained delivery): it matches an allowed subscribe filter and
  no denied one. This second check is what keeps a wildcard subscription, the ``$sparkplug``
  certificate copies and retained messages inside the policy.

Deny wins over allow. Nothing is allowed that no rule allows. Decisions are memoised per
(principal, action, topic) because the broker asks for every message and every subscriber.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from broker.errors import UnsBrokerError

from .topics import filter_covers, topic_matches, validate_filter


class Action(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    RECEIVE = "receive"


class PolicyError(UnsBrokerError, ValueError):
    """The ACL configuration is wrong (unknown role, bad filter template, missing scope)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """What a connection proved: the user (None when anonymous), its role and Sparkplug scope."""

    username: str | None
    role: str
    client_id: str = ""
    group: str | None = None
    edge: str | None = None


@dataclass(frozen=True, slots=True)
class RoleRules:
    """Filter templates for one role. ``subscribe`` also governs what the role may receive."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()
    #: client ids the role's users own (:mod:`broker.client_ids`); a trailing ``*`` matches any rest
    client_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, publish: Iterable[str] = (), subscribe: Iterable[str] = (),
           deny_publish: Iterable[str] = (), deny_subscribe: Iterable[str] = (),
           client_ids: Iterable[str] = ()) -> RoleRules:
        return cls(tuple(publish), tuple(subscribe), tuple(deny_publish), tuple(deny_subscribe), tuple(client_ids))

    @property
    def needs_edge_scope(self) -> bool:
        return any(p in t for t in self._templates() for p in _SCOPED)

    def _templates(self) -> Iterable[str]:
        return (*self.publish, *self.subscribe, *self.deny_publish, *self.deny_subscribe, *self.client_ids)


@dataclass(frozen=True, slots=True)
class RoleFilters:
    """One principal's rules with its placeholders filled in: concrete MQTT filters."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...]
    deny_subscribe: tuple[str, ...]


_SCOPED = ("{group}", "{edge}", "{group_path}", "{edge_path}")


def _fill(template: str, principal: Principal) -> str:
    values = {
        "username": principal.username or "",
        "client_id": principal.client_id,
        "group": principal.group or "",
        "edge": principal.edge or "",
        "group_path": (principal.group or "").replace(":", "/"),
        "edge_path": (principal.edge or "").replace(":", "/"),
    }
    try:
        return validate_filter(template.format(**values))
    except KeyError as exc:
        raise PolicyError(f"filter template {template!r} names unknown placeholder {exc}; "
                          "use {username}, {client_id}, {group}, {edge}, {group_path} or {edge_path}") from None


@dataclass
class Authorizer:
    """Answers allow/deny for a principal. Roles are fixed at construction; see :mod:`broker.policy`."""

    roles: Mapping[str, RoleRules]
    cache_limit: int = 200_000
    _compiled: dict[Principal, RoleFilters] = field(default_factory=dict, init=False, repr=False)
    _cache: dict[tuple[Principal, Action, str], bool] = field(default_factory=dict, init=False, repr=False)

    def check_principal(self, principal: Principal) -> None:
        """Raise :class:`PolicyError` if this principal can never be authorized (bad role or scope)."""
        self._compile(principal)

    def filters(self, principal: Principal) -> RoleFilters:
        """The filters this principal is judged by (what :mod:`broker.mosquitto_acl` renders);
        :class:`PolicyError` if the role is unknown or needs a scope the principal lacks."""
        return self._compile(principal)

    def allowed(self, principal: Principal, action: Action, topic: str) -> bool:
        key = (principal, action, topic)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        decision = self._decide(principal, action, topic)
        if len(self._cache) >= self.cache_limit:
            self._cache.clear()
        self._cache[key] = decision
        return decision

    def _decide(self, principal: Principal, action: Action, topic: str) -> bool:
        try:
            rules = self._compile(principal)
        except PolicyError:
            return False
        if action is Action.PUBLISH:
            return (any(topic_matches(f, topic) for f in rules.publish)
                    and not any(topic_matches(f, topic) for f in rules.deny_publish))
        if action is Action.RECEIVE:
            return (any(topic_matches(f, topic) for f in rules.subscribe)
                    and not any(topic_matches(f, topic) for f in rules.deny_subscribe))
        return (any(filter_covers(f, topic) for f in rules.subscribe)
                and not any(filter_covers(f, topic) for f in rules.deny_subscribe))

    def _compile(self, principal: Principal) -> RoleFilters:
        compiled = self._compiled.get(principal)
        if compiled is not None:
            return compiled
        rules = self.roles.get(principal.role)
        if rules is None:
            raise PolicyError(f"user {principal.username!r} has role {principal.role!r}, "
                              f"which is not defined (known roles: {', '.join(sorted(self.roles))})")
        if rules.needs_edge_scope and (not principal.group or not principal.edge):
            raise PolicyError(f"user {principal.username!r} has role {principal.role!r}, whose rules name "
                              "{group}/{edge}, but no Sparkplug group/edge is set for the user")
        compiled = RoleFilters(
            tuple(_fill(t, principal) for t in rules.publish),
            tuple(_fill(t, principal) for t in rules.subscribe),
            tuple(_fill(t, principal) for t in rules.deny_publish),
            tuple(_fill(t, principal) for t in rules.deny_subscribe),
        )
        self._compiled[principal] = compiled
        return compiled
