"""Configuration of the whole MES adapter application: one YAML file, validated as pydantic models.

The adapter composes parts that each own their configuration (the Sparkplug host's
:class:`~mes_adapter.host.HostConfig`, the MES core's :class:`~mes_adapter.config.mes.MesConfig`, the
command allowlist and user registry files of :mod:`uns.commands`); this model only says where each
lives and adds what belongs to the application itself: HTTP binding, API tokens, data directory,
audit trail. Errors name ``file:line`` (via :class:`uns.commands.yamlsource.YamlSource`) because an
integrator editing ``adapter.yaml`` needs the line, not a pydantic location tuple.

Relative paths in the file are relative to the file's directory, so a config directory can be
moved as a whole. ``mes.data_dir`` defaults to ``<data_dir>/mes`` and the audit database to
``<data_dir>/audit/audit.sqlite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from mes_adapter.auth import TokenEntry, TokenFile, UsersFile
from mes_adapter.config.mes import MesConfig
from mes_adapter.history.settings import HistorianSettings
from mes_adapter.host import HostConfig
from mes_adapter.lines import parse_line_key
from uns.commands.allowlist import Allowlist
from uns.commands.signing import UserRegistry
from uns.commands.yamlsource import ConfigError, YamlSource
from uns.config_checks import ConfigChecks
from uns.isa95 import EquipmentPath

__all__ = ["AdapterConfig", "AuditSettings", "AuthSettings", "CommandSettings", "ConfigError", "HttpSettings",
           "check_adapter_config", "load_adapter_config"]


class HttpSettings(BaseModel):
    """Where the REST API, dashboard and ``/metrics`` listen; loopback unless the plant says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: address to bind
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one
    port: int = Field(8080, ge=0, le=65535)
    #: seconds uvicorn waits for open requests (SSE streams) before closing them at shutdown
    graceful_shutdown_s: float = Field(3.0, ge=0)


class AuthSettings(BaseModel):
    """API bearer tokens: inline (demo stacks) and/or a tokens file (``uns adapter token`` appends to it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: inline API users with their tokens
    tokens: list[TokenEntry] = Field(default_factory=list)
    #: YAML file of hashed tokens (`uns adapter token --tokens-file`)
    tokens_file: Path | None = None
    #: YAML file of dashboard users (argon2id password hashes, roles; written by `uns adapter users`); None: tokens only
    users_file: Path | None = None
    #: a dashboard login session ends this long after login
    session_ttl_s: float = Field(8 * 3600.0, gt=0, le=7 * 86400)


class CommandSettings(BaseModel):
    """The request side of commands: which rules, whose public keys, how long to wait for a result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: allowlist YAML (:class:`uns.commands.allowlist.Allowlist`); None: every command is refused
    allowlist: Path | None = None
    #: user registry YAML with the signers' Ed25519 public keys (:class:`uns.commands.signing.UserRegistry`)
    signers: Path | None = None
    #: a command still without a result this long after dispatch is reported as ``no_result_yet``
    result_wait_s: float = Field(30.0, gt=0)
    #: how many finished commands the API keeps in memory (the audit trail keeps them all)
    keep_finished: int = Field(1000, ge=10)


class AuditSettings(BaseModel):
    """The adapter's hash-chained command audit log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: default ``<data_dir>/audit/audit.sqlite``
    path: Path | None = None
    #: JSON-lines file on other storage that receives every signed checkpoint
    witness_path: Path | None = None
    #: a signed checkpoint after every this many records (and at close)
    checkpoint_every: int = Field(100, ge=1)
    #: and once records have waited this long unsealed (null: by count and at close only)
    checkpoint_interval_s: float | None = Field(60.0, gt=0)


class AdapterConfig(BaseModel):
    """Everything ``uns adapter run`` needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the Sparkplug primary host and UNS mirror
    host: HostConfig = Field(default_factory=HostConfig)
    #: REST API, dashboard and /metrics
    http: HttpSettings = Field(default_factory=HttpSettings)
    #: state of the adapter (MES databases, audit log); relative to the file
    data_dir: Path = Path("data/adapter")
    #: API tokens
    auth: AuthSettings = Field(default_factory=AuthSettings)
    #: the MES core: lines, counters, webhook, shifts, OEE; `mes.data_dir` defaults to `<data_dir>/mes`
    mes: MesConfig = Field(default_factory=MesConfig)
    #: command allowlist and signer registry
    commands: CommandSettings = Field(default_factory=CommandSettings)
    #: command audit log
    audit: AuditSettings = Field(default_factory=AuditSettings)
    #: the historian: every value the host receives (docs/historian.md); on by default, SQLite under data_dir
    historian: HistorianSettings = Field(default_factory=HistorianSettings)
    #: how often due production confirmations are built and queued
    confirmations_every_s: float = Field(5.0, gt=0)
    #: how often buffered records are written to SQLite at most this late
    records_flush_s: float = Field(0.5, gt=0)
    #: the file this config was read from (set by :func:`load_adapter_config`; not a config field):
    #: its hash goes into the audit chain at start
    _source_path: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    def config_files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` of every file that decides what goes into a batch record (audited at start)."""
        files = [("adapter_config", self._source_path), ("allowlist", self.commands.allowlist),
                 ("signers", self.commands.signers), ("tokens_file", self.auth.tokens_file)]
        return [(role, path) for role, path in files if path is not None]

    @model_validator(mode="before")
    @classmethod
    def _default_mes_dir(cls, data: Any) -> Any:
        """``mes.data_dir`` follows ``data_dir`` unless set: one directory holds the adapter's state."""
        if isinstance(data, dict):
            mes = data.get("mes")
            if isinstance(mes, dict) and "data_dir" not in mes:
                data = {**data, "mes": {**mes, "data_dir": Path(data.get("data_dir", "data/adapter")) / "mes"}}
            elif mes is None:
                data = {**data, "mes": {"data_dir": Path(data.get("data_dir", "data/adapter")) / "mes"}}
        return data

    @model_validator(mode="after")
    def _lines_in_owned_groups(self) -> AdapterConfig:
        """With ``host.groups``, a line of another group would never count (its values never reach this
        instance): refuse it at load, naming the line and its group."""
        groups = self.host.groups
        if groups is None:
            return self
        owned = ", ".join(groups)
        for line in self.mes.lines:
            if not self.owns_line(line.line):
                raise ValueError(f"mes.lines: line {line.line} is in Sparkplug group {self.line_group(line.line)!r}, "
                                 f"which this instance does not own (host.groups: {owned})")
        for order_line in self.mes.orders.lines:
            if order_line.group_id not in groups:
                raise ValueError(f"mes.orders.lines: line {order_line.line} starts batches on Sparkplug group "
                                 f"{order_line.group_id!r}, which this instance does not own (host.groups: {owned})")
        return self

    def line_group(self, line: str) -> str:
        """The Sparkplug group of a line key (``host.mapping``: ``<enterprise>:<site>``)."""
        return self.host.mapping.to_sparkplug(EquipmentPath(line=parse_line_key(line))).group_id

    def owns_line(self, line: str) -> bool:
        """This instance counts, contextualizes and confirms ``line`` (its group is in ``host.groups``,
        or ``host.groups`` is absent)."""
        return self.host.groups is None or self.line_group(line) in self.host.groups

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.data_dir / "audit" / "audit.sqlite"

    def with_overrides(self, *, broker_url: str | None = None, http_port: int | None = None,
                       http_host: str | None = None, data_dir: Path | None = None) -> AdapterConfig:
        """A copy with command-line overrides applied and validated (the CLI's ``--broker`` etc.)."""
        raw = self.model_dump(mode="python")
        if broker_url is not None:
            raw["host"]["broker_url"] = broker_url
        if http_port is not None:
            raw["http"]["port"] = http_port
        if http_host is not None:
            raw["http"]["host"] = http_host
        if data_dir is not None:
            if raw["mes"]["data_dir"] == self.data_dir / "mes":
                raw["mes"]["data_dir"] = data_dir / "mes"
            raw["data_dir"] = data_dir
        copy = AdapterConfig.model_validate(raw)
        copy._source_path = self._source_path
        return copy


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    return value if value.is_absolute() else base / value


def _with_paths_resolved(config: AdapterConfig, base: Path) -> AdapterConfig:
    data_dir = _resolve(base, config.data_dir)
    assert data_dir is not None
    mes = config.mes.model_copy(update={"data_dir": _resolve(base, config.mes.data_dir)})
    return config.model_copy(update={
        "data_dir": data_dir,
        "mes": mes,
        "auth": config.auth.model_copy(update={"tokens_file": _resolve(base, config.auth.tokens_file),
                                               "users_file": _resolve(base, config.auth.users_file)}),
        "commands": config.commands.model_copy(update={"allowlist": _resolve(base, config.commands.allowlist),
                                                       "signers": _resolve(base, config.commands.signers)}),
        "audit": config.audit.model_copy(update={"path": _resolve(base, config.audit.path),
                                                 "witness_path": _resolve(base, config.audit.witness_path)}),
        "historian": config.historian.model_copy(update={"path": _resolve(base, config.historian.path),
                                                         "buffer_dir": _resolve(base, config.historian.buffer_dir)}),
    })


def load_adapter_config(path: Path) -> AdapterConfig:
    """Read and validate ``adapter.yaml``; :class:`ConfigError` lists each problem as ``file:line: field: msg``."""
    source = YamlSource.read(path)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the adapter config is a mapping (host, http, data_dir, auth, mes, ...)")
    try:
        config = AdapterConfig.model_validate(data)
    except ValidationError as exc:
        raise source.error(exc) from None
    resolved = _with_paths_resolved(config, path.resolve().parent)
    resolved._source_path = path.resolve()
    return resolved


def check_adapter_config(config: AdapterConfig, source: Path, *, broker_declared: bool | None = None) -> None:
    """What ``uns adapter run`` needs beyond a valid file, shared with ``uns adapter check``.

    The model has a default for everything so tests and embeddings can build it in code, but a
    deployed adapter that silently connects to ``mqtt://127.0.0.1:1883`` and serves an API nobody
    can call is a misconfiguration, not a default: the file (or ``--broker``) must name the broker,
    and there must be at least one API user (``auth.tokens`` or ``auth.tokens_file``). The files it
    names must exist and load, and its directories must be writable. ``broker_declared``: the URL
    came from the file or the command line (default: the file set ``host.broker_url``).

    Raises :class:`ConfigError` with one ``file:line: field: message`` per problem.
    """
    checks = ConfigChecks.of_file(source)
    if broker_declared is None:
        broker_declared = "broker_url" in config.host.model_fields_set
    if not broker_declared:
        checks.fail(("host", "broker_url"), "missing: the MQTT broker the adapter connects to, e.g. "
                                            "mqtt://user:password@127.0.0.1:1883 (or pass --broker)")
    if not config.auth.tokens and config.auth.tokens_file is None:
        checks.fail(("auth",), "missing: API users, auth.tokens or auth.tokens_file "
                               "(`uns adapter token --tokens-file` mints one); without them every /api call is refused")
    data_ok = checks.writable_dir(("data_dir",), config.data_dir)
    for loc, path, is_dir in ((("mes", "data_dir"), config.mes.data_dir, True),
                              (("audit", "path"), config.audit_path, False)):
        if data_ok or not path.is_relative_to(config.data_dir):  # one report for a data_dir that is a file
            (checks.writable_dir if is_dir else checks.file_in_writable_dir)(loc, path)
    historian = config.historian
    if historian.enabled and historian.backend == "sqlite" and historian.path is not None:
        checks.writable_dir(("historian", "path"), historian.path)
    if config.audit.witness_path is not None:
        checks.file_in_writable_dir(("audit", "witness_path"), config.audit.witness_path)
    if config.auth.users_file is not None:
        checks.loads(("auth", "users_file"), config.auth.users_file, UsersFile.load,
                     missing_hint="create it as described in docs/security.md (dashboard login)")
    if config.auth.tokens_file is not None:
        tokens_file = config.auth.tokens_file
        checks.loads(("auth", "tokens_file"), tokens_file, TokenFile.load,
                     missing_hint=f"create it with `uns adapter token --tokens-file {tokens_file} ...`")
    if config.commands.allowlist is not None:
        checks.loads(("commands", "allowlist"), config.commands.allowlist, Allowlist.load)
    if config.commands.signers is not None:
        checks.loads(("commands", "signers"), config.commands.signers, UserRegistry.load)
    checks.raise_if_any()
