"""The edge node's tag map: which OPC UA servers to read, which nodes, and where they land in the UNS.

One YAML file (``plant.yaml``) describes one edge node: its ISA-95 line, the Sparkplug session
(:class:`edge_node.sparkplug_config.EdgeSparkplugConfig`), the OPC UA endpoints with their security,
and every tag. The models are the contract (``extra="forbid"`` everywhere, so a typo is an error,
not a silently ignored key) and :func:`load_edge_config` turns pydantic's errors into
``plant.yaml:23: tags[4].deadband: ...`` so an integrator can fix the file without reading code.

Rules a single field cannot check (a tag names an unknown endpoint, two tags publish the same
metric, a device is fed by two servers) are checked in :meth:`EdgeConfig._references` and
reported at the offending field's line as well.
"""

from __future__ import annotations

import math
import os
import re
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_node.errors import EdgeError
from uns.isa95 import LinePath, MappingMode, NamespaceMapping, validate_isa95_name
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import InvalidIdError
from uns.yaml_marks import (
    ConfigError,
    Loc,
    MarkedDocument,
    error_message,
    format_loc,
    load_marked_file,
    load_marked_yaml,
)

__all__ = [
    "AlarmConditionConfig", "AlarmsConfig", "CommandsConfig", "ConfigError",
    "Deadband", "DeadbandKind", "EdgeConfig", "HttpEndpointConfig",
    "OpcUaCredentials", "OpcUaEndpointConfig", "SecurityMode", "SecurityProfile",
    "SecurityPolicy", "TagConfig", "UNIT_CONVERSIONS", "build_sparkplug_config", "load_edge_config",
    "parse_edge_config",
]

#: Sparkplug datatypes a tag may publish (scalars the validation stage knows how to coerce)
SCALAR_TAG_TYPES: frozenset[DataType] = frozenset({
    DataType.Boolean, DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64,
    DataType.UInt8, DataType.UInt16, DataType.UInt32, DataType.UInt64, DataType.Float,
    DataType.Double, DataType.String, DataType.Text, DataType.DateTime, DataType.UUID,
})
#: a structured variable (Template) or an array of structures (DataSet): docs/templates.md
STRUCTURE_TAG_TYPES: frozenset[DataType] = frozenset({DataType.Template, DataType.DataSet})
NUMERIC_TAG_TYPES: frozenset[DataType] = frozenset(
    dt for dt in SCALAR_TAG_TYPES if dt.is_integer or dt in (DataType.Float, DataType.Double)
)

#: Named linear unit conversions: ``"from->to": (scale, offset)`` with ``y = x * scale + offset``
UNIT_CONVERSIONS: dict[str, tuple[float, float]] = {
    "degF->degC": (5 / 9, -32 * 5 / 9),
    "degC->degF": (9 / 5, 32.0),
    "K->degC": (1.0, -273.15),
    "degC->K": (1.0, 273.15),
    "bar->kPa": (100.0, 0.0),
    "kPa->bar": (0.01, 0.0),
    "psi->kPa": (6.894757293168361, 0.0),
    "psi->bar": (0.06894757293168361, 0.0),
    "mbar->bar": (0.001, 0.0),
    "mm->m": (0.001, 0.0),
    "m->mm": (1000.0, 0.0),
    "in->mm": (25.4, 0.0),
    "ms->s": (0.001, 0.0),
    "s->ms": (1000.0, 0.0),
    "min->s": (60.0, 0.0),
    "h->s": (3600.0, 0.0),
    "g->kg": (0.001, 0.0),
    "lb->kg": (0.45359237, 0.0),
    "L/min->m3/h": (0.06, 0.0),
    "gal/min->L/min": (3.785411784, 0.0),
    "rpm->rad/s": (2 * math.pi / 60, 0.0),
    "percent->fraction": (0.01, 0.0),
    "fraction->percent": (100.0, 0.0),
}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSET = object()  # "not remembered yet" in EdgeConfig.device_of_cell (None is a valid device id)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecurityPolicy(StrEnum):
    NONE = "None"
    BASIC256SHA256 = "Basic256Sha256"


class SecurityMode(StrEnum):
    NONE = "None"
    SIGN = "Sign"
    SIGN_AND_ENCRYPT = "SignAndEncrypt"


class SecurityProfile(StrEnum):
    """How strict the edge is about OPC UA security (docs/security.md "OPC UA security").

    ``production`` (the default of a hand-written plant config) refuses what a plant must not run
    by accident: an endpoint with security policy/mode None, a secure endpoint without a trust list,
    a trust_dir that does not exist; each can only be allowed per endpoint, in the file, where a
    reviewer sees it. ``demo`` (what `uns init` writes for the simulated line) accepts them.
    """

    DEMO = "demo"
    PRODUCTION = "production"


class OpcUaCredentials(_Strict):
    """A user name and its password (in the file, or read from the environment at connect time)."""

    username: str = Field(..., min_length=1, description="OPC UA user name")
    #: password in the file (prefer password_env)
    password: str | None = None
    password_env: str | None = Field(None, description="read the password from this environment variable")

    @model_validator(mode="after")
    def _one_password(self) -> OpcUaCredentials:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self

    def resolved_password(self, endpoint: str) -> str | None:
        """The password, reading ``password_env`` at connect time (so secrets stay out of the file)."""
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"endpoint {endpoint!r}: environment variable {self.password_env} is not set")
            return value
        return self.password


class AlarmConditionConfig(_Strict):
    """One OPC UA condition the edge node publishes as the metric group ``Alarms/<name>/...`` of a cell.

    Declared here, not discovered, so every birth declares the same metrics (aliases stay stable
    and a host sees a never-raised condition as inactive instead of missing); a condition event
    that matches no entry is counted and logged once, not published (docs/alarms.md)."""

    cell: str = Field(..., description="ISA-95 cell = Sparkplug device the condition belongs to (has tags on this "
                                       "endpoint)")
    name: str = Field(..., description="the event's ConditionName (TemperatureAlarm, Jam, ...); the metric folder")
    source_name: str | None = Field(
        None, description="the event's SourceName that identifies the cell; unset = the cell's name")
    source_node: str | None = Field(
        None, description="match the event's SourceNode (ns=2;s=... or nsu=<uri>;s=...) instead of SourceName")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"condition name {value!r}: letters, digits, '_', '-', '.' only (max 64); it becomes "
                             "the metric folder Alarms/<name>/")
        return value


class AlarmsConfig(_Strict):
    """OPC UA Alarms & Conditions of one endpoint: where to subscribe to events and which conditions to publish."""

    notifiers: list[str] = Field(
        default_factory=lambda: ["i=2253"],
        description="nodes to subscribe to events on (EventNotifier); default the Server object i=2253")
    conditions: list[AlarmConditionConfig] = Field(..., min_length=1, description="the conditions published")
    refresh_timeout_s: float = Field(
        10.0, gt=0, le=300,
        description="ConditionRefresh after every (re)connect must end (RefreshEndEvent) within this; else the "
                    "session is dropped and retried")


class OpcUaEndpointConfig(_Strict):
    """One OPC UA server session. Several devices (cells) may share it; a device uses only one."""

    name: str = Field("default", description="id tags use in their `endpoint` field")
    url: str = Field(..., description="opc.tcp://host:port[/path]")
    #: None, or Basic256Sha256 (then security_mode is Sign or SignAndEncrypt)
    security_policy: SecurityPolicy = SecurityPolicy.NONE
    #: None with policy None; Sign or SignAndEncrypt with Basic256Sha256
    security_mode: SecurityMode = SecurityMode.NONE
    certificate: Path | None = Field(
        None, description="client certificate (DER); generated with its key on first run if absent")
    private_key: Path | None = Field(None, description="client private key (PEM)")
    trust_dir: Path | None = Field(
        None, description="directory of trusted server certificates (DER/PEM); required by security_profile "
                          "production for a secure endpoint; unset in demo = trust any server")
    allow_insecure: bool = Field(
        False, description="security_profile production: allow security policy/mode None on this endpoint")
    trust_unknown_server_certificates: bool = Field(
        False, description="accept a server certificate that is not in trust_dir (logged with its thumbprint)")
    #: application URI of the client; written into a generated client certificate
    application_uri: str = "urn:uns-hub:edge-node"
    #: user name for the session; unset = anonymous
    username: str | None = None
    #: password in the file (prefer password_env)
    password: str | None = None
    password_env: str | None = Field(None, description="read the password from this environment variable")
    write_credentials: OpcUaCredentials | None = Field(
        None, description="OPC UA user of the command write session; unset = the read account (username)")
    timeout_s: float = Field(4.0, gt=0, le=120, description="per-request timeout")
    session_timeout_s: float = Field(60.0, gt=0, le=3600, description="OPC UA session timeout asked of the server")
    publishing_interval_ms: float = Field(100.0, gt=0, le=60_000, description="publishing interval of the subscription")
    sampling_interval_ms: float = Field(
        100.0, ge=-1, le=3_600_000, description="default for tags; 0 = fastest, -1 = publishing interval")
    queue_size: int = Field(
        1, ge=1, le=10_000,
        description="server-side queue per monitored item: 1 = the newest value per publishing interval "
                    "(the server conflates faster changes); raise it when every change of a fast tag matters")
    keepalive_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often the watchdog reads ServerStatus/State")
    reconnect_min_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay; doubles up to reconnect_max_s")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="longest reconnect delay")
    queue_maxsize: int = Field(
        0, ge=0, description="notification queue; 0 = 20 x tag count (min 10000), never silently dropped")
    server_deadband: bool = Field(
        True, description="ask the server to apply deadbands (DataChangeFilter); client-side always applies too")
    alarms: AlarmsConfig | None = Field(
        None, description="subscribe to OPC UA Alarms & Conditions events (docs/alarms.md); absent = no events")
    type_check_interval_s: float | None = Field(
        60.0, gt=0, le=86_400,
        description="with Template/DataSet tags: how often the types are read again while connected, so a "
                    "changed structure or object type rebirths the node without a reconnect (docs/templates.md); "
                    "null = only at each connect")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"endpoint name {value!r}: letters, digits, '_', '-', '.' only (max 64)")
        return value

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not re.match(r"^opc\.tcp://[^/\s:]+(:\d{1,5})?(/\S*)?$", value):
            raise ValueError(f"{value!r} is not an opc.tcp://host[:port][/path] URL")
        return value

    @model_validator(mode="after")
    def _consistent_security(self) -> OpcUaEndpointConfig:
        none_policy = self.security_policy is SecurityPolicy.NONE
        none_mode = self.security_mode is SecurityMode.NONE
        if none_policy != none_mode:
            raise ValueError(
                "security_policy and security_mode go together: both None, or Basic256Sha256 with "
                "Sign or SignAndEncrypt")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key are given together (or both left out to generate)")
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        if (self.password is not None or self.password_env is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def secure(self) -> bool:
        return self.security_policy is not SecurityPolicy.NONE

    def resolved_password(self) -> str | None:
        """The password, reading ``password_env`` at connect time (so secrets stay out of the file)."""
        credentials = self.read_credentials()
        return credentials.resolved_password(self.name) if credentials is not None else None

    def read_credentials(self) -> OpcUaCredentials | None:
        """The subscription session's user (None = anonymous)."""
        if self.username is None:
            return None
        # already validated as fields of this endpoint
        return OpcUaCredentials.model_construct(username=self.username, password=self.password,
                                                password_env=self.password_env)

    def writer_credentials(self) -> OpcUaCredentials | None:
        """The command write session's user: ``write_credentials``, else the read account."""
        return self.write_credentials if self.write_credentials is not None else self.read_credentials()


class DeadbandKind(StrEnum):
    ABSOLUTE = "absolute"
    PERCENT = "percent"


class Deadband(_Strict):
    """Report-by-exception threshold, in engineering (scaled) units or percent of the engineering range."""

    #: absolute (engineering units) or percent (of eng_high - eng_low)
    kind: DeadbandKind = DeadbandKind.ABSOLUTE
    value: float = Field(..., ge=0, description="changes smaller than this are not reported")

    @model_validator(mode="after")
    def _percent_range(self) -> Deadband:
        if self.kind is DeadbandKind.PERCENT and self.value > 100:
            raise ValueError("a percent deadband is 0..100")
        return self


def _parse_deadband(value: Any) -> Any:
    """Accept ``0.5`` (absolute), ``"2%"`` (percent of range) or ``{kind, value}``."""
    if value is None or isinstance(value, Deadband | dict):
        return value
    if isinstance(value, bool):
        raise ValueError("deadband is a number, 'N%' or {kind, value}, not a boolean")
    if isinstance(value, int | float):
        return {"kind": "absolute", "value": value}
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.endswith("%"):
                return {"kind": "percent", "value": float(text[:-1])}
            return {"kind": "absolute", "value": float(text)}
        except ValueError:
            raise ValueError(f"deadband {value!r} is not a number or 'N%'") from None
    raise ValueError(f"deadband {value!r} is not a number, 'N%' or {{kind, value}}")


class OutOfRangeAction(StrEnum):
    """What the edge does with a value outside the tag's engineering range."""

    BAD = "bad"
    CLAMP = "clamp"
    DROP = "drop"


class TagConfig(_Strict):
    """One OPC UA variable and the Sparkplug metric it becomes."""

    node_id: str = Field(..., description="ns=2;s=Line1/Filler/Speed, i=2258 or nsu=<uri>;s=...")
    metric: str = Field(..., description="metric name, '/' folders allowed (Speed, Drive/Current)")
    cell: str | None = Field(None, description="ISA-95 cell = Sparkplug device; None = node-level (line) metric")
    endpoint: str | None = Field(None, description="endpoint name; may be left out when there is one endpoint")
    #: Sparkplug datatype by name: Boolean, Int8..Int64, UInt8..UInt64, Float, Double, String, Text, DateTime, UUID;
    #: Template for a structured variable, DataSet for an array of structures (the type is read from the server)
    datatype: DataType = DataType.Double
    #: engineering unit, sent in the birth as the engUnit property
    unit: str | None = None
    #: sent in the birth as metadata.description
    description: str | None = None
    #: informational (`uns edge browse` sets it from the access level); only the allowlist permits writes
    writable: bool = False
    #: value = raw * scale + offset
    scale: float = 1.0
    #: value = raw * scale + offset
    offset: float = 0.0
    convert: str | None = Field(None, description=f"named unit conversion, one of {sorted(UNIT_CONVERSIONS)}")
    eng_low: float | None = Field(
        None, description="engineering range low (after scaling); below = out of range (see on_out_of_range)")
    eng_high: float | None = Field(
        None, description="engineering range high (after scaling); above = out of range (see on_out_of_range)")
    on_out_of_range: OutOfRangeAction = Field(
        OutOfRangeAction.BAD,
        description="a value outside [eng_low, eng_high]: bad = published as BAD (null value, QualityReason "
                    "out_of_range, RawValue); clamp = the range limit as UNCERTAIN; drop = not published (counted)")
    max_age_s: float | None = Field(
        None, gt=0, description="no sample (change or heartbeat) for this long: the tag turns STALE "
                                "(value kept, QualityReason max_age) until the next sample; unset = never")
    frozen_after_s: float | None = Field(
        None, gt=0, description="the value has not changed for this long: the tag turns UNCERTAIN (value kept, "
                                "QualityReason frozen) until it changes; unset = never (only for values that move)")
    max_source_age_s: float | None = Field(
        None, gt=0, description="overrides the edge's max_source_age_s for this tag")
    #: 0.5 (absolute), "2%" (percent of the engineering range) or {kind, value}; numeric tags only
    deadband: Deadband | None = None
    sampling_interval_ms: float | None = Field(
        None, ge=-1, le=3_600_000, description="overrides the endpoint's sampling_interval_ms for this tag")

    @field_validator("node_id")
    @classmethod
    def _valid_node_id(cls, value: str) -> str:
        from asyncua import ua  # local: keeps `uns edge --help` fast

        try:
            ua.NodeId.from_string(value)
        except Exception:  # asyncua raises several types for a malformed string
            raise ValueError(f"{value!r} is not an OPC UA NodeId string (ns=2;s=..., i=..., nsu=...;s=...)") from None
        return value

    @field_validator("metric")
    @classmethod
    def _valid_metric(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or "//" in value:
            raise ValueError(f"metric {value!r}: use '/' only between folder names")
        if any(ch in value for ch in "+#\x00") or value != value.strip():
            raise ValueError(f"metric {value!r} contains '+', '#', NUL or outer whitespace")
        if value.split("/")[0].startswith(("_", "$")):
            raise ValueError(f"metric {value!r} starts with '_' or '$', reserved in the UNS")
        return value

    @field_validator("cell")
    @classmethod
    def _valid_cell(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_isa95_name(value, "cell")
        except InvalidIdError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("datatype", mode="before")
    @classmethod
    def _datatype_by_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = DataType[value]
            except KeyError:
                names = ", ".join(sorted(dt.name for dt in SCALAR_TAG_TYPES))
                raise ValueError(f"unknown datatype {value!r}; one of {names}") from None
        return value

    @field_validator("datatype")
    @classmethod
    def _scalar(cls, value: DataType) -> DataType:
        if value not in SCALAR_TAG_TYPES and value not in STRUCTURE_TAG_TYPES:
            raise ValueError(f"datatype {value.name} is not supported for tags (scalars, or Template for a "
                             "structured variable, DataSet for an array of structures)")
        return value

    @field_validator("deadband", mode="before")
    @classmethod
    def _deadband_shorthand(cls, value: Any) -> Any:
        return _parse_deadband(value)

    @field_validator("convert")
    @classmethod
    def _known_conversion(cls, value: str | None) -> str | None:
        if value is not None and value not in UNIT_CONVERSIONS:
            raise ValueError(f"unknown conversion {value!r}; one of {', '.join(sorted(UNIT_CONVERSIONS))}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TagConfig:
        numeric = self.datatype in NUMERIC_TAG_TYPES
        if self.convert is not None and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError("give either convert or scale/offset, not both")
        if not numeric:
            if self.has_scaling:
                raise ValueError(f"scaling needs a numeric datatype, not {self.datatype.name}")
            if self.deadband is not None:
                raise ValueError(f"a deadband needs a numeric datatype, not {self.datatype.name}")
            if self.eng_low is not None or self.eng_high is not None:
                raise ValueError(f"an engineering range needs a numeric datatype, not {self.datatype.name}")
        if self.scale == 0:
            raise ValueError("scale 0 would make every value the offset")
        if self.eng_low is not None and self.eng_high is not None and self.eng_low > self.eng_high:
            raise ValueError(f"eng_low {self.eng_low} is above eng_high {self.eng_high}")
        if self.deadband is not None and self.deadband.kind is DeadbandKind.PERCENT and (
                self.eng_low is None or self.eng_high is None):
            raise ValueError("a percent deadband needs eng_low and eng_high (percent of the engineering range)")
        return self

    @property
    def has_scaling(self) -> bool:
        return self.convert is not None or self.scale != 1.0 or self.offset != 0.0

    @property
    def linear(self) -> tuple[float, float]:
        """``(scale, offset)`` with ``value = raw * scale + offset``."""
        if self.convert is not None:
            return UNIT_CONVERSIONS[self.convert]
        return self.scale, self.offset

    @property
    def deadband_abs(self) -> float | None:
        """The deadband in engineering units (percent resolved against the engineering range)."""
        if self.deadband is None:
            return None
        if self.deadband.kind is DeadbandKind.ABSOLUTE:
            return self.deadband.value
        assert self.eng_low is not None and self.eng_high is not None
        return self.deadband.value / 100.0 * (self.eng_high - self.eng_low)


class CommandsConfig(_Strict):
    """Commands to the plant floor (the edge-side executor, :mod:`edge_node.commands.executor`).

    Without this section every NCMD/DCMD is refused (``not_allowlisted``) and audited: nothing
    writes to a PLC unless an allowlist says so.
    """

    allowlist: Path | None = Field(None, description="allowlist YAML (uns.commands.allowlist); none = refuse all")
    users: Path | None = Field(None, description="user registry YAML (public keys of the signers)")
    audit_db: Path | None = Field(None, description="the edge's audit chain; default <data_dir>/audit/commands.db")
    audit_witness: Path | None = Field(None, description="JSON-lines file that receives every signed checkpoint")

    @model_validator(mode="after")
    def _users_with_allowlist(self) -> CommandsConfig:
        if self.allowlist is not None and self.users is None:
            raise ValueError("an allowlist needs a user registry ('users') to check signatures against")
        return self


class HttpEndpointConfig(_Strict):
    """Where the edge node serves ``/metrics``, ``/healthz`` and ``/readyz`` (edge_node.observability).

    Loopback by default: the endpoint has no authentication, so exposing it beyond the machine
    (``host: 0.0.0.0`` in a container) is a deliberate choice of the deployment.
    """

    host: str = Field("127.0.0.1", description="address to bind; 0.0.0.0 for a container")
    port: int | None = Field(9102, ge=0, le=65535,
                             description="null disables the endpoint; 0 picks a free port (tests, in-process use)")


class EdgeConfig(_Strict):
    """Everything one edge node needs: placement, Sparkplug session, OPC UA servers and tags."""

    #: the ISA-95 line this edge node serves: {enterprise, site, area, line}
    line: LinePath
    #: ISA-95 to Sparkplug id convention (line-per-edge-node, or gateway)
    mapping: NamespaceMapping = Field(default_factory=NamespaceMapping)
    data_dir: Path = Field(Path("data/edge"),
                           description="state (certificates, store-and-forward); relative to the file")
    sparkplug: dict[str, Any] = Field(
        default_factory=dict,
        description="EdgeSparkplugConfig fields; group_id/edge_node_id default from line + mapping")
    opcua: list[OpcUaEndpointConfig] = Field(..., min_length=1, description="the OPC UA servers to read")
    tags: list[TagConfig] = Field(..., min_length=1, description="the tag map: one entry per published metric")
    future_tolerance_ms: int = Field(
        1000, ge=0, description="a SourceTimestamp more than this ahead of our clock is flagged FutureTimestamp")
    max_source_age_s: float = Field(
        86_400.0, gt=0,
        description="a live change whose SourceTimestamp is older than this is flagged OldTimestamp "
                    "(UNCERTAIN, QualityReason old_timestamp); values read at (re)connect are exempt")
    #: root log level set by `uns edge run` after loading the file; unset = the CLI's --log-level
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    security_profile: SecurityProfile = Field(
        SecurityProfile.PRODUCTION,
        description="production: refuse OPC UA policy None and unknown server certificates unless an endpoint "
                    "allows them; demo: accept them (what `uns init` writes for the simulator)")
    quality_alarms: bool = Field(
        False, description="publish the edge's own data-quality events (Bad episode, out of range, stale) of every "
                           "tag of a cell as alarms Alarms/DataQuality/<metric>/<Kind>/... (docs/alarms.md); nine "
                           "metrics per tag and kind in the birth, hence off by default")
    commands: CommandsConfig | None = Field(None, description="command executor; absent = refuse every command")
    #: (mapping, line, cell -> device id) remembered by :meth:`device_of_cell`
    _device_ids: tuple[NamespaceMapping, LinePath, dict[str | None, str | None]] | None = PrivateAttr(None)
    http: HttpEndpointConfig | None = Field(
        None, description="Prometheus /metrics and health probes; absent or null = not served")

    @model_validator(mode="after")
    def _check_references(self) -> EdgeConfig:
        issues = self._references()
        if issues:
            raise ReferenceIssuesError(issues)
        return self

    def _references(self) -> list[tuple[Loc, str]]:
        issues: list[tuple[Loc, str]] = []
        names = [ep.name for ep in self.opcua]
        for i, name in enumerate(names):
            if name in names[:i]:
                issues.append((("opcua", i, "name"), f"duplicate endpoint name {name!r}"))
        if self.mapping.mode is MappingMode.GATEWAY and not self.mapping.gateway_id:
            issues.append((("mapping", "gateway_id"), "gateway mode needs gateway_id"))
        seen_metric: dict[tuple[str | None, str], int] = {}
        device_endpoint: dict[str, tuple[str, int]] = {}
        for i, tag in enumerate(self.tags):
            endpoint = tag.endpoint
            if endpoint is None:
                if len(names) > 1:
                    issues.append(((("tags", i, "endpoint")),
                                   f"several endpoints are configured ({', '.join(names)}): name one"))
                    continue
                endpoint = names[0]
            elif endpoint not in names:
                issues.append((("tags", i, "endpoint"), f"unknown endpoint {endpoint!r}; known: {', '.join(names)}"))
                continue
            key = (tag.cell, tag.metric)
            if key in seen_metric:
                issues.append((("tags", i, "metric"),
                               f"metric {tag.metric!r} of cell {tag.cell!r} is already tags[{seen_metric[key]}]"))
            else:
                seen_metric[key] = i
            if tag.cell is not None:
                first = device_endpoint.setdefault(tag.cell, (endpoint, i))
                if first[0] != endpoint:
                    issues.append((("tags", i, "endpoint"),
                                   f"cell {tag.cell!r} already reads endpoint {first[0]!r} (tags[{first[1]}]); "
                                   "a device is born and dies with one server"))
        issues.extend(self._alarm_issues(device_endpoint, seen_metric))
        issues.extend(self._security_profile_issues())
        return issues

    def _alarm_issues(self, device_endpoint: dict[str, tuple[str, int]],
                      seen_metric: dict[tuple[str | None, str], int]) -> list[tuple[Loc, str]]:
        """A condition's cell must be a device of its endpoint (it is born and dies with it)."""
        issues: list[tuple[Loc, str]] = []
        for i, ep in enumerate(self.opcua):
            if ep.alarms is None:
                continue
            seen: dict[tuple[str, str], int] = {}
            source_cell: dict[str, str] = {}  # a source identifies one cell, or events could not be placed
            for j, condition in enumerate(ep.alarms.conditions):
                loc: Loc = ("opcua", i, "alarms", "conditions", j)
                source = (f"source_node {condition.source_node!r}" if condition.source_node is not None
                          else f"source_name {condition.source_name or condition.cell!r}")
                other = source_cell.setdefault(source, condition.cell)
                if other != condition.cell:
                    issues.append(((*loc, "cell"), f"{source} already identifies cell {other!r}"))
                owner = device_endpoint.get(condition.cell)
                if owner is None or owner[0] != ep.name:
                    issues.append(((*loc, "cell"), f"cell {condition.cell!r} has no tags on endpoint {ep.name!r}; "
                                                   "a condition is published under a device of its endpoint"))
                key = (condition.cell, condition.name)
                if key in seen:
                    issues.append(((*loc, "name"), f"condition {condition.name!r} of cell {condition.cell!r} is "
                                                   f"already conditions[{seen[key]}]"))
                seen.setdefault(key, j)
                clash = [m for (cell, m) in seen_metric if cell == condition.cell
                         and m.startswith(f"Alarms/{condition.name}/")]
                if clash:
                    issues.append(((*loc, "name"), f"tag metric {clash[0]!r} of cell {condition.cell!r} is inside "
                                                   f"the condition's folder Alarms/{condition.name}/"))
        return issues

    def _security_profile_issues(self) -> list[tuple[Loc, str]]:
        """What ``security_profile: production`` refuses unless the endpoint allows it explicitly."""
        if self.security_profile is not SecurityProfile.PRODUCTION:
            return []
        issues: list[tuple[Loc, str]] = []
        for i, ep in enumerate(self.opcua):
            if not ep.secure:
                if not ep.allow_insecure:
                    issues.append((("opcua", i, "security_policy"),
                                   f"endpoint {ep.name!r}: security_profile production refuses security policy None "
                                   "(no authentication of the server, no signing, no encryption); use Basic256Sha256 "
                                   "with Sign or SignAndEncrypt, or set allow_insecure: true on this endpoint"))
            elif ep.trust_dir is None and not ep.trust_unknown_server_certificates:
                issues.append((("opcua", i, "trust_dir"),
                               f"endpoint {ep.name!r}: security_profile production needs a trust_dir holding the "
                               "server's certificate (or trust_unknown_server_certificates: true)"))
        return issues

    # -- derived ------------------------------------------------------------------------------

    def endpoint_of(self, tag: TagConfig) -> str:
        return tag.endpoint or self.opcua[0].name

    def tags_of(self, endpoint: str) -> list[TagConfig]:
        return [tag for tag in self.tags if self.endpoint_of(tag) == endpoint]

    def device_id(self, tag: TagConfig) -> str | None:
        """Sparkplug device id of a tag (None = node-level metric), per the namespace mapping."""
        return self.device_of_cell(tag.cell)

    def device_of_cell(self, cell: str | None) -> str | None:
        """Sparkplug device id of a cell (None = the line itself: node-level).

        Remembered per cell: start-up asks once per tag and source (150,000 times at 50,000 tags,
        ~15 µs each through the mapping's models, issue 20); the cache is keyed by the mapping and
        line objects, so a copy with another mapping or line never sees a stale answer."""
        cache = self._device_ids
        if cache is None or cache[0] is not self.mapping or cache[1] is not self.line:
            cache = self._device_ids = (self.mapping, self.line, {})
        found = cache[2].get(cell, _UNSET)
        if found is _UNSET:
            from uns.isa95 import EquipmentPath

            found = cache[2][cell] = self.mapping.to_sparkplug(EquipmentPath(line=self.line, cell=cell)).device_id
        return found  # type: ignore[no-any-return]

    def sparkplug_ids(self) -> tuple[str, str]:
        from uns.isa95 import EquipmentPath

        ids = self.mapping.to_sparkplug(EquipmentPath(line=self.line))
        return ids.group_id, ids.edge_node_id

    def resolve_paths(self, base: Path) -> EdgeConfig:
        """A copy with relative paths (data dir, certificates, trust lists) anchored at ``base``."""
        def anchor(path: Path | None) -> Path | None:
            return None if path is None or path.is_absolute() else base / path

        endpoints = [
            ep.model_copy(update={k: anchor(getattr(ep, k)) for k in ("certificate", "private_key", "trust_dir")
                                  if getattr(ep, k) is not None and not getattr(ep, k).is_absolute()})
            for ep in self.opcua
        ]
        data_dir = self.data_dir if self.data_dir.is_absolute() else base / self.data_dir
        commands = self.commands
        if commands is not None:
            commands = commands.model_copy(update={k: anchor(getattr(commands, k)) for k in
                                                   ("allowlist", "users", "audit_db", "audit_witness")
                                                   if getattr(commands, k) is not None
                                                   and not getattr(commands, k).is_absolute()})
        return self.model_copy(update={"opcua": endpoints, "data_dir": data_dir, "commands": commands})


class ReferenceIssuesError(EdgeError, ValueError):
    """Cross-field problems with the locations they belong to (unpacked by the loader)."""

    def __init__(self, issues: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in issues))
        self.issues = issues


def _format_errors(doc: MarkedDocument, exc: ValidationError, prefix: Loc = ()) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, ReferenceIssuesError):
            for sub_loc, msg in error.issues:
                full = (*loc, *sub_loc)
                out.append(f"{doc.where(full)}: {format_loc(full)}: {msg}")
            continue
        out.append(f"{doc.where(loc)}: {format_loc(loc)}: {error_message(err)}")
    return out


#: TagConfig fields whose values repeat across a tag map (placement, units): interned by compact_tags
_REPEATED_TEXT = ("cell", "endpoint", "unit")


def compact_tags(tags: list[TagConfig]) -> None:
    """Share what 50,000 validated tags repeat (issue 20: RSS at 50,000 tags).

    pydantic keeps a ``set`` of the fields given per model instance (728 bytes for a typical tag,
    ~36 MB at 50,000 tags); tags given the same fields share one set here. Safe because TagConfig
    is frozen (pydantic adds to the set only on assignment) and ``model_copy`` copies the set.
    Repeated strings (cell, endpoint, unit) become one interned object each. Values are unchanged."""
    shared: dict[frozenset[str], set[str]] = {}
    for tag in tags:
        given = tag.__pydantic_fields_set__
        one = shared.setdefault(frozenset(given), given)
        if one is not given:
            object.__setattr__(tag, "__pydantic_fields_set__", one)
        values = tag.__dict__
        for name in _REPEATED_TEXT:
            text = values[name]
            if type(text) is str:
                values[name] = sys.intern(text)


def parse_edge_config(doc: MarkedDocument, base_dir: Path | None = None) -> EdgeConfig:
    """Validate a marked YAML document; raises :class:`ConfigError` naming file, line and field."""
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.where(())}: the config must be a YAML mapping (line:, opcua:, tags:, ...)")
    try:
        config = EdgeConfig.model_validate(doc.data)
    except ValidationError as exc:
        issues = _format_errors(doc, exc)
        raise ConfigError(f"{doc.source}: {len(issues)} problem(s):\n  " + "\n  ".join(issues), issues) from None
    compact_tags(config.tags)
    try:
        build_sparkplug_config(config)
    except ValidationError as exc:
        issues = _format_errors(doc, exc, prefix=("sparkplug",))
        raise ConfigError(f"{doc.source}: {len(issues)} problem(s):\n  " + "\n  ".join(issues), issues) from None
    except ImportError:
        pass  # the Sparkplug side is not installed in this build: checked when the app starts
    if base_dir is None:
        return config
    config = config.resolve_paths(base_dir)
    issues = [f"{doc.where(loc)}: {format_loc(loc)}: {msg}" for loc, msg in _trust_dir_issues(config)]
    if issues:
        raise ConfigError(f"{doc.source}: {len(issues)} problem(s):\n  " + "\n  ".join(issues), issues)
    return config


def _trust_dir_issues(config: EdgeConfig) -> list[tuple[Loc, str]]:
    """Production: a trust_dir that is missing on disk is a typo or a missing mount, not an empty trust list.

    (In demo the folder is created on first connect, as before.)
    """
    if config.security_profile is not SecurityProfile.PRODUCTION:
        return []
    issues: list[tuple[Loc, str]] = []
    for i, ep in enumerate(config.opcua):
        if ep.secure and ep.trust_dir is not None and not ep.trust_dir.is_dir():
            issues.append((("opcua", i, "trust_dir"),
                           f"endpoint {ep.name!r}: trust_dir {ep.trust_dir} is not a directory (security_profile "
                           "production): create it and copy the server's certificate into it"))
    return issues


def load_edge_config(path: Path | str) -> EdgeConfig:
    """Read ``plant.yaml``; relative paths in it are relative to the file's directory."""
    path = Path(path)
    doc = load_marked_file(path)
    return parse_edge_config(doc, base_dir=path.resolve().parent)


def loads_edge_config(text: str, source: str = "<string>", base_dir: Path | None = None) -> EdgeConfig:
    return parse_edge_config(load_marked_yaml(text, source), base_dir=base_dir)


def build_sparkplug_config(config: EdgeConfig) -> Any:
    """The :class:`EdgeSparkplugConfig` of this edge node, ids defaulted from the ISA-95 line."""
    from edge_node.sparkplug_config import EdgeSparkplugConfig

    group_id, edge_node_id = config.sparkplug_ids()
    raw = {"group_id": group_id, "edge_node_id": edge_node_id, **config.sparkplug}
    return EdgeSparkplugConfig.model_validate(raw)
