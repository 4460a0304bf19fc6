"""Configuration of downtime: the debounce and the reason-code hierarchy (``mes.downtime`` in adapter.yaml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mes_adapter.errors import MesInputError
from mes_adapter.lines import line_key

#: the six big losses' availability buckets with a few generic codes; plants replace them with their own
DEFAULT_REASONS: dict[str, dict[str, dict[str, str]]] = {
    "breakdowns": {
        "equipment_failure": {"BD-MECH": "mechanical failure", "BD-ELEC": "electrical failure"},
        "material_jam": {"BD-JAM": "material jam"},
    },
    "setup_adjustments": {
        "changeover": {"SU-CHG": "product changeover"},
        "adjustment": {"SU-ADJ": "adjustment or calibration"},
    },
    "external": {
        "no_material": {"EX-MAT": "no material at infeed"},
        "no_operator": {"EX-OPR": "no operator"},
    },
}


class UnknownReasonError(MesInputError):
    """A reason code that is not in the configured hierarchy."""

    def __init__(self, code: str, known: list[str]) -> None:
        super().__init__(f"reason code {code!r} is not in the reason hierarchy (known codes: {known})")
        self.code = code


class ReasonCode(BaseModel):
    """Where a code sits in the hierarchy."""

    model_config = ConfigDict(frozen=True)

    code: str
    bucket: str
    category: str
    description: str


class ReasonTag(BaseModel):
    """A PLC tag whose value at the start of a stop names its reason (mapped onto a code)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Sparkplug metric name of the reason tag
    metric: str = Field(min_length=1)
    #: the cell (Sparkplug device); None for a line-level metric
    cell: str | None = None
    #: PLC value (as text) -> reason code; a value not listed leaves the stop unexplained
    codes: dict[str, str] = Field(default_factory=dict)


class DowntimeConfig(BaseModel):
    """How stop events are formed and explained (the micro-stop cutoff is ``oee.micro_stop_threshold_s``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: stops separated by a run shorter than this (seconds) are one stop: a flapping state tag is one stop
    debounce_s: float = Field(0.0, ge=0)
    #: loss bucket -> category -> code -> description (e.g. the six big losses / ISO 22400 loss categories)
    reasons: dict[str, dict[str, dict[str, str]]] = Field(default_factory=lambda: dict(DEFAULT_REASONS))
    #: the bucket micro-stops go to (performance loss, not availability)
    micro_stop_bucket: str = Field("small_stops", min_length=1)
    #: the bucket of stops nobody explained yet
    unexplained_bucket: str = Field("unexplained", min_length=1)
    #: per line (``<enterprise>/<site>/<area>/<line>``): a PLC stop-reason tag mapped onto codes
    reason_tags: dict[str, ReasonTag] = Field(default_factory=dict)

    @field_validator("reasons")
    @classmethod
    def _unique_codes(cls, value: dict[str, dict[str, dict[str, str]]]) -> dict[str, dict[str, dict[str, str]]]:
        seen: dict[str, str] = {}
        for bucket, categories in value.items():
            for category, codes in categories.items():
                for code in codes:
                    if code in seen:
                        raise ValueError(f"reason code {code!r} is in {seen[code]} and in {bucket}/{category}")
                    seen[code] = f"{bucket}/{category}"
        return value

    @field_validator("reason_tags")
    @classmethod
    def _line_keys(cls, value: dict[str, ReasonTag]) -> dict[str, ReasonTag]:
        return {line_key(line): tag for line, tag in value.items()}

    @model_validator(mode="after")
    def _buckets_apart(self) -> DowntimeConfig:
        reserved = {self.micro_stop_bucket, self.unexplained_bucket} & set(self.reasons)
        if reserved or self.micro_stop_bucket == self.unexplained_bucket:
            raise ValueError(f"micro_stop_bucket and unexplained_bucket must differ from each other and from "
                             f"the reason buckets (clash: {sorted(reserved) or [self.micro_stop_bucket]})")
        for line, tag in self.reason_tags.items():
            unknown = sorted(set(tag.codes.values()) - set(self.codes()))
            if unknown:
                raise ValueError(f"reason tag of {line}: codes {unknown} are not in the reason hierarchy")
        return self

    def codes(self) -> dict[str, ReasonCode]:
        return {code: ReasonCode(code=code, bucket=bucket, category=category, description=text)
                for bucket, categories in self.reasons.items()
                for category, codes in categories.items() for code, text in codes.items()}

    def reason(self, code: str) -> ReasonCode:
        """The code's place in the hierarchy; :class:`UnknownReasonError` if it has none."""
        known = self.codes()
        if code not in known:
            raise UnknownReasonError(code, sorted(known))
        return known[code]
