"""The one guard every command passes, on the host before dispatch and on the edge before writing.

Pure: no clock, no I/O. The caller passes ``now_ms`` and the current machine state (the value of
the rule's state metric, as the host mirror or the edge's OPC UA session last saw it). Rate-limit
state lives in the :class:`RateLimiter` held by the checker; the host and each edge node hold
their own, so a flood that slips past the host still stops at the edge.

Checks run in a fixed order and the first failure decides, so the same request always gets the
same reason:

1. ``expired``: ``now`` is past the command's deadline — ``valid_until_ms``, capped at
   ``created_at_ms + rule.validity_s`` so a requester cannot grant itself a year;
2. for a template instance metric (one with member rules, or whose born members the caller passes):
   ``wrong_type`` when the value is not one ``{"<member path>": value}`` entry, ``unknown_member``
   when the born instance has no such member, ``wrong_type`` when the rule types the member
   differently from the birth (:mod:`uns.commands.template_members`);
   then ``not_allowlisted``: no rule for (group, edge node, device, metric[, member]), naming the
   members that are allowlisted;
3. ``wrong_type`` / ``out_of_range`` / ``off_step`` / ``not_in_enum``: the value;
4. ``signature_missing`` / ``signature_invalid`` / ``signature_expired`` /
   ``second_signature_required`` / ``same_user_second_signature``: see
   :func:`uns.commands.signing.evaluate_signatures`;
5. ``wrong_machine_state``: the rule names allowed states and the current one is not among them
   (or is unknown: no state, no write);
6. ``rate_limited``: the rule's window is full. Only an *allowed* decision takes a slot.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from uns.sparkplug.datatypes import DataType

from .allowlist import Allowlist, LineRules, RateLimit, StateSource, WritableMetric
from .model import CommandRequest, ReasonCode
from .signing import SignatureRefusedError, UserRegistry, evaluate_signatures
from .template_members import member_path, member_problem

#: deadline of a command that matches no rule (it will be refused anyway; it still needs one)
DEFAULT_VALIDITY_S = 60.0


class Decision(BaseModel):
    """Allowed, or refused with a machine-readable reason and a message for people."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: ReasonCode | None = None
    message: str
    command_id: uuid.UUID
    command_hash: str
    rule_id: str | None = None
    allowlist_version: str
    critical: bool = False
    #: the machine state name the decision saw (None if not read or not needed)
    machine_state: str | None = None


class RateLimiter:
    """Sliding-window counters per rule id; feed it ``now_ms``, it never reads a clock."""

    def __init__(self) -> None:
        self._accepted: dict[str, deque[int]] = {}

    def wait_ms(self, key: str, limit: RateLimit, now_ms: int) -> int:
        """0 if a command may pass now, else how many ms until a slot frees."""
        window_ms = int(limit.per_s * 1000)
        times = self._accepted.get(key)
        if times is None:
            return 0
        while times and times[0] <= now_ms - window_ms:
            times.popleft()
        if len(times) < limit.max_writes:
            return 0
        return times[0] + window_ms - now_ms

    def record(self, key: str, now_ms: int) -> None:
        self._accepted.setdefault(key, deque()).append(now_ms)


class AllowlistChecker:
    def __init__(self, allowlist: Allowlist, users: UserRegistry, limiter: RateLimiter | None = None) -> None:
        self.allowlist = allowlist
        self.users = users
        self.limiter = limiter or RateLimiter()

    def rule_for(self, request: CommandRequest) -> tuple[LineRules, WritableMetric] | None:
        """The rule of the metric, or of the template member a ``{"<member path>": value}`` names."""
        where = (request.group_id, request.edge_node_id, request.device_id, request.metric)
        found = self.allowlist.find(*where)
        if found is None and (path := member_path(request.value)) is not None:
            found = self.allowlist.find(*where, member=path)
        return found

    def state_source(self, request: CommandRequest) -> StateSource | None:
        """Which metric the caller must read to pass ``machine_state`` (None: not needed)."""
        found = self.rule_for(request)
        if found is None or found[1].allowed_states is None:
            return None
        return found[0].state_source(found[1])

    def check(self, request: CommandRequest, machine_state: str | int | None, now_ms: int, *,
              consume: bool = True, signatures: bool = True,
              members: Mapping[str, DataType] | None = None) -> Decision:
        """Judge ``request``; with ``consume`` an allowed decision takes a rate-limit slot.

        ``members``: when the target is a template instance, its born members (member path ->
        datatype, :func:`uns.commands.template_members.born_members`), so a member it lacks is
        refused as unknown rather than as not allowlisted.

        ``signatures=False`` judges every rule *but* the signatures (a pre-check): a host asks for
        signatures only for a command that could run now (state, range, rate), and checks all
        again, signatures included, when it executes.
        """
        command_hash = request.command_hash()
        version = self.allowlist.version

        def refuse(reason: ReasonCode, message: str, rule_id: str | None = None, critical: bool = False,
                   state: str | None = None) -> Decision:
            return Decision(allowed=False, reason=reason, message=message, command_id=request.command_id,
                            command_hash=command_hash, rule_id=rule_id, allowlist_version=version,
                            critical=critical, machine_state=state)

        found = self.rule_for(request)
        deadline = request.valid_until_ms
        if found is not None:
            deadline = min(deadline, request.created_at_ms + int(found[1].validity_s * 1000))
        if now_ms > deadline:
            rule_id = found[0].rule_id(found[1]) if found else None
            return refuse(ReasonCode.EXPIRED, f"command expired {now_ms - deadline} ms ago (deadline {deadline})",
                          rule_id)
        allowed_members = self.allowlist.members(request.group_id, request.edge_node_id, request.device_id,
                                                 request.metric)
        if (allowed_members or members is not None) and (found is None or found[1].member is not None):
            path = member_path(request.value)
            if path is None:
                return refuse(ReasonCode.WRONG_TYPE,
                              f"{request.target_label} is a template instance: a write names one member, "
                              f"{{\"<member path>\": <value>}}, got {request.value!r}; allowlisted members: "
                              f"{allowed_members}")
            if members is not None:
                problem = member_problem(request.metric, path, members,
                                         found[1].sparkplug_type if found is not None else None)
                if problem is not None:
                    return refuse(problem[0], problem[1], found[0].rule_id(found[1]) if found else None)
            if found is None:
                return refuse(ReasonCode.NOT_ALLOWLISTED,
                              f"member {path!r} of {request.target_label} is not in allowlist version {version}; "
                              f"allowlisted members: {allowed_members}")
        if found is None:
            return refuse(ReasonCode.NOT_ALLOWLISTED,
                          f"{request.target_label} is not in allowlist version {version}")
        line, rule = found
        rule_id = line.rule_id(rule)
        problem = rule.value_problem(request.value)
        if problem is not None:
            return refuse(problem[0], f"{request.metric}: {problem[1]}", rule_id, rule.critical)
        try:
            if signatures:
                evaluate_signatures(request, self.users, critical=rule.critical,
                                    window_ms=int(rule.second_signature_window_s * 1000), now_ms=now_ms)
        except SignatureRefusedError as exc:
            return refuse(exc.reason, exc.message, rule_id, rule.critical)
        state_name = None
        if rule.allowed_states is not None:
            source = line.state_source(rule)
            state_name = source.name_of(machine_state) if source is not None else None
            if state_name is None:
                return refuse(ReasonCode.WRONG_MACHINE_STATE,
                              f"machine state unknown ({machine_state!r}); {request.metric} may only be written in "
                              f"{rule.allowed_states}", rule_id, rule.critical)
            if state_name.casefold() not in {s.casefold() for s in rule.allowed_states}:
                return refuse(ReasonCode.WRONG_MACHINE_STATE,
                              f"machine is {state_name}; {request.metric} may only be written in {rule.allowed_states}",
                              rule_id, rule.critical, state_name)
        if rule.rate_limit is not None:
            wait = self.limiter.wait_ms(rule_id, rule.rate_limit, now_ms)
            if wait:
                return refuse(ReasonCode.RATE_LIMITED,
                              f"{rule.rate_limit.max_writes} writes per {rule.rate_limit.per_s:g} s reached for "
                              f"{rule_id}; next slot in {wait} ms", rule_id, rule.critical, state_name)
            if consume:
                self.limiter.record(rule_id, now_ms)
        return Decision(allowed=True, message="allowed", command_id=request.command_id, command_hash=command_hash,
                        rule_id=rule_id, allowlist_version=version, critical=rule.critical, machine_state=state_name)


def build_request(allowlist: Allowlist, *, group_id: str, edge_node_id: str, device_id: str | None, metric: str,
                  value: Any, requested_by: str, reason: str, now_ms: int, validity_s: float | None = None,
                  command_id: uuid.UUID | None = None) -> CommandRequest:
    """A new unsigned request, its value normalized as the rule's datatype will carry it.

    A request for a metric without a rule is still built (it will be refused and audited on the
    same path as every other refusal).
    """
    found = allowlist.find(group_id, edge_node_id, device_id, metric)
    if found is None and (path := member_path(value)) is not None:
        found = allowlist.find(group_id, edge_node_id, device_id, metric, member=path)
    rule = found[1] if found else None
    limit_s = rule.validity_s if rule else DEFAULT_VALIDITY_S
    seconds = min(validity_s, limit_s) if validity_s is not None else limit_s
    return CommandRequest(
        command_id=command_id or uuid.uuid4(), group_id=group_id, edge_node_id=edge_node_id, device_id=device_id,
        metric=metric, value=rule.normalize(value) if rule else value, requested_by=requested_by, reason=reason,
        created_at_ms=now_ms, valid_until_ms=now_ms + max(1, int(seconds * 1000)),
    )


__all__ = ["DEFAULT_VALIDITY_S", "AllowlistChecker", "Decision", "RateLimiter", "build_request"]
