"""Configuration of the simulated line, as pydantic models.

One model describes both the line physics (cells, rate, noise, counters) and the OPC UA shell
(endpoint, security, users), because every caller (CLI, tests, ``uns up``) builds exactly one of
these and hands it to :class:`simulator.server.SimulatedLineServer`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAMESPACE_URI = "urn:uns-hub:simulator"

# A tag path level: what Sparkplug, ISA-95 topics and OPC UA string node ids all accept.
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")

SecurityMode = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]


def _check_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} must start with a letter and hold only letters, digits, '_' or '-'"
            " (it becomes an OPC UA node id level, a Sparkplug id and a UNS topic level)"
        )
    return value


class CellConfig(BaseModel):
    """One work cell (machine) of the line; parts flow through cells in list order."""

    model_config = ConfigDict(extra="forbid")

    name: str
    temperature_c: float = Field(20.0, description="initial temperature setpoint, degC")
    temperature_noise_c: float = Field(0.2, ge=0, description="std dev of the gaussian sensor noise")
    temperature_tau_s: float = Field(5.0, gt=0, description="first-order lag towards the setpoint")
    #: engineering range of the temperature tags, degC
    temperature_range_c: tuple[float, float] = (0.0, 200.0)
    temperature_setpoint_tag: str = Field(
        "TemperatureSetpoint", description="name of the writable temperature setpoint tag"
    )
    reject_rate: float = Field(0.01, ge=0, le=1, description="probability a part is rejected here")
    speed_noise: float = Field(0.005, ge=0, description="relative std dev of the measured speed")

    @field_validator("name", "temperature_setpoint_tag")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value, "cell or tag name")


def default_cells() -> list[CellConfig]:
    """Filler, capper, labeler: the smallest line that still has a bottleneck and scrap per station."""
    return [
        CellConfig(name="Filler", temperature_c=20.0, temperature_setpoint_tag="FillTemperatureSetpoint",
                   reject_rate=0.01, temperature_range_c=(0.0, 95.0)),
        CellConfig(name="Capper", temperature_c=35.0, reject_rate=0.005, temperature_range_c=(0.0, 80.0)),
        CellConfig(name="Labeler", temperature_c=140.0, reject_rate=0.005,
                   temperature_range_c=(0.0, 200.0)),
    ]


class UserConfig(BaseModel):
    """A username/password an OPC UA client may log in with (plain text: a test fixture, not a vault)."""

    model_config = ConfigDict(extra="forbid")

    #: OPC UA user name
    username: str
    #: its password
    password: str
    #: may read, browse and subscribe but not write or call methods (the Write and Call services
    #: are refused with BadUserAccessDenied): a plant's read account next to a separate write account
    read_only: bool = False


class SecurityConfig(BaseModel):
    """Which endpoints the server offers and who may open a session."""

    model_config = ConfigDict(extra="forbid")

    #: endpoints offered: None, Basic256Sha256_Sign, Basic256Sha256_SignAndEncrypt
    modes: list[SecurityMode] = Field(default_factory=lambda: ["None"])
    data_dir: Path | None = Field(
        None, description="where the self-signed server certificate and key are generated"
    )
    #: users who may log in with user name and password
    users: list[UserConfig] = Field(default_factory=list)
    #: accept anonymous sessions
    allow_anonymous: bool = True

    @model_validator(mode="after")
    def _secure_needs_dir(self) -> SecurityConfig:
        if any(mode != "None" for mode in self.modes) and self.data_dir is None:
            raise ValueError("Basic256Sha256 endpoints need security.data_dir for the server certificate")
        if not self.modes:
            raise ValueError("security.modes must name at least one endpoint mode")
        if not self.allow_anonymous and not self.users:
            raise ValueError("allow_anonymous=False needs at least one user")
        return self


class SimulatorConfig(BaseModel):
    """Everything one simulated line needs. Defaults give a usable demo line on 127.0.0.1:4840."""

    model_config = ConfigDict(extra="forbid")

    #: address to bind
    host: str = "127.0.0.1"
    #: OPC UA TCP port
    port: int = Field(4840, ge=1, le=65535)
    #: line name: first level of every node id
    line: str = "Line1"
    #: work cells in flow order (default: Filler, Capper, Labeler)
    cells: list[CellConfig] = Field(default_factory=default_cells)
    rate: float = Field(5.0, ge=0, description="nominal production rate, parts per second")
    tick_s: float = Field(0.1, gt=0, le=10, description="model step and OPC UA mirror interval")
    #: seed of the reject and noise random streams
    seed: int = 1
    acting_state_s: float = Field(
        0.5, ge=0, description="how long PackML acting states (Starting, Holding...) last"
    )
    counter_modulus: int = Field(
        2**32, ge=2, le=2**32, description="cumulative counters wrap to 0 at this value (UInt32)"
    )
    counter_start: int = Field(0, ge=0, description="initial value of every cumulative counter")
    #: ambient temperature, degC (not read by the line model at present)
    ambient_c: float = 20.0
    #: value of the Recipe tag at start
    initial_recipe: str = "Default"
    extra_tags: int = Field(0, ge=0, le=100_000, description="synthetic Double tags for benchmarks")
    extra_rate_hz: float = Field(10.0, gt=0, le=1000, description="update rate of each synthetic tag")
    production_log_max: int = Field(
        200_000, ge=0, description="production events kept for production_between() queries"
    )
    #: OPC UA endpoints and users
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @field_validator("line")
    @classmethod
    def _valid_line(cls, value: str) -> str:
        return _check_name(value, "line name")

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorConfig:
        names = [cell.name for cell in self.cells]
        if not names:
            raise ValueError("a line needs at least one cell")
        if len(set(names)) != len(names):
            raise ValueError(f"cell names must be unique, got {names}")
        reserved = {"Simulation", "Synthetic", *LINE_TAG_NAMES}
        clash = reserved.intersection(names)
        if clash:
            raise ValueError(f"cell names {sorted(clash)} collide with line-level tag names")
        if self.counter_start >= self.counter_modulus:
            raise ValueError("counter_start must be below counter_modulus")
        return self

    @property
    def endpoint(self) -> str:
        """The endpoint URL clients connect to."""
        return f"opc.tcp://{self.host}:{self.port}"


# Line-level tag names; kept here so the config can refuse a cell that would shadow one.
LINE_TAG_NAMES: tuple[str, ...] = (
    "State",
    "StateCode",
    "StopReason",
    "Recipe",
    "CurrentBatch",
    "CurrentProduct",
    "BatchQuantity",
    "GoodCount",
    "RejectCount",
    "Speed",
)
