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

from uns.sparkplug.topic import NAMESPACE, STATE_FILTER, MessageType

from .acl import RoleRules

_NODE_TYPES = (MessageType.NBIRTH, MessageType.NDEATH, MessageType.NDATA)
_DEVICE_TYPES = (MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA)
_EDGE_TYPES = _NODE_TYPES + _DEVICE_TYPES
#: the templates below keep ``{group}``/``{edge}`` as placeholders the ACL fills in per user
_NODE = NAMESPACE + "/{group}/%s/{edge}"
_DEVICE = _NODE + "/+"
_READ_ALL = ("#", "$SYS/#", "$sparkplug/#")

EDGE = RoleRules.of(
    publish=[_NODE % t for t in _NODE_TYPES] + [_DEVICE % t for t in _DEVICE_TYPES]
    # command results of its own line on the UNS (uns.commands.wire.result_topic)
    + ["{group_path}/{edge_path}/_cmd/#"],
    # its own NDATA/DDATA too: the edge confirms delivery by the broker's echo (edge_node.mqtt_client)
    subscribe=[_NODE % MessageType.NCMD, _DEVICE % MessageType.DCMD, STATE_FILTER,
               _NODE % MessageType.NDATA, _DEVICE % MessageType.DDATA],
    # the id edge_node.sparkplug_config derives for its own node (broker.client_ids)
    client_ids=["uns-edge-{group}-{edge}"],
)
HOST = RoleRules.of(
    publish=["#"],
    deny_publish=[f"{NAMESPACE}/+/{t}/#" for t in _EDGE_TYPES],
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
