"""Configuration of the Sparkplug primary host and its UNS mirror: the contract, as a pydantic model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from uns.isa95 import NamespaceMapping
from uns.mqtt_url import BrokerURL, parse_broker_url
from uns.sparkplug.topic import validate_group_id, validate_id

from .tracker import ALL_CAUSES, RebirthCause


class HostConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``mqtt://[user:pass@]host:port``, ``mqtts://...``, ``ws://...`` (see ``uns.mqtt_url``)
    broker_url: str = "mqtt://127.0.0.1:1883"
    #: the Sparkplug host id: STATE lives on ``spBv1.0/STATE/<host_id>``; unique in the plant
    host_id: str = "mes"
    #: the Sparkplug groups this instance owns (scale-out by group, docs/scaling.md): it subscribes
    #: to ``spBv1.0/<group>/#`` of each, ignores every other group, mirrors and asks rebirths of
    #: these only. Absent: every group (``spBv1.0/#``)
    groups: tuple[str, ...] | None = None
    #: MQTT client id; default ``uns-host-<host_id>``
    client_id: str | None = None
    #: MQTT protocol version; the embedded amqtt broker speaks 3.1.1 only
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    #: MQTT keep-alive, seconds
    keepalive_s: int = Field(30, ge=5, le=3600)
    #: ISA-95 ⇄ Sparkplug id convention used to place metrics in the UNS
    mapping: NamespaceMapping = NamespaceMapping()
    #: root of mirror topics for nodes whose ids do not follow ``mapping``
    fallback_root: str = "sparkplug"
    #: at most one mirror publish per topic per interval; 0 publishes every change (no conflation)
    conflation_interval_ms: int = Field(100, ge=0, le=60_000)
    #: larger Sparkplug payloads are dropped and counted
    max_payload_bytes: int = Field(1 << 20, gt=0)
    #: at most one ``Node Control/Rebirth`` per edge node per this many seconds
    rebirth_throttle_s: float = Field(5.0, ge=0)
    #: what earns a rebirth request (the spec: each trigger should be configurable)
    rebirth_causes: frozenset[RebirthCause] = ALL_CAUSES
    #: Sparkplug "Reorder Timeout": a message ahead of the expected seq waits this long for the
    #: missing ones before the gap earns a rebirth; 0 answers every gap at once (one broker keeps
    #: a node's messages in order; bridged or clustered brokers may not)
    reorder_timeout_ms: int = Field(0, ge=0, le=60_000)
    #: metric names longer than this (UTF-8 bytes) are not mirrored (refused from the birth, counted)
    max_metric_name_bytes: int = Field(1024, ge=16, le=65_000)
    #: metrics one edge node and its devices may declare; further new ones are refused and counted
    max_metrics_per_node: int = Field(10_000, gt=0)
    #: birth churn: more than ``birth_limit`` births of one node within ``birth_window_s`` (NBIRTHs,
    #: and DBIRTHs of a device already born) quarantine it: not mirrored, its tags STALE, alarmed
    birth_limit: int = Field(20, ge=1)
    #: the sliding window ``birth_limit`` counts births in, seconds
    birth_window_s: float = Field(60.0, gt=0)
    #: a quarantined node is let back in after this long without a birth; its next message earns
    #: a rebirth request
    quarantine_quiet_s: float = Field(60.0, gt=0)
    #: metrics a node no longer births are STALE at once; their retained UNS topics are deleted
    #: this long later (unless a birth declares them again). ``null`` keeps them STALE for ever
    retire_grace_s: float | None = Field(300.0, ge=0)
    #: learn nodes from a Sparkplug-aware broker's ``$sparkplug/certificates/#`` births
    use_certificates: bool = True
    #: also mirror ``Node Control/*`` and ``Device Control/*`` metrics
    include_control_metrics: bool = False
    #: QoS of the retained mirror messages. 0 is legitimate for a conflated last-value mirror on a
    #: local broker and costs about half of 1; either way each batch ends with a QoS 1 fence whose
    #: PUBACK confirms it, so a lost connection re-sends what may not have arrived
    mirror_qos: Literal[0, 1] = 1
    #: mirror messages handed to the MQTT client and not yet confirmed; beyond it they conflate
    mirror_window: int = Field(1024, ge=1, le=60_000)
    #: on a clean stop, republish every mirrored tag as STALE before going offline
    stale_on_shutdown: bool = True
    #: bound of each change-stream consumer's queue (oldest dropped beyond it)
    change_stream_size: int = Field(10_000, gt=0)
    #: first reconnect delay; back-off up to reconnect_max_s
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(15.0, gt=0)

    @field_validator("host_id")
    @classmethod
    def _valid_host_id(cls, value: str) -> str:
        return validate_id(value, "host_id")

    @field_validator("groups")
    @classmethod
    def _valid_groups(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one Sparkplug group (leave it out for every group)")
        for group in value:
            validate_group_id(group, "group id")
        repeated = sorted({group for group in value if value.count(group) > 1})
        if repeated:
            raise ValueError(f"group {repeated[0]!r} is listed more than once")
        return value

    def owns_group(self, group_id: str) -> bool:
        """True if this host tracks ``group_id`` (every group when ``groups`` is absent)."""
        return self.groups is None or group_id in self.groups

    @field_validator("broker_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parse_broker_url(value)  # BrokerURLError is a ValueError: pydantic reports it
        return value

    def tracker_options(self) -> dict[str, Any]:
        """The :class:`~.tracker.EdgeTracker` keyword arguments this config sets."""
        return {"rebirth_throttle_ms": int(self.rebirth_throttle_s * 1000),
                "max_payload_bytes": self.max_payload_bytes, "rebirth_causes": self.rebirth_causes,
                "reorder_timeout_ms": self.reorder_timeout_ms, "max_metric_name_bytes": self.max_metric_name_bytes,
                "max_metrics_per_node": self.max_metrics_per_node, "birth_limit": self.birth_limit,
                "birth_window_ms": int(self.birth_window_s * 1000),
                "quarantine_quiet_ms": int(self.quarantine_quiet_s * 1000),
                "retire_grace_ms": None if self.retire_grace_s is None else int(self.retire_grace_s * 1000)}

    @property
    def broker(self) -> BrokerURL:
        return parse_broker_url(self.broker_url)

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"uns-host-{self.host_id}"

    @property
    def mirror_client_id(self) -> str:
        """The UNS mirror's own connection (no Will: STATE stays on the Sparkplug session)."""
        return f"{self.mqtt_client_id}-mirror"
