"""Configuration of the MES side of the adapter: which tags mean what, where confirmations go.

The models are the contract (FastAPI shows them, YAML loads into them); every field says why it
exists. Lines are keyed ``<enterprise>/<site>/<area>/<line>``; metric names are Sparkplug metric names
(tag paths with ``/`` folders), ``cell`` the device (None for line-level metrics).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from mes_adapter.downtime.config import DowntimeConfig
from mes_adapter.lines import line_key
from mes_adapter.oee.compute import MachineState
from mes_adapter.oee.shifts import ShiftCalendar
from mes_adapter.orders.config import OrdersConfig
from mes_adapter.production.conversion import QuantityConversion
from mes_adapter.production.counters import CounterRole

#: PackML state names (map by name, never by number: OPC UA companion specs renumber them) onto OEE categories.
#: Execute produces; everything else is an unplanned stop unless the plant says otherwise.
DEFAULT_STATE_MAP: dict[str, MachineState] = {
    "Execute": MachineState.RUNNING,
    "true": MachineState.RUNNING,
    "false": MachineState.STOPPED,
}


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter for webhook deliveries, and when to give up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(12, ge=1, description="attempts before a confirmation is dead-lettered")
    initial_delay_s: float = Field(1.0, gt=0, description="wait after the first failure")
    multiplier: float = Field(2.0, ge=1, description="each further wait is this many times longer")
    max_delay_s: float = Field(600.0, gt=0, description="longest wait between attempts")
    jitter: float = Field(0.2, ge=0, le=1, description="± fraction of the delay, spreads retries")
    request_timeout_s: float = Field(10.0, gt=0, description="timeout of one POST")

    def delay_s(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Wait before the next attempt after ``failed_attempts`` (≥ 1) failures."""
        base = min(self.max_delay_s,
                   self.initial_delay_s * self.multiplier ** max(0, failed_attempts - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, base * (1 + spread))


class WebhookConfig(BaseModel):
    """Where production confirmations are POSTed; ``url=None`` keeps them on the UNS only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: http(s) URL that receives each confirmation as a POST with an Idempotency-Key header
    url: str | None = None
    #: e.g. ``Authorization``; the value is a secret and never logged
    auth_header: str | None = None
    #: value of auth_header (a secret)
    auth_value: SecretStr | None = None
    #: extra request headers
    headers: dict[str, str] = Field(default_factory=dict)
    #: a 409 from an idempotent receiver means "this key was already processed"
    conflict_means_delivered: bool = True

    @model_validator(mode="after")
    def _auth_pair(self) -> WebhookConfig:
        if (self.auth_header is None) != (self.auth_value is None):
            raise ValueError("auth_header and auth_value go together")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url {self.url!r} is not http(s)")
        return self


class CounterSignal(BaseModel):
    """A cumulative counter tag and what it counts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Sparkplug metric name of the counter
    metric: str = Field(min_length=1)
    #: the cell (Sparkplug device); None for a line-level metric
    cell: str | None = None
    #: good, reject, total or consumed
    role: CounterRole
    #: the counter wraps to 0 at this value (2**32 for UInt32, 2**16 for UInt16); None: never wraps
    modulus: int | None = Field(2**32, ge=2)
    #: for ``consumed`` counters: which material and in which unit
    material_id: str | None = None
    #: unit of measure of a consumed material (what the counter counts in)
    uom: str = "EA"
    #: for ``consumed`` counters: from the counted unit (``counted_in``, equal to ``uom``) to the
    #: material's unit, step by step; confirmations then carry both (docs/mes-orders.md)
    conversion: QuantityConversion | None = None

    @model_validator(mode="after")
    def _material(self) -> CounterSignal:
        if (self.role is CounterRole.CONSUMED) != (self.material_id is not None):
            raise ValueError("material_id is required for consumed counters and only for them")
        if self.conversion is not None:
            if self.role is not CounterRole.CONSUMED:
                raise ValueError(f"counter {self.metric}: a counter conversion is for consumed counters; good and "
                                 "reject counts are converted per product (the line's `conversions`)")
            if self.conversion.counted_in != self.uom:
                raise ValueError(f"counter {self.metric} counts in {self.uom!r}, but its conversion starts from "
                                 f"{self.conversion.counted_in!r}")
        return self


class StateSignal(BaseModel):
    """The machine-state tag of a line and how its values map to OEE categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Sparkplug metric name of the state tag
    metric: str = Field(min_length=1)
    #: the cell (Sparkplug device); None for a line-level metric
    cell: str | None = None
    #: state value (PackML name, or true/false) -> OEE category
    state_map: dict[str, MachineState] = Field(default_factory=lambda: dict(DEFAULT_STATE_MAP))
    #: category of values not in ``state_map`` (conservative: an unplanned stop)
    default: MachineState = MachineState.STOPPED

    def categorize(self, value: object) -> MachineState:
        key = str(value).lower() if isinstance(value, bool) else str(value)
        return self.state_map.get(key, self.default)


class BatchSignal(BaseModel):
    """The line's current-batch tag: the order the PLC runs, empty when none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Sparkplug metric name of the current-batch tag
    metric: str = Field(min_length=1)
    #: the cell (Sparkplug device); None for a line-level metric
    cell: str | None = None


class SpeedSignal(BaseModel):
    """The line's actual-speed tag, shown on the line card beside the machine state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Sparkplug metric name of the speed tag
    metric: str = Field(min_length=1)
    #: the cell (Sparkplug device); None for a line-level metric
    cell: str | None = None


class LineConfig(BaseModel):
    """The MES view of one line: its counters, its state tag, and its ideal cycle times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the line as `<enterprise>/<site>/<area>/<line>`
    line: str
    #: counter tags of the line
    counters: list[CounterSignal] = Field(default_factory=list)
    #: the machine-state tag (for OEE availability)
    state: StateSignal | None = None
    #: the current-batch tag; on start the MES context is reconciled with it (see docs)
    batch: BatchSignal | None = None
    #: the broker user the broker's ACL alone lets publish this line's ``_context`` topics: MQTT
    #: context assertions are audited as made by them (None: recorded as unattributed)
    context_publisher: str | None = Field(None, min_length=1, max_length=128)
    #: the actual-speed tag (shown on the dashboard's line card; no OEE role)
    speed: SpeedSignal | None = None
    #: planned run time per item (PRI, seconds) per product id, from MES master data
    ideal_cycle_s: dict[str, float] = Field(default_factory=dict)
    #: PRI when the product has no entry (None: performance/OEE unknown and flagged)
    default_ideal_cycle_s: float | None = Field(None, gt=0)
    #: unit of measure of the line's product quantities
    uom: str = "EA"
    #: product id -> how the line's good and reject counts convert to the product's unit (e.g.
    #: pulse -> EA -> kg); confirmations of a batch of that product carry both the counts and the
    #: converted quantities (docs/mes-orders.md)
    conversions: dict[str, QuantityConversion] = Field(default_factory=dict)
    #: metrics under these folders are stored as alarms (the rest as readings or the state)
    alarm_prefixes: list[str] = Field(default_factory=lambda: ["Alarms/"])

    @field_validator("line")
    @classmethod
    def _line(cls, value: str) -> str:
        return line_key(value)

    @model_validator(mode="after")
    def _unique_counters(self) -> LineConfig:
        keys = [(c.cell, c.metric) for c in self.counters]
        if len(keys) != len(set(keys)):
            raise ValueError(f"line {self.line}: a counter metric is configured twice")
        return self

    def ideal_cycle_for(self, product_id: str | None) -> float | None:
        if product_id is not None and product_id in self.ideal_cycle_s:
            return self.ideal_cycle_s[product_id]
        return self.default_ideal_cycle_s


class OeeConfig(BaseModel):
    """How stops count in OEE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: stops up to this long are speed loss (inside APT); None: ISO strict, every stop is ADET
    micro_stop_threshold_s: float | None = Field(120.0, ge=0)


class DispositionSettings(BaseModel):
    """QA disposition of rejects (see docs/mes-quality.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: rejects are pending until a QA user classifies them (scrap / rework / accepted); False: every
    #: reject is confirmed as scrap (no disposition)
    required: bool = False
    #: the final confirmation of a batch with pending rejects: `wait` until none is pending, or
    #: `partial`: send it at the usual time with the pending quantity
    final: Literal["wait", "partial"] = "wait"


class AlarmRule(BaseModel):
    """An alarm that is a production exception: which condition (and how severe) opens one, who owns
    it, what must be done, and whether the running batch goes on hold until a signed release."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ConditionName as the edge publishes it (``Alarms/<Name>/...``), e.g. TemperatureAlarm
    condition: str = Field(min_length=1)
    #: the rule applies from this OPC UA severity up (TemperatureAlarm: 500 High, 800 HighHigh)
    min_severity: int = Field(1, ge=1, le=1000)
    #: only on this line (``<enterprise>/<site>/<area>/<line>``); None: every line
    line: str | None = None
    #: only on this cell; None: every cell
    cell: str | None = None
    #: who must handle the exception (a role or team name, shown in the API)
    owner: str = Field(min_length=1)
    #: what the owner must do (shown in the API with the exception)
    action: str = Field(min_length=1)
    #: the cause recorded with the exception; None: the alarm's own message
    cause: str | None = None
    #: put the batch running at the alarm's source time on hold (no final confirmation until released)
    hold: bool = False

    @field_validator("line")
    @classmethod
    def _line(cls, value: str | None) -> str | None:
        return None if value is None else line_key(value)


class AlarmsConfig(BaseModel):
    """Exception and hold rules for condition alarms, and flood protection (docs/alarms.md, MES part)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: evaluated in order; every matching rule opens its own exception
    rules: list[AlarmRule] = Field(default_factory=list)
    #: the least role (viewer, operator, supervisor, engineer) whose signature releases a held batch
    release_role: str = Field("supervisor", pattern="^(viewer|operator|supervisor|engineer)$")
    #: debounce: a rule does not open a second exception for the same condition within this many
    #: seconds of the last one it opened (chattering alarm)
    debounce_s: float = Field(60.0, ge=0)
    #: flood protection: at most this many exceptions per line per minute; more are counted, not opened
    max_exceptions_per_minute: int = Field(30, ge=1)


class MesConfig(BaseModel):
    """Everything the MES core needs; the host and REST API compose it into the running adapter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: SQLite files of context, records, production and the outbox
    data_dir: Path = Path("data/mes")
    #: keep the MES state shared by adapter instances (batch context, contextualized records, production
    #: counters, and the outbox unless `outbox_dsn` says otherwise) in this PostgreSQL database (e.g.
    #: postgresql://uns:pw@db.plant/uns; needs the `postgres` extra) instead of SQLite files under `data_dir`:
    #: any instance's API then answers for every instance's lines (docs/scaling.md). Existing SQLite state
    #: is not copied over
    state_dsn: str | None = None
    #: with `state_dsn`: how long an instance's claim on its `host.groups` outlives its last heartbeat
    #: (renewed every third of it). Another instance may take over those groups after this; a live
    #: instance with an overlapping set is refused at start (docs/scaling.md)
    instance_lease_s: float = Field(30.0, ge=3)
    #: keep the confirmation outbox in this PostgreSQL database instead of `<data_dir>/outbox.sqlite`
    #: (defaults to `state_dsn`): adapter instances sharing it post each confirmation once between them
    #: (row claims, docs/scaling.md)
    outbox_dsn: str | None = None
    #: PostgreSQL outbox: how long an instance's claim on a confirmation lasts; if the instance dies before
    #: recording the outcome, another one posts it after this. Must outlast one attempt (`retry.request_timeout_s`)
    outbox_claim_s: float = Field(60.0, gt=0)
    #: where confirmations are POSTed
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    #: webhook retries
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    #: partial confirmations every this many seconds of a running batch; None: final only
    partial_interval_s: float | None = Field(3600.0, gt=0)
    #: wait this long after a window ends before confirming it, so in-flight and replayed data land
    confirmation_grace_s: float = Field(60.0, ge=0)
    #: shifts and planned downtime
    calendar: ShiftCalendar = Field(default_factory=ShiftCalendar)
    oee: OeeConfig = Field(default_factory=OeeConfig)
    #: QA disposition of rejects before they are confirmed as scrap or rework
    disposition: DispositionSettings = Field(default_factory=DispositionSettings)
    #: stop events (debounce) and their reason codes (see docs/mes-downtime.md)
    downtime: DowntimeConfig = Field(default_factory=DowntimeConfig)
    #: the lines the MES core counts and confirms
    lines: list[LineConfig] = Field(default_factory=list)
    #: how far back (source time) a late counter sample can still be placed
    counter_reorder_horizon_s: float = Field(7 * 24 * 3600.0, gt=0)
    #: order intake: valid products and recipe/BOM versions, and how each line starts a batch (docs/mes-orders.md)
    orders: OrdersConfig = Field(default_factory=OrdersConfig)


    #: condition alarms that open exceptions and hold batches
    alarms: AlarmsConfig = Field(default_factory=AlarmsConfig)

    @model_validator(mode="before")
    @classmethod
    def _outbox_follows_state(cls, data: Any) -> Any:
        """One line (`state_dsn`) puts all the shared MES state into PostgreSQL, the outbox included."""
        if isinstance(data, dict) and data.get("state_dsn") is not None and data.get("outbox_dsn") is None:
            return {**data, "outbox_dsn": data["state_dsn"]}
        return data

    @model_validator(mode="after")
    def _claim_outlasts_an_attempt(self) -> MesConfig:
        if self.outbox_dsn is not None and self.outbox_claim_s <= 2 * self.retry.request_timeout_s:
            raise ValueError(f"outbox_claim_s ({self.outbox_claim_s}) must be more than twice retry.request_timeout_s "
                             f"({self.retry.request_timeout_s}): a claim that ends while its POST is in flight lets "
                             "another instance post the same confirmation")
        return self

    @model_validator(mode="after")
    def _unique_lines(self) -> MesConfig:
        names = [line.line for line in self.lines]
        if len(names) != len(set(names)):
            raise ValueError("a line is configured twice")
        unknown = sorted(set(self.downtime.reason_tags) - set(names))
        if unknown:
            raise ValueError(f"downtime.reason_tags names lines that are not configured: {unknown}")
        return self

    def line(self, key: str) -> LineConfig | None:
        return next((line for line in self.lines if line.line == key), None)

    @property
    def context_db(self) -> Path:
        return self.data_dir / "context.sqlite"

    @property
    def records_db(self) -> Path:
        return self.data_dir / "records.sqlite"

    @property
    def production_db(self) -> Path:
        return self.data_dir / "production.sqlite"

    @property
    def downtime_db(self) -> Path:
        return self.data_dir / "downtime.sqlite"

    @property
    def outbox_db(self) -> Path:
        return self.data_dir / "outbox.sqlite"

    @property
    def disposition_db(self) -> Path:
        return self.data_dir / "disposition.sqlite"

    @property
    def orders_db(self) -> Path:
        return self.data_dir / "orders.sqlite"

    @property
    def genealogy_db(self) -> Path:
        return self.data_dir / "genealogy.sqlite"

    @property
    def crew_db(self) -> Path:
        return self.data_dir / "crew.sqlite"
