"""The broker's configuration: one YAML file, validated by pydantic, with defaults that run as is.

Example (every key optional; shown with its default unless marked)::

    tcp: {host: 0.0.0.0, port: 1883}        # null disables
    websocket: {host: 0.0.0.0, port: 9001}  # MQTT over WebSocket for browser tools; null disables
    tls:                                     # default null (off)
      host: 0.0.0.0
      port: 8883
      certfile: /etc/uns/broker.crt          # PEM certificate chain
      keyfile: /etc/uns/broker.key           # PEM private key
      cafile: null                           # CA that signs client certificates (optional)
    wss: null                                # same shape as tls, MQTT over WebSocket + TLS
    password_file: /etc/uns/broker-users.yaml   # see broker.passwords; default null
    demo_anonymous: off                      # off | read-only | read-write
    sys_interval: 10                         # seconds between $SYS updates; 0 disables
    roles:                                   # extra roles, or replacements for edge/host/explorer/admin
      historian:
        subscribe: ["spBv1.0/#", "$sparkplug/#"]
        publish: []
    http: {host: null, port: 9101}           # /metrics, /healthz, /readyz; host null = the TCP host; null disables
    reserved_client_ids: [uns-edge-*, uns-host-*, uns-adapter-*]   # only a role owning such an id may use it
    max_packet_size_bytes: 4194304           # a client sending a bigger packet is disconnected
    max_queued_qos0_bytes: 8388608           # QoS 0 to a subscriber this far behind is dropped (counted)

``demo_anonymous`` decides what a client that sends no user name gets: ``off`` refuses it (the
default: a plant broker must not be open), ``read-only`` grants the ``explorer`` role (``uns up``
uses this so anyone on the machine can watch, while the edge node and host log in), and
``read-write`` grants ``admin`` (a throwaway loopback demo or test broker only).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from broker.errors import UnsBrokerError
from uns.commands.yamlsource import ConfigError as YamlConfigError
from uns.commands.yamlsource import YamlSource, problems

from .acl import RoleRules
from .client_ids import DEFAULT_RESERVED, validate_pattern
from .topics import InvalidFilterError, validate_filter

#: the largest MQTT packet a client may send, unless broker.yaml says otherwise (`uns init` writes the
#: same value into the generated mosquitto.conf as ``max_packet_size``, so both brokers behave alike)
DEFAULT_MAX_PACKET_SIZE = 4 * 1024 * 1024
#: unsent bytes per connection above which QoS 0 messages to it are dropped and counted (broker.outbox)
DEFAULT_MAX_QUEUED_QOS0 = 8 * 1024 * 1024


#: a client id, or a client id template of a role; a trailing ``*`` matches any rest (broker.client_ids)
ClientIdPattern = Annotated[str, AfterValidator(validate_pattern)]


class BrokerConfigError(UnsBrokerError, YamlConfigError):
    """The broker configuration is unusable; the message says which key and why (``issues``: one
    ``file:line: field: message`` per problem, as every config loader reports them).

    A :class:`uns.yaml_marks.ConfigError` (so a ``ValueError``): the CLI reports it like every config error."""


class DemoAnonymous(StrEnum):
    OFF = "off"
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listener(_Model):
    """A plain TCP or WebSocket listener."""

    host: str = Field("0.0.0.0", description="address to bind")
    port: int = Field(1883, ge=0, le=65535, description="0 picks a free port (in-process use)")


class TlsListener(Listener):
    """A TLS listener (MQTT over TLS, or WebSocket over TLS); the files must exist."""

    port: int = Field(8883, ge=0, le=65535)
    certfile: Path = Field(..., description="PEM certificate chain of the broker")
    keyfile: Path = Field(..., description="PEM private key")
    cafile: Path | None = Field(None, description="CA that signs client certificates (optional)")

    @model_validator(mode="after")
    def _files_exist(self) -> TlsListener:
        for name in ("certfile", "keyfile", "cafile"):
            value = getattr(self, name)
            if value is not None and not value.is_file():
                raise ValueError(f"{name} {value} does not exist or is not a file")
        return self


class HttpEndpoint(_Model):
    """Where the broker serves ``/metrics``, ``/healthz`` and ``/readyz`` (broker.observability).

    ``host`` defaults to the TCP listener's host (else the first listener's): the scrape endpoint
    is reachable exactly where MQTT is, and a loopback-only broker stays loopback-only.
    """

    host: str | None = Field(None, description="address to bind; default the TCP listener's host")
    port: int = Field(9101, ge=0, le=65535, description="0 picks a free port (in-process use)")


class RoleConfig(_Model):
    """A role: topic filters it may publish / subscribe to; `{group}` and `{edge}` are the user's ids."""

    publish: list[str] = Field(default_factory=list, description="topic filters the role may publish to")
    subscribe: list[str] = Field(default_factory=list, description="topic filters the role may subscribe to")
    deny_publish: list[str] = Field(default_factory=list, description="exceptions to publish")
    deny_subscribe: list[str] = Field(default_factory=list, description="exceptions to subscribe")
    client_ids: list[ClientIdPattern] = Field(
        default_factory=list, description="client ids the role's users own (may take over, may use when reserved); "
                                          "`{username}`, `{group}`, `{edge}`; a trailing `*` matches any rest")

    @field_validator("publish", "subscribe", "deny_publish", "deny_subscribe")
    @classmethod
    def _filters(cls, value: list[str]) -> list[str]:
        for template in value:
            probe = template.replace("{", "").replace("}", "")
            try:
                validate_filter(probe)
            except InvalidFilterError as exc:
                raise ValueError(str(exc)) from None
        return value

    def rules(self) -> RoleRules:
        return RoleRules.of(self.publish, self.subscribe, self.deny_publish, self.deny_subscribe, self.client_ids)


class BrokerSettings(_Model):
    """The embedded broker (`broker.yaml`); at least one listener, and users or anonymous access."""

    tcp: Listener | None = Field(default_factory=Listener, description="MQTT over TCP; null disables")
    websocket: Listener | None = Field(default_factory=lambda: Listener(port=9001),
                                       description="MQTT over WebSocket; null disables")
    tls: TlsListener | None = Field(None, description="MQTT over TLS; off unless set")
    wss: TlsListener | None = Field(None, description="MQTT over WebSocket + TLS; off unless set")
    password_file: Path | None = Field(
        None, description="users from `uns broker passwd`; relative to broker.yaml")
    demo_anonymous: DemoAnonymous = Field(
        DemoAnonymous.OFF, description="clients without a user name: off refuses, read-only gets role explorer, "
                                       "read-write gets role admin")
    sys_interval: float = Field(10.0, ge=0, description="seconds between $SYS updates; 0 disables")
    roles: dict[str, RoleConfig] = Field(
        default_factory=dict, description="extra roles, or replacements for edge/host/explorer/admin")
    http: HttpEndpoint | None = Field(
        default_factory=HttpEndpoint,
        description="Prometheus /metrics and health probes of `uns broker run`; null disables")
    reserved_client_ids: list[ClientIdPattern] = Field(
        default_factory=lambda: list(DEFAULT_RESERVED),
        description="client ids only a user whose role owns them (`roles.<name>.client_ids`) may connect with; "
                    "a trailing `*` matches any rest")
    max_packet_size_bytes: int = Field(
        DEFAULT_MAX_PACKET_SIZE, ge=64, le=268_435_455,
        description="largest MQTT packet a client may send (whole packet); a bigger one closes its connection")
    max_queued_qos0_bytes: int | None = Field(
        DEFAULT_MAX_QUEUED_QOS0, ge=65_536,
        description="bytes written to one TCP/TLS subscriber and not yet sent above which QoS 0 messages to it "
                    "are dropped and counted (uns_broker_qos0_dropped), like Mosquitto's max_queued_bytes; "
                    "QoS 1 is never dropped; null: no limit")

    @field_validator("demo_anonymous", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as False

    @model_validator(mode="after")
    def _usable(self) -> BrokerSettings:
        if not any((self.tcp, self.websocket, self.tls, self.wss)):
            raise ValueError("no listener: enable at least one of tcp, websocket, tls, wss")
        if self.password_file is None and self.demo_anonymous is DemoAnonymous.OFF:
            raise ValueError("nobody could connect: set password_file (users from `uns broker passwd`) "
                             "or demo_anonymous: read-only | read-write")
        return self

    def custom_roles(self) -> dict[str, RoleRules]:
        return {name: role.rules() for name, role in self.roles.items()}

    def http_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the probe endpoint, or None when it is off.

        Resolved here rather than at validation so ``uns broker run --host`` (which changes the
        TCP listener after loading the file) moves the default endpoint with it.
        """
        if self.http is None:
            return None
        if self.http.host is not None:
            return self.http.host, self.http.port
        first = next(listener for listener in (self.tcp, self.websocket, self.tls, self.wss) if listener is not None)
        return first.host, self.http.port


def load_settings(path: Path | None = None, **overrides: Any) -> BrokerSettings:
    """Read the YAML file (if any), apply ``overrides`` (non-None CLI options), validate.

    Errors name ``file:line: field`` for what came from the file and ``command line: field`` for
    an override, one line per problem."""
    data: dict[str, Any] = {}
    source: YamlSource | None = None
    if path is not None:
        if not path.exists():
            raise BrokerConfigError(f"broker config {path} does not exist")
        try:
            source = YamlSource.read(path)
        except YamlConfigError as exc:
            raise BrokerConfigError(f"broker config {exc}", exc.issues) from None
        loaded = source.data
        if loaded is not None and not isinstance(loaded, dict):
            raise BrokerConfigError(f"broker config {path} must be a YAML mapping, got {type(loaded).__name__}")
        data = dict(loaded or {})
        base = path.parent
        for key in ("password_file",):
            if isinstance(data.get(key), str):
                data[key] = str(base / data[key])
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    try:
        return BrokerSettings.model_validate(data)
    except ValidationError as exc:
        def where(loc: tuple[str | int, ...]) -> str:
            return "command line" if source is None or (loc and loc[0] in given) else source.where(loc)

        what = f"broker config {path}" if path else "broker settings"
        issues = problems(exc, where)
        raise BrokerConfigError(f"{what} is invalid:\n  " + "\n  ".join(issues), issues) from None
