"""The default policy for Sparkplug roles, and how configured roles are merged with it.

Roles (used by the password file and ``demo_anonymous``):

``edge``
    An edge node speaking for one Sparkplug ``{group}``/``{edge}`` (set per user). Publishes only
    its own NBIRTH/NDEATH/NDATA and DBIRTH/DDEATH/DDATA (the NDEATH is also its Will; a Will on
    any other topic is refused at CONNECT) and the command results of its own line
    (``<enterprise>/<site>/<area>/<line>/_cmd/...``). Subscribes only to its own NCMD, its devices' DCMD,
    host STATE (tck-id-topics-state: an edge node must watch its primary host) and its own
    NDATA/DDATA (the echo by which it confirms delivery).
``host``
    A (primary) host application / MES adapter. Publishes STATE, NCMD/DCMD to any node and any
    non-Sparkplug topic (the UNS JSON mirror); never edge-node message types, so a host can't
    forge a birth. Reads everything, including ``$SYS`` and ``$sparkplug/certificates``.
``explorer``
    Read-only: MQTT Explorer, dashboards, the read-only demo mode.
``admin``
    Everything a client may do (the broker itself still refuses client publishes to ``$`` topics).

Client ids (:mod:`broker.client_ids`): ``edge`` owns ``uns-edge-{group}-{edge}``, ``host`` owns
``uns-host-*`` and ``uns-adapter-*``, ``admin`` owns every id, ``explorer`` none; an id under
``reserved_client_ids`` (default those three prefixes) may be used only by a user whose role owns it.

This table is also what ``uns init`` writes for Mosquitto (:mod:`broker.mosquitto_acl`): change a
rule here and both brokers follow.
"""

from __future__ import annotations

from collections.abc import Mapping

from .acl import RoleRules

_EDGE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA")
_READ_ALL = ("#", "$SYS/#", "$sparkplug/#")

EDGE = RoleRules.of(
    publish=[f"spBv1.0/{{group}}/{t}/{{edge}}" for t in _EDGE_TYPES[:3]]
    + [f"spBv1.0/{{group}}/{t}/{{edge}}/+" for t in _EDGE_TYPES[3:]]
    # command results of its own line on the UNS (uns.commands.wire.result_topic)
    + ["{group_path}/{edge_path}/_cmd/#"],
    # its own NDATA/DDATA too: the edge confirms delivery by the broker's echo (edge_node.mqtt_client)
    subscribe=["spBv1.0/{group}/NCMD/{edge}", "spBv1.0/{group}/DCMD/{edge}/+", "spBv1.0/STATE/+",
               "spBv1.0/{group}/NDATA/{edge}", "spBv1.0/{group}/DDATA/{edge}/+"],
    # the id edge_node.sparkplug_config derives for its own node (broker.client_ids)
    client_ids=["uns-edge-{group}-{edge}"],
)
HOST = RoleRules.of(
    publish=["#"],
    deny_publish=[f"spBv1.0/+/{t}/#" for t in _EDGE_TYPES],
    subscribe=_READ_ALL,
    # uns-host-<host_id>, its -mirror publisher, and the MES adapter's UNS link uns-adapter-<host_id>
    client_ids=["uns-host-*", "uns-adapter-*"],
)
EXPLORER = RoleRules.of(subscribe=_READ_ALL)
ADMIN = RoleRules.of(publish=["#"], subscribe=_READ_ALL, client_ids=["*"])

DEFAULT_ROLES: Mapping[str, RoleRules] = {
    "edge": EDGE,
    "host": HOST,
    "explorer": EXPLORER,
    "admin": ADMIN,
}

#: what ``demo_anonymous`` grants to a client that sends no user name
DEMO_ROLES: Mapping[str, str] = {"read-only": "explorer", "read-write": "admin"}


def merged_roles(custom: Mapping[str, RoleRules]) -> dict[str, RoleRules]:
    """The default roles with the configured ones added; a configured role replaces a default one."""
    return {**DEFAULT_ROLES, **custom}
