"""Configuration of the edge node's Sparkplug B side: brokers, ids, timing, store-and-forward.

The top-level edge config (``plant.yaml``, :mod:`edge_node.config`) embeds these fields under
``sparkplug:``; ``group_id`` and ``edge_node_id`` default from the ISA-95 line there, or from
:meth:`EdgeSparkplugConfig.for_line` here. Every field has a default that works for one line on a
loopback broker, so a minimal config is just ``brokers``. Unknown keys are errors (a typo such as
``publish_interval`` must not silently fall back to a default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from uns.isa95 import EquipmentPath, LinePath, NamespaceMapping
from uns.mqtt_url import BrokerURL, parse_broker_url
from uns.sparkplug.names import MAX_CLIENT_ID, client_id_safe
from uns.sparkplug.topic import validate_id

__all__ = ["EdgeSparkplugConfig", "StoreConfig", "FullPolicy"]

FullPolicy = Literal["drop_oldest", "reject_new"]


class StoreConfig(BaseModel):
    """The store-and-forward buffer (one SQLite file in the data directory, with the bdSeq)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(Path("sparkplug-store.sqlite"), description="relative to the edge node's data dir")
    max_values: int = Field(5_000_000, ge=1, description="buffered metric values kept at most")
    full_policy: FullPolicy = Field(
        "drop_oldest",
        description="when full: drop_oldest deletes the oldest buffered values to make room (the plant "
                    "keeps running and recent data wins); reject_new refuses the new values. "
                    "Either way a counter says how many were lost.")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        "FULL",
        description="SQLite synchronous mode in WAL: FULL fsyncs every commit (one per publish interval) "
                    "and survives power loss; NORMAL survives a process kill but may lose the last "
                    "commits on an OS crash or power cut")
    replay_values_per_tick: int = Field(
        10_000, ge=1, description="historical values sent per publish interval at most (pacing)")
    replay_max_in_flight: int = Field(
        50_000, ge=1, description="historical values published but not yet confirmed, at most")


class EdgeSparkplugConfig(BaseModel):
    """One Sparkplug B 3.0 edge node session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    brokers: list[str] = Field(
        default_factory=lambda: ["mqtt://127.0.0.1:1883"], min_length=1,
        description="broker URLs in failover order (mqtt://, mqtts://, ws://, wss://)")
    #: Sparkplug group id; in plant.yaml defaults to <enterprise>:<site>
    group_id: str
    #: Sparkplug edge node id; in plant.yaml defaults to <area>:<line> (or mapping.gateway_id)
    edge_node_id: str
    primary_host_id: str | None = Field(
        None, description="wait for this host's STATE online before birthing; buffer while it is offline")
    mqtt_version: Literal["5", "3.1.1"] = Field(
        "3.1.1", description="3.1.1 works with every broker (the embedded amqtt speaks only 3.1.1); 5 needs "
                             "Mosquitto/EMQX/HiveMQ")
    client_id: str | None = Field(None, description="MQTT client id; default uns-edge-<group>-<edge>")
    publish_interval_ms: int = Field(100, ge=1, le=60_000, description="changes are batched per interval")
    max_metrics_per_message: int = Field(1000, ge=1, le=100_000, description="larger batches are split")
    rebirth_throttle_s: float = Field(5.0, ge=0, description="at most one rebirth per this many seconds")
    keepalive_s: int = Field(15, ge=1, le=65_535, description="MQTT keep-alive")
    connect_timeout_s: float = Field(10.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay (back-off up to reconnect_max_s)")
    reconnect_max_s: float = Field(30.0, gt=0)
    reconnect_jitter: float = Field(
        0.5, ge=0, le=1, description="each delay is scaled by a random factor in [1-jitter, 1]")
    confirm_delivery: bool = Field(
        True,
        description="subscribe to our own NDATA/DDATA so a value counts as delivered only once the "
                    "broker routed it; values unconfirmed at a connection loss are re-sent as historical")
    host_loss_resend_s: float = Field(
        2.0, ge=0, le=600,
        description="with primary_host_id: when the host's STATE goes offline, the values the broker confirmed "
                    "in the last this many seconds are stored again and reach the host's next run as historical "
                    "(a killed host loses what it had received but not yet stored; it keeps one of each value). "
                    "0: off. Raise it to the host's keep-alive x 1.5 to cover a host machine that vanishes "
                    "without closing its connection")
    shutdown_timeout_s: float = Field(5.0, gt=0, description="time allowed for the NDEATH and disconnect at stop")
    first_birth_wait_s: float = Field(
        3.0, ge=0, le=60,
        description="at start, the first NBIRTH waits up to this long for the OPC UA endpoints with node-level "
                    "tags to be read, so it carries their values instead of nulls (0: birth at once)")
    store: StoreConfig = Field(default_factory=StoreConfig)

    @field_validator("mqtt_version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if value in (5, 5.0, "5.0"):
            return "5"
        if value in (3.11, 311, "311", 4, "4"):
            return "3.1.1"
        return value

    @field_validator("brokers")
    @classmethod
    def _valid_brokers(cls, value: list[str]) -> list[str]:
        for url in value:
            parse_broker_url(url)  # BrokerURLError is a ValueError: pydantic reports it at the field
        return value

    @field_validator("group_id", "edge_node_id", "primary_host_id")
    @classmethod
    def _valid_id(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else validate_id(value, info.field_name)

    @model_validator(mode="after")
    def _check(self) -> EdgeSparkplugConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s}) < reconnect_min_s ({self.reconnect_min_s})")
        return self

    # -- derived ----------------------------------------------------------------------------

    @property
    def broker_urls(self) -> list[BrokerURL]:
        return [parse_broker_url(url) for url in self.brokers]

    @property
    def mqtt_client_id(self) -> str:
        if self.client_id:
            return self.client_id
        raw = f"uns-edge-{self.group_id}-{self.edge_node_id}"
        return client_id_safe(raw)[:MAX_CLIENT_ID]

    def store_path(self, data_dir: Path) -> Path:
        return self.store.path if self.store.path.is_absolute() else data_dir / self.store.path

    @classmethod
    def for_line(cls, line: LinePath, mapping: NamespaceMapping | None = None, **fields: Any) -> EdgeSparkplugConfig:
        """Ids from the ISA-95 line (``group_id=<enterprise>:<site>``, ``edge_node_id=<area>:<line>``)."""
        ids = (mapping or NamespaceMapping()).to_sparkplug(EquipmentPath(line=line))
        return cls.model_validate({"group_id": ids.group_id, "edge_node_id": ids.edge_node_id, **fields})
