"""The command allowlist: which metrics may be written, how, and when — config, versioned.

Nothing reaches a PLC unless a rule here names it. The host checks before it sends and the edge
checks again when the DCMD/NCMD arrives (the edge is the last line of defence, whatever the host
sent), both with :class:`~uns.commands.checker.AllowlistChecker` over the same file.

YAML shape (one file, ``version`` goes into every audit record)::

    version: "2025-01-15.1"
    lines:
      - group_id: "acme:dublin"          # Sparkplug ids, as on the wire
        edge_node_id: "packaging:line1"
        state:                           # where the line's machine state is read (default for rules)
          device_id: filler
          metric: Status/StateCurrent
          names: packml                  # PackML numbers → names; or a {number: name} map; or omit for strings
        metrics:
          - device_id: filler            # omit for a node-level metric (NCMD)
            metric: Filler/SpeedSetpoint
            datatype: Double
            min: 0
            max: 600
            step: 0.5
            rate_limit: {max_writes: 10, per_s: 60}
            allowed_states: [Idle, Execute, Held]
            tolerance: 0.01
            write: {node_id: "ns=2;s=Filler.SpeedSP"}
          - device_id: filler
            metric: Recipe/Select
            datatype: String
            enum: [SKU-12, SKU-14]
            allowed_states: [Idle, Stopped]   # no recipe change while the line runs
            critical: true                    # two-person rule
            write: {node_id: "ns=2;s=Filler.Recipe", readback_node_id: "ns=2;s=Filler.RecipeActive"}
          - metric: Batch/Start
            critical: true
            call:                              # an OPC UA method, called atomically
              object_node_id: "ns=2;s=Line1"
              method_node_id: "ns=2;s=Line1.StartBatch"
              args:
                - {name: order, datatype: String}
                - {name: product, datatype: String, enum: [SKU-12, SKU-14]}
                - {name: quantity, datatype: Int32, min: 1, max: 100000}
          - device_id: filler
            metric: Alarms/TemperatureAlarm/Acknowledge   # always Alarms/<name>/Acknowledge or .../Confirm
            condition: {name: TemperatureAlarm, method: acknowledge}   # Part 9 Acknowledge / Confirm
          - device_id: filler
            metric: Faceplate                  # a template instance metric (datatype Template)
            member: SpeedSetpoint              # the one member this rule allows; nested: Setpoints/LineSpeed
            datatype: Double
            min: 0
            max: 600
            write: {node_id: "ns=2;s=Line1/Filler/Faceplate"}   # the object instance or structured variable

A condition rule acknowledges or confirms an OPC UA condition (Part 9) the edge subscribes to (its
``alarms:`` section): the command value is the comment (a String); the edge adds the ConditionId
and the latest EventId it saw for the condition and reads AckedState / ConfirmedState back.

A method rule's metric travels as a Sparkplug String whose value is the canonical JSON object of
its arguments (``{"order":"WO-1","product":"SKU-12","quantity":500}``); the edge births it as a
String metric. State names are compared case-insensitively, by name, never by number
(OPC UA companion specs renumber PackML states).

A member rule allows writing one member of a template instance (docs/templates.md): the command's
value is ``{"<member path>": <value>}`` (:mod:`uns.commands.template_members`), typed and ranged by
the rule like any written value; ``write.node_id`` is the object instance (the edge writes its member
variable) or the structured variable (the edge reads the structure, changes that field and writes the
whole value back). Each member is its own rule, with its own id (``<edge>/<device>/<metric>#<member>``),
states, rate limit and signatures: members not listed cannot be written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from uns.sparkplug.datatypes import DataType
from uns.yaml_marks import format_loc

from .model import ReasonCode
from .template_members import member_path, member_value
from .values import NUMERIC_TYPES, normalize_value, parse_writable_datatype, type_problem
from .yamlsource import ConfigError, YamlSource

#: PackML ``Status.StateCurrent`` numbering (ISA-TR88.00.02)
PACKML_STATES: dict[int, str] = {
    0: "Undefined", 1: "Clearing", 2: "Stopped", 3: "Starting", 4: "Idle", 5: "Suspended", 6: "Execute",
    7: "Stopping", 8: "Aborting", 9: "Aborted", 10: "Holding", 11: "Held", 12: "Unholding", 13: "Suspending",
    14: "Unsuspending", 15: "Resetting", 16: "Completing", 17: "Complete",
}
_STEP_EPSILON = 1e-9


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateLimit(_Strict):
    """At most ``max_writes`` accepted commands per ``per_s`` seconds (sliding window), per rule."""

    #: accepted commands allowed in the window
    max_writes: PositiveInt
    #: length of the sliding window, seconds
    per_s: PositiveFloat


class StateSource(_Strict):
    """The metric holding a line's (or cell's) machine state, and how its numbers map to names."""

    #: Sparkplug device id of the state metric; None for a node-level metric
    device_id: str | None = None
    #: metric name of the state tag
    metric: str = Field(min_length=1)
    #: numbers to names: "packml", a {number: name} map, or None when the metric is a string
    names: Literal["packml"] | dict[int, str] | None = None

    def name_of(self, raw: str | int | None) -> str | None:
        """The state name of a raw state-metric value; None if unknown."""
        if raw is None or isinstance(raw, bool):
            return None
        if isinstance(raw, str):
            return raw
        table = PACKML_STATES if self.names == "packml" else (self.names or {})
        return table.get(raw)


class ValueRule(_Strict):
    """Type and range of one value: a written metric or one method argument."""

    #: Sparkplug datatype name of the value (Double, Int32, Boolean, String, ...)
    datatype: str | None = None
    #: smallest allowed value (numbers)
    min: float | None = None
    #: largest allowed value (numbers)
    max: float | None = None
    #: allowed values are ``min + k*step`` (or ``k*step`` without min)
    step: PositiveFloat | None = None
    #: the only values allowed
    enum: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ValueRule:
        if self.datatype is None:
            return self
        datatype = parse_writable_datatype(self.datatype)
        numeric = datatype in NUMERIC_TYPES
        if not numeric and (self.min is not None or self.max is not None or self.step is not None):
            raise ValueError(f"min/max/step apply to numbers, not to {datatype.name}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min and max must be finite")
        if self.enum is not None:
            if not self.enum:
                raise ValueError("enum must list at least one value")
            for item in self.enum:
                problem = type_problem(datatype, item)
                if problem:
                    raise ValueError(f"enum value {item!r}: {problem}")
        return self

    @property
    def sparkplug_type(self) -> DataType:
        if self.datatype is None:
            raise ValueError("rule has no datatype")
        return DataType[self.datatype]

    def problem(self, value: Any) -> tuple[ReasonCode, str] | None:
        """The first reason ``value`` breaks this rule, or None."""
        datatype = self.sparkplug_type
        wrong = type_problem(datatype, value)
        if wrong:
            return ReasonCode.WRONG_TYPE, wrong
        if self.min is not None and value < self.min:
            return ReasonCode.OUT_OF_RANGE, f"{value} is below the minimum {self.min:g}"
        if self.max is not None and value > self.max:
            return ReasonCode.OUT_OF_RANGE, f"{value} is above the maximum {self.max:g}"
        if self.step is not None:
            base = self.min if self.min is not None else 0.0
            steps = (value - base) / self.step
            if abs(steps - round(steps)) > _STEP_EPSILON * max(1.0, abs(steps)):
                return ReasonCode.OFF_STEP, f"{value} is not on the {self.step:g} grid from {base:g}"
        if self.enum is not None and not _in_enum(value, self.enum):
            return ReasonCode.NOT_IN_ENUM, f"{value!r} is not one of {self.enum}"
        return None


def _in_enum(value: Any, allowed: list[Any]) -> bool:
    # True == 1 in Python; a Boolean enum must not accept 1 and an Int enum must not accept true
    return any(value == item and isinstance(value, bool) == isinstance(item, bool) for item in allowed)


class MethodArg(ValueRule):
    """One argument of an OPC UA method call, typed and ranged like a written value."""

    #: argument name, a key of the command value's JSON object
    name: str = Field(min_length=1)
    #: Sparkplug datatype name of the argument (required)
    datatype: str  # required for arguments


class NodeWrite(_Strict):
    """Write the value to one OPC UA node; read back from ``readback_node_id`` (default: the same)."""

    #: OPC UA NodeId string of the variable to write
    node_id: str = Field(min_length=1)
    #: recorded in the audit trail only; the node id is used as written (pin a namespace with nsu=<uri>;s=...)
    namespace_uri: str | None = None
    #: variable read back to confirm the write; default node_id
    readback_node_id: str | None = None


class MethodCall(_Strict):
    """Call an OPC UA method with the arguments in declared order, in one atomic Call service."""

    #: the object the method is called on
    object_node_id: str = Field(min_length=1)
    #: the method
    method_node_id: str = Field(min_length=1)
    #: recorded in the audit trail only; the node id is used as written (pin a namespace with nsu=<uri>;s=...)
    namespace_uri: str | None = None
    #: arguments in the order the method declares them
    args: list[MethodArg] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_args(self) -> MethodCall:
        names = [arg.name for arg in self.args]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"argument names repeat: {duplicates}")
        return self


#: the Part 9 methods a condition rule may call, as named in the rule and in the metric
CONDITION_METHODS: dict[str, str] = {"acknowledge": "Acknowledge", "confirm": "Confirm"}
#: the longest comment an acknowledgement carries
MAX_CONDITION_COMMENT = 2000


def condition_metric(name: str, method: str) -> str:
    """The command metric of a condition method: ``Alarms/<name>/Acknowledge`` or ``.../Confirm``,
    beside the condition's state metrics (``Alarms/<name>/Acked`` ...) under its cell's device."""
    return f"Alarms/{name}/{CONDITION_METHODS[method]}"


class ConditionCall(_Strict):
    """Call Acknowledge or Confirm (AcknowledgeableConditionType, Part 9) on one OPC UA condition.

    The rule names the condition, not its NodeId or EventId: the edge calls the method on the
    ConditionId and with the newest EventId it received for that condition, so a command cannot
    acknowledge an occurrence the operator never saw."""

    #: the ConditionName, as in the edge's ``alarms.conditions`` of the rule's device (cell)
    name: str = Field(min_length=1, pattern=r"^[^/#+]+$")
    #: acknowledge (AckedState becomes true) or confirm (ConfirmedState becomes true)
    method: Literal["acknowledge", "confirm"]


class WritableMetric(ValueRule):
    """One allowlist rule: a metric that commands may write (``write``) or a method they may call."""

    #: stable rule id for the audit trail; default ``<edge_node_id>/<device_id or ->/<metric>``
    id: str | None = None
    #: Sparkplug device id; None for a node-level metric (NCMD)
    device_id: str | None = None
    #: metric name as born by the edge node
    metric: str = Field(min_length=1)
    #: free text for people reading the allowlist
    description: str | None = None
    #: accepted commands per sliding window
    rate_limit: RateLimit | None = None
    #: state names in which a command is allowed; None = any state
    allowed_states: list[str] | None = None
    #: overrides the line's state source
    state: StateSource | None = None
    #: two-person rule: a second, different user must sign (approved, verified or reviewed)
    critical: bool = False
    #: the second signature must come within this many seconds of the first
    second_signature_window_s: PositiveFloat = 900.0
    #: absolute tolerance of the read-back comparison
    tolerance: float = Field(default=0.0, ge=0.0)
    #: how long the edge waits for a Good read-back that matches
    readback_timeout_s: PositiveFloat = 5.0
    #: longest a command may wait (in the host queue or the edge's offline queue) before it expires
    validity_s: PositiveFloat = 300.0
    #: write a variable (exactly one of write and call)
    write: NodeWrite | None = None
    #: call a method (exactly one of write, call and condition)
    call: MethodCall | None = None
    #: acknowledge or confirm an OPC UA condition (exactly one of write, call and condition)
    condition: ConditionCall | None = None
    #: a template instance metric: the one member this rule writes (nested members joined with '/')
    member: str | None = Field(None, min_length=1, pattern=r"^[^/#+]+(/[^/#+]+)*$")

    @model_validator(mode="after")
    def _one_target(self) -> WritableMetric:
        if sum(target is not None for target in (self.write, self.call, self.condition)) != 1:
            raise ValueError("a rule needs exactly one of 'write' (an OPC UA node), 'call' (an OPC UA method) or "
                             "'condition' (Acknowledge / Confirm of an OPC UA condition)")
        typed = any(v is not None for v in (self.datatype, self.min, self.max, self.step, self.enum))
        if self.call is not None:
            if typed:
                raise ValueError("a 'call' rule types its arguments under call.args, not datatype/min/max/step/enum")
        elif self.condition is not None:
            if typed:
                raise ValueError("a 'condition' rule takes a comment (a String); it has no datatype/min/max/step/enum")
            expected = condition_metric(self.condition.name, self.condition.method)
            if self.metric != expected:
                raise ValueError(f"a condition rule's metric is {expected!r}, not {self.metric!r}")
        elif self.datatype is None:
            raise ValueError("a 'write' rule needs a datatype")
        if self.member is not None and self.write is None:
            raise ValueError("a 'member' rule writes one member of a template instance: it needs 'write' (the object "
                             "instance or the structured variable), not 'call' or 'condition'")
        if self.allowed_states is not None and not self.allowed_states:
            raise ValueError("allowed_states is empty, so no command could ever pass; omit it to allow any state")
        return self

    @property
    def wire_type(self) -> DataType:
        """The Sparkplug datatype of the command metric (String for method calls and conditions,
        Template for a member of a template instance)."""
        if self.member is not None:
            return DataType.Template
        return DataType.String if self.call is not None or self.condition is not None else self.sparkplug_type

    def value_problem(self, value: Any) -> tuple[ReasonCode, str] | None:
        if self.condition is not None:
            if not isinstance(value, str):
                return ReasonCode.WRONG_TYPE, f"an acknowledgement's value is its comment (a string), got {value!r}"
            if len(value) > MAX_CONDITION_COMMENT:
                return ReasonCode.OUT_OF_RANGE, f"the comment has {len(value)} characters, at most " \
                                                f"{MAX_CONDITION_COMMENT} are allowed"
            return None
        if self.member is not None:
            if member_path(value) != self.member:
                return ReasonCode.WRONG_TYPE, (f"a write to member {self.member!r} is the object "
                                               f"{{{self.member!r}: <value>}}, got {value!r}")
            return self.problem(member_value(value))
        if self.call is None:
            return self.problem(value)
        if not isinstance(value, dict):
            return ReasonCode.WRONG_TYPE, f"a method call takes an object of arguments, got {type(value).__name__}"
        declared = {arg.name: arg for arg in self.call.args}
        unknown = sorted(set(value) - set(declared))
        if unknown:
            return ReasonCode.WRONG_TYPE, f"unknown argument(s) {unknown}; the method takes {list(declared)}"
        for name, arg in declared.items():
            if name not in value:
                return ReasonCode.WRONG_TYPE, f"argument {name!r} is missing"
            problem = arg.problem(value[name])
            if problem:
                return problem[0], f"argument {name!r}: {problem[1]}"
        return None

    def normalize(self, value: Any) -> Any:
        """The value as it will reach the PLC (see :func:`uns.commands.values.normalize_value`)."""
        if self.condition is not None:
            return value
        if self.member is not None:
            if member_path(value) != self.member or type_problem(self.sparkplug_type, member_value(value)) is not None:
                return value
            return {self.member: normalize_value(self.sparkplug_type, member_value(value))}
        if self.call is None:
            return normalize_value(self.sparkplug_type, value) if type_problem(self.sparkplug_type, value) is None \
                else value
        if not isinstance(value, dict):
            return value
        declared = {arg.name: arg.sparkplug_type for arg in self.call.args}
        return {k: normalize_value(declared[k], v) if k in declared and type_problem(declared[k], v) is None else v
                for k, v in value.items()}


class LineRules(_Strict):
    """The rules of one edge node (one line), by its Sparkplug ids."""

    #: Sparkplug group id, as on the wire
    group_id: str = Field(min_length=1)
    #: Sparkplug edge node id, as on the wire
    edge_node_id: str = Field(min_length=1)
    #: where the line's machine state is read (default for its rules)
    state: StateSource | None = None
    #: the writable metrics and callable methods
    metrics: list[WritableMetric] = Field(default_factory=list)

    def rule_id(self, rule: WritableMetric) -> str:
        if rule.id:
            return rule.id
        member = f"#{rule.member}" if rule.member is not None else ""
        return f"{self.edge_node_id}/{rule.device_id or '-'}/{rule.metric}{member}"

    def state_source(self, rule: WritableMetric) -> StateSource | None:
        return rule.state or self.state


class Allowlist(_Strict):
    """The command allowlist file: nothing is written to a PLC unless a rule here names it."""

    #: version of the file, recorded in every audit record
    version: str = Field(min_length=1)
    #: rules per edge node
    lines: list[LineRules] = Field(default_factory=list)

    def find(self, group_id: str, edge_node_id: str, device_id: str | None, metric: str,
             member: str | None = None) -> tuple[LineRules, WritableMetric] | None:
        """The rule of a metric, or with ``member`` the rule of that member of a template instance."""
        for line in self.lines:
            if line.group_id == group_id and line.edge_node_id == edge_node_id:
                for rule in line.metrics:
                    if rule.device_id == device_id and rule.metric == metric and rule.member == member:
                        return line, rule
        return None

    def members(self, group_id: str, edge_node_id: str, device_id: str | None, metric: str) -> list[str]:
        """The member paths of a template instance metric that rules allow writing (empty: none)."""
        return [rule.member for line in self.lines if (line.group_id, line.edge_node_id) == (group_id, edge_node_id)
                for rule in line.metrics
                if rule.device_id == device_id and rule.metric == metric and rule.member is not None]

    @classmethod
    def load(cls, path: Path) -> Allowlist:
        """Read and validate a YAML allowlist; :class:`ConfigError` names ``file:line`` and field."""
        return cls.from_source(YamlSource.read(path))

    @classmethod
    def from_yaml(cls, text: str, name: str = "<allowlist>") -> Allowlist:
        return cls.from_source(YamlSource.parse(text, name))

    @classmethod
    def from_source(cls, source: YamlSource) -> Allowlist:
        if not isinstance(source.data, dict):
            raise ConfigError(f"{source.name}: an allowlist is a mapping with 'version' and 'lines'")
        try:
            allowlist = cls.model_validate(source.data)
        except ValidationError as exc:
            raise source.error(exc) from None
        allowlist._cross_check(source)
        return allowlist

    def _cross_check(self, source: YamlSource) -> None:
        """Rules that span entries: unique targets and ids, a state source where states are named.
        Every such problem is reported, not only the first (one CI run shows them all)."""
        seen: dict[tuple[str, str, str | None, str, str | None], str] = {}
        whole: dict[tuple[str, str, str | None, str], bool] = {}
        ids: dict[str, str] = {}
        issues: list[str] = []
        for i, line in enumerate(self.lines):
            for j, rule in enumerate(line.metrics):
                loc = ("lines", i, "metrics", j)
                where, path = source.where(loc), format_loc(loc)
                key = (line.group_id, line.edge_node_id, rule.device_id, rule.metric, rule.member)
                what = f"metric {rule.metric!r}" + (f" member {rule.member!r}" if rule.member is not None else "")
                if key in seen:
                    issues.append(f"{where}: {path}: {what} of {line.edge_node_id}/"
                                  f"{rule.device_id or '-'} is already allowlisted at {seen[key]}")
                else:
                    seen[key] = where
                if whole.setdefault(key[:4], rule.member is None) != (rule.member is None):
                    issues.append(f"{where}: {path}: metric {rule.metric!r} of {line.edge_node_id}/"
                                  f"{rule.device_id or '-'} has rules for the whole metric and for members; a "
                                  "template instance is written by member, anything else as a whole")
                rule_id = line.rule_id(rule)
                if rule_id in ids:
                    issues.append(f"{where}: {path}.id: rule id {rule_id!r} is already used at {ids[rule_id]}")
                else:
                    ids[rule_id] = where
                if rule.allowed_states is not None and line.state_source(rule) is None:
                    issues.append(f"{source.where((*loc, 'allowed_states'))}: {path}.allowed_states: "
                                  "no state source; set 'state' on the rule or its line")
        if issues:
            raise ConfigError("\n".join(issues), issues)


__all__ = [
    "CONDITION_METHODS", "MAX_CONDITION_COMMENT", "PACKML_STATES", "Allowlist", "ConditionCall", "ConfigError",
    "LineRules", "MethodArg", "MethodCall", "NodeWrite", "RateLimit", "StateSource", "ValueRule", "WritableMetric",
    "condition_metric",
]
