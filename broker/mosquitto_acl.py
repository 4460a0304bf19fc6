"""Mosquitto's ``acl_file`` rendered from the role table the embedded broker enforces.

Why: ``uns init`` writes a Mosquitto configuration with the same users as the embedded broker.
A hand-written ACL beside :data:`broker.policy.DEFAULT_ROLES` drifts (it did, for what the
host may publish); rendering it from the same :class:`~broker.acl.RoleRules`, filled per user by
the same :class:`~broker.acl.Authorizer`, says each rule once.

What Mosquitto's file can say, and how the table maps onto it (Mosquitto 2.0):

* ``topic read F`` governs what a client *receives* (live and retained): the embedded broker's
  ``subscribe`` filters. Mosquitto's file does not check the SUBSCRIBE itself (a filter is
  granted, delivery is filtered), where the embedded broker refuses a filter it does not wholly
  allow; on an exact topic both give the same answer.
* ``topic write F`` governs publishing: the ``publish`` filters.
* ``topic deny F`` refuses *every* action on ``F``, so it cannot say "may read but not write".
  A publish rule with a deny cut out of it (the host: everything but the six edge message
  types) is therefore written as the namespaces the deployment uses, minus the denied pieces:
  ``spBv1.0`` split into its message kinds (``STATE`` and the eight node/device types) and each
  UNS root (``uns_roots``: the enterprises the mirror publishes under and its fallback root) as
  ``<root>/#``. Mosquitto is then narrower than the embedded broker only outside those
  namespaces (another UNS root, a message kind that is not Sparkplug); a rule that cannot be
  split this way is a :class:`MosquittoAclError`, never a wider file.
* ``deny_subscribe`` cannot be written at all (a deny would refuse writes too): an error.

Pure: the caller writes the text (``uns init``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from uns.sparkplug.topic import NAMESPACE, MessageType

from .acl import Authorizer, PolicyError, Principal, RoleRules
from .errors import UnsBrokerError
from .topics import filter_covers

SPARKPLUG_ROOT = NAMESPACE
#: node and device message types: ``spBv1.0/<group>/<TYPE>/<edge>[/<device>]`` (the spec's topic namespace)
SPARKPLUG_TYPES = tuple(str(t) for t in MessageType if t is not MessageType.STATE)


class MosquittoAclError(UnsBrokerError, ValueError):
    """The role table says something Mosquitto's ACL file cannot say exactly."""


@dataclass(frozen=True, slots=True)
class AclUser:
    """A broker user as the password file has it: name, role and, for an edge, its Sparkplug scope."""

    username: str
    role: str
    group: str | None = None
    edge: str | None = None


def filters_intersect(a: str, b: str) -> bool:
    """True if some topic matches both filters (MQTT 3.1.1 §4.7, with the ``$`` rule).

    Sparkplug reserves ``spBv1.0/STATE``: a group is never called ``STATE``, so ``spBv1.0/STATE/...``
    and ``spBv1.0/+/<TYPE>/...`` are treated as disjoint (they are different message kinds)."""
    la, lb = a.split("/"), b.split("/")
    if (la[0][:1] == "$" and lb[0] in ("+", "#")) or (lb[0][:1] == "$" and la[0] in ("+", "#")):
        return False
    if la[0] == lb[0] == SPARKPLUG_ROOT and len(la) > 1 and len(lb) > 1 and "STATE" in (la[1], lb[1]) \
            and la[1] != lb[1] and "#" not in (la[1], lb[1]):
        return False
    for index in range(max(len(la), len(lb))):
        x = la[index] if index < len(la) else None
        y = lb[index] if index < len(lb) else None
        if x == "#" or y == "#":
            return True  # '#' also matches its parent level
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


def _split(topic_filter: str, uns_roots: tuple[str, ...]) -> list[str] | None:
    """The next finer pieces of ``topic_filter`` whose union is the deployment's part of it."""
    if topic_filter == "#":
        return [f"{SPARKPLUG_ROOT}/#", *(f"{root}/#" for root in uns_roots)]
    if topic_filter == f"{SPARKPLUG_ROOT}/#":
        return [f"{SPARKPLUG_ROOT}/STATE/#", *(f"{SPARKPLUG_ROOT}/+/{t}/#" for t in SPARKPLUG_TYPES)]
    return None


def write_filters(allow: Iterable[str], deny: Iterable[str], uns_roots: Iterable[str]) -> list[str]:
    """Positive filters for ``allow`` minus ``deny``: each one either wholly allowed or dropped."""
    denied, roots = tuple(deny), tuple(uns_roots)
    out: list[str] = []
    pending = list(allow)
    while pending:
        piece = pending.pop(0)
        if any(filter_covers(d, piece) for d in denied):
            continue
        cut = [d for d in denied if filters_intersect(d, piece)]
        if not cut:
            if piece not in out:
                out.append(piece)
            continue
        finer = _split(piece, roots)
        if finer is None:
            raise MosquittoAclError(f"publish filter {piece!r} minus {cut} cannot be written as Mosquitto ACL "
                                    "lines (a 'topic deny' would refuse reading too)")
        pending[:0] = finer
    return out


def _scope(user: AclUser) -> str:
    return f" (group {user.group}, edge node {user.edge})" if user.group or user.edge else ""


def _lines(authorizer: Authorizer, principal: Principal, uns_roots: tuple[str, ...]) -> list[str]:
    try:
        filters = authorizer.filters(principal)
    except PolicyError as exc:
        raise MosquittoAclError(str(exc)) from None
    if filters.deny_subscribe:
        raise MosquittoAclError(f"role {principal.role!r} denies subscriptions ({', '.join(filters.deny_subscribe)}): "
                                "Mosquitto's ACL file cannot deny reading without denying writing")
    writes = write_filters(filters.publish, filters.deny_publish, uns_roots)
    return [*(f"topic read {f}" for f in filters.subscribe), *(f"topic write {f}" for f in writes)]


def render_acl(roles: Mapping[str, RoleRules], users: Iterable[AclUser], *, anonymous_role: str | None,
               uns_roots: Iterable[str]) -> str:
    """The ``acl_file`` text: anonymous clients' rules first (Mosquitto applies lines before any
    ``user`` line to them), then one block per user."""
    roots = tuple(uns_roots)
    authorizer = Authorizer(dict(roles))
    out = ["# generated by `uns init` from the broker's role table (broker/policy.py, docs/security.md)",
           "# Mosquitto cannot refuse one action where it allows another, so a role that may publish",
           f"# \"everything except ...\" is written as this deployment's namespaces: {SPARKPLUG_ROOT}, "
           + ", ".join(roots)]
    if anonymous_role is not None:
        out += [f"# anonymous clients: role {anonymous_role}",
                *_lines(authorizer, Principal(None, anonymous_role), roots)]
    else:
        out += ["# anonymous clients: nothing"]
    return "\n".join(out) + render_acl_users(roles, users, uns_roots=roots)


def render_acl_users(roles: Mapping[str, RoleRules], users: Iterable[AclUser], *, uns_roots: Iterable[str]) -> str:
    """One block per user (a blank line, the role comment, ``user NAME`` and its topic lines): what
    :func:`render_acl` ends with, and what ``uns up -c`` appends for a user it creates."""
    roots = tuple(uns_roots)
    authorizer = Authorizer(dict(roles))
    out = [""]
    for user in users:
        principal = Principal(user.username, user.role, group=user.group, edge=user.edge)
        out += ["", f"# role {user.role}{_scope(user)}", f"user {user.username}",
                *_lines(authorizer, principal, roots)]
    return "\n".join(out) + "\n"


__all__ = ["SPARKPLUG_ROOT", "SPARKPLUG_TYPES", "AclUser", "MosquittoAclError", "filters_intersect", "render_acl",
           "render_acl_users", "write_filters"]
