"""The request side of commands: submit → allowlist → audit → signatures → DCMD/NCMD → result → audit.

Every path a command can take is audited through :mod:`uns.commands.audit_events` so the host and
the edge record the same fields. The states a command moves through (``status``):

``awaiting_signature`` → (requester signs) → ``awaiting_second_signature`` (critical rules) →
``dispatched`` → ``confirmed`` | ``mismatch`` | ``timeout`` | ``failed`` | ``expired`` | ``refused``
(the edge's verdict, from ``<line>/_cmd/result/<id>``). A refusal by the allowlist at any step ends
it as ``refused`` with the checker's reason code; a command that could not be sent (target offline,
MQTT down) ends as ``not_dispatched``. Without an edge executor a command stays ``dispatched``:
nothing here invents a result.

The token says who is calling; the Ed25519 signature (made with the user's own key, see
:mod:`uns.commands.signing`) is what authorizes a write. A caller may only add *their own*
signature; adding one to someone else's command (an approval) needs the supervisor role.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mes_adapter.auth import AuthError, Principal, Role
from mes_adapter.context import ContextService
from mes_adapter.errors import MesError
from mes_adapter.host import LiveModel
from mes_adapter.host.uns_link import LinkDownError, UnsLink
from uns.audit.chain import AuditLog
from uns.audit.query import AuditQueryError, AuditReader
from uns.audit.record import AuditEntry, AuditEvent
from uns.commands import audit_events
from uns.commands.allowlist import Allowlist, WritableMetric
from uns.commands.checker import AllowlistChecker, Decision, build_request
from uns.commands.model import CommandRequest, CommandResult, ReasonCode, Signature
from uns.commands.signing import SignatureRefusedError, UserRegistry, verify_signature
from uns.commands.template_members import born_members
from uns.commands.wire import CommandWireError, encode_command
from uns.conventions import Quality
from uns.isa95 import NamespaceMapping
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import Template, now_ms

log = logging.getLogger("uns.adapter.commands")

SOURCE = "mes-adapter"


class CommandStatus(StrEnum):
    AWAITING_SIGNATURE = "awaiting_signature"
    AWAITING_SECOND_SIGNATURE = "awaiting_second_signature"
    REFUSED = "refused"
    NOT_DISPATCHED = "not_dispatched"
    DISPATCHED = "dispatched"
    CONFIRMED = "confirmed"
    MISMATCH = "mismatch"
    TIMEOUT = "timeout"
    FAILED = "failed"
    EXPIRED = "expired"
    #: withdrawn before it ran, by its requester or a supervisor
    CANCELLED = "cancelled"
    #: an approver refused to sign it, with a reason
    REJECTED = "rejected"

    @property
    def open(self) -> bool:
        return self in (CommandStatus.AWAITING_SIGNATURE, CommandStatus.AWAITING_SECOND_SIGNATURE)


_WAITING = {ReasonCode.SIGNATURE_MISSING: CommandStatus.AWAITING_SIGNATURE,
            ReasonCode.SECOND_SIGNATURE_REQUIRED: CommandStatus.AWAITING_SECOND_SIGNATURE}


@dataclass
class CommandRecord:
    request: CommandRequest
    status: CommandStatus
    client_id: str
    decision: Decision | None = None
    result: CommandResult | None = None
    message: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    dispatched_ms: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def note(self, status: CommandStatus, message: str, at_ms: int) -> None:
        self.status = status
        self.message = message
        self.updated_ms = at_ms
        self.history.append({"at_ms": at_ms, "status": status.value, "message": message})


class CommandError(MesError):
    """A command request the API must answer with a 4xx/503; ``reason`` is machine-readable."""

    def __init__(self, status: int, reason: str, message: str, record: CommandRecord | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.record = record


#: HTTP status of an allowlist refusal, by reason: a conflict with the plant's state is 409, a rate 429
_REFUSAL_STATUS = {ReasonCode.WRONG_MACHINE_STATE: 409, ReasonCode.RATE_LIMITED: 429}


@dataclass(frozen=True, slots=True)
class CommandDraft:
    """What a caller asks for; the service builds the :class:`CommandRequest` (id, times, normalized value)."""

    group_id: str
    edge_node_id: str
    device_id: str | None
    metric: str
    value: Any
    reason: str
    validity_s: float | None = None


class CommandService:
    def __init__(self, *, allowlist: Allowlist | None, registry: UserRegistry, audit: AuditLog, link: UnsLink,
                 model: LiveModel, mapping: NamespaceMapping, context: ContextService,
                 on_change: Callable[[CommandRecord], None] | None = None,
                 keep_finished: int = 1000, clock: Callable[[], int] = now_ms) -> None:
        self.allowlist = allowlist or Allowlist(version="none (no allowlist configured)")
        self.checker = AllowlistChecker(self.allowlist, registry)
        self._audit = audit
        self._link = link
        self._model = model
        self._mapping = mapping
        self._context = context
        self._on_change = on_change
        self._keep = keep_finished
        self._clock = clock
        self._records: OrderedDict[uuid.UUID, CommandRecord] = OrderedDict()
        self.results_unmatched = 0
        #: results for a command that already had its final result (e.g. the edge refusing a replay)
        self.results_after_final = 0
        self.results_invalid = 0

    # -- reading ---------------------------------------------------------------------------------

    def get(self, command_id: uuid.UUID) -> CommandRecord | None:
        return self._records.get(command_id)

    def records(self, limit: int = 100) -> list[CommandRecord]:
        return list(reversed(self._records.values()))[:limit]

    def audit_trail(self, command_id: uuid.UUID) -> list[dict[str, Any]]:
        """The audited steps of one command, oldest first, read from the audit database (survives restarts)."""
        try:
            with AuditReader(self._audit.path) as reader:
                records = reader.command_trail(str(command_id))
        except AuditQueryError:
            return []
        out = []
        for record in records:
            try:
                out.append(record.fields())
            except AuditQueryError:
                continue
        return out

    # -- submit ----------------------------------------------------------------------------------

    async def submit(self, principal: Principal, client_id: str, *, draft: CommandDraft | None = None,
               request: CommandRequest | None = None) -> CommandRecord:
        """Create a command (from a draft or a request signed offline) and take it as far as it can go."""
        now = self._clock()
        if request is None:
            if draft is None:
                raise CommandError(422, "no_command", "give either the command fields or a signed 'request'")
            try:
                request = build_request(self.allowlist, group_id=draft.group_id, edge_node_id=draft.edge_node_id,
                                        device_id=draft.device_id, metric=draft.metric, value=draft.value,
                                        requested_by=principal.user_id, reason=draft.reason, now_ms=now,
                                        validity_s=draft.validity_s)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise CommandError(422, "invalid_command", _first_error(exc)) from None
        elif request.requested_by != principal.user_id:
            raise CommandError(403, "not_requester",
                               f"the request names {request.requested_by!r} as requester but the token is "
                               f"{principal.user_id!r}'s; submit your own commands")
        if request.command_id in self._records:
            raise CommandError(409, "duplicate_command_id", f"command {request.command_id} was already submitted")
        record = CommandRecord(request, CommandStatus.AWAITING_SIGNATURE, client_id, created_ms=now, updated_ms=now)
        self._remember(record)
        self._append(audit_events.requested(request, self._audit_context(record)))
        for signature in request.signatures:
            self._append(audit_events.signed(request, signature, self._audit_context(record)))
        await self._advance(record)
        return record

    # -- sign ------------------------------------------------------------------------------------

    async def sign(self, principal: Principal, command_id: uuid.UUID, signature: Signature) -> CommandRecord:
        record = self._open_record(command_id, "it takes no more signatures")
        if signature.user_id != principal.user_id:
            raise CommandError(403, "not_your_signature",
                               f"the signature is {signature.user_id!r}'s but the token is {principal.user_id!r}'s; "
                               "each user adds only their own signature")
        if signature.user_id != record.request.requested_by and not principal.has(Role.SUPERVISOR):
            raise AuthError(403, "role_required",
                            f"approving another user's command needs role supervisor; user "
                            f"{principal.user_id!r} has role {principal.role.label}")
        if any(s.user_id == signature.user_id and s.meaning == signature.meaning for s in record.request.signatures):
            raise CommandError(409, "already_signed",
                               f"{signature.user_id!r} already signed command {command_id} "
                               f"as {signature.meaning.value}")
        try:
            verify_signature(signature, record.request.command_hash(), self.checker.users)
        except SignatureRefusedError as exc:
            now = self._clock()
            record.history.append({"at_ms": now, "status": record.status.value,
                                   "message": f"signature refused: {exc.message}"})
            log.warning("command %s: signature of %s refused: %s", command_id, signature.user_id, exc.message)
            raise CommandError(422, exc.reason.value, exc.message, record) from None
        record.request = record.request.with_signature(signature)
        self._append(audit_events.signed(record.request, signature, self._audit_context(record)))
        await self._advance(record)
        return record

    # -- approvals: the queue, cancel, reject ----------------------------------------------------

    def approvals(self, principal: Principal) -> list[CommandRecord]:
        """Open commands waiting for a signature ``principal`` may add, oldest first: their own
        unsigned commands, and (supervisors) other users' commands awaiting a second signature."""
        out = []
        for record in self._records.values():
            request = record.request
            if record.status is CommandStatus.AWAITING_SIGNATURE and request.requested_by == principal.user_id:
                out.append(record)
            elif (record.status is CommandStatus.AWAITING_SECOND_SIGNATURE and principal.has(Role.SUPERVISOR)
                  and request.requested_by != principal.user_id
                  and all(s.user_id != principal.user_id for s in request.signatures)):
                out.append(record)
        return out

    def current_value(self, request: CommandRequest) -> tuple[Any, str] | None:
        """The target's live value and quality, shown beside the requested one (None: not born)."""
        state = self._model.metric(request.group_id, request.edge_node_id, request.device_id, request.metric)
        return None if state is None else (state.to_dict()["value"], state.quality.value)

    def cancel(self, principal: Principal, command_id: uuid.UUID, reason: str) -> CommandRecord:
        """Withdraw an open command: its requester, or a supervisor. Audited; it takes no more signatures."""
        record = self._open_record(command_id)
        if record.request.requested_by != principal.user_id and not principal.has(Role.SUPERVISOR):
            raise AuthError(403, "role_required", f"cancelling another user's command needs role supervisor; user "
                                                  f"{principal.user_id!r} has role {principal.role.label}")
        return self._close(record, principal, CommandStatus.CANCELLED, "cancelled", reason)

    def reject(self, principal: Principal, command_id: uuid.UUID, reason: str) -> CommandRecord:
        """An approver refuses to sign: a supervisor other than the requester, with a reason."""
        record = self._open_record(command_id)
        if not principal.has(Role.SUPERVISOR):
            raise AuthError(403, "role_required", f"rejecting a command needs role supervisor; user "
                                                  f"{principal.user_id!r} has role {principal.role.label}")
        if record.request.requested_by == principal.user_id:
            raise CommandError(403, "own_command", "the requester cannot reject their own command; cancel it")
        return self._close(record, principal, CommandStatus.REJECTED, "rejected", reason)

    def _open_record(self, command_id: uuid.UUID, closed: str = "it cannot be cancelled or rejected") -> CommandRecord:
        record = self._records.get(command_id)
        if record is None:
            raise CommandError(404, "unknown_command", f"no open command {command_id}")
        if not record.status.open:
            raise CommandError(409, "not_open", f"command {command_id} is {record.status.value}; {closed}", record)
        return record

    def _close(self, record: CommandRecord, principal: Principal, status: CommandStatus, code: str,
               reason: str) -> CommandRecord:
        if not reason.strip():
            raise CommandError(422, "reason_required", f"say why the command is {status.value} (audited)")
        message = f"{status.value} by {principal.user_id}: {reason.strip()}"
        self._append(audit_events.command_entry(
            AuditEvent.REFUSED, record.request, self._audit_context(record), rule=self._rule(record),
            actor_user_id=principal.user_id, outcome=status.value, reason_code=code, message=message))
        self._set(record, status, message)
        return record

    # -- results from the edge -------------------------------------------------------------------

    def handle_result(self, topic: str, payload: bytes) -> None:
        try:
            result = CommandResult.from_bytes(payload)
        except ValueError as exc:
            self.results_invalid += 1
            log.warning("command result on %s is invalid: %s", topic, exc)
            return
        record = self._records.get(result.command_id)
        if record is None:
            self.results_unmatched += 1
            log.info("command result for %s, which this adapter did not dispatch (or forgot)", result.command_id)
            return
        if record.result is not None and record.result == result:
            return  # retained redelivery
        if record.result is not None:
            # Every outcome is final: a second one cannot change what happened to the PLC. The case
            # that happens is the edge refusing a replay of this command's DCMD ("replayed"): the
            # write already ran and was confirmed, so the record must keep saying so.
            self.results_after_final += 1
            log.warning("command %s already ended %s; a later result %s (%s) is not applied",
                        result.command_id, record.result.outcome.value, result.outcome.value,
                        result.message or "no message")
            return
        if result.command_hash is not None and result.command_hash != record.request.command_hash():
            self.results_invalid += 1
            log.warning("command result for %s names hash %s…, not the dispatched command's; ignored",
                        result.command_id, result.command_hash[:16])
            return
        self._append(audit_events.result_entry(record.request, result, self._audit_context(record), self._rule(record)))
        # the API reads records from its worker threads while this runs on the link: the audit row
        # first, then the final status, then the result, so a reader that sees the result also sees
        # the status it ended with (it saw `dispatched` beside a refusal while the audit row was written)
        record.note(CommandStatus(result.outcome.value), result.message or result.outcome.value, self._clock())
        record.result = result
        if self._on_change is not None:
            self._on_change(record)

    # -- internals -------------------------------------------------------------------------------

    async def _advance(self, record: CommandRecord) -> None:
        request = record.request
        members = self._born_members(request)
        decision = self.checker.check(request, self._machine_state(request), self._clock(), consume=True,
                                      members=members)
        record.decision = decision
        if not decision.allowed:
            assert decision.reason is not None
            waiting = _WAITING.get(decision.reason)
            if waiting is not None:
                # ask for signatures only for a command that could run now: state, range, rate
                pre = self.checker.check(request, self._machine_state(request), self._clock(), consume=False,
                                         signatures=False, members=members)
                if pre.allowed:
                    self._set(record, waiting, decision.message)
                    return
                decision = record.decision = pre
            self._append(audit_events.refused(request, decision, self._audit_context(record), self._rule(record)))
            self._set(record, CommandStatus.REFUSED, decision.message)
            raise CommandError(_REFUSAL_STATUS.get(decision.reason, 422), decision.reason.value, decision.message,
                               record)
        await self._dispatch(record, decision)

    async def _dispatch(self, record: CommandRecord, decision: Decision) -> None:
        request = record.request
        rule = self._rule(record)
        assert rule is not None  # an allowed decision has a rule
        problem = self._target_problem(request)
        if problem is None:
            self._append(audit_events.dispatched(request, decision, self._audit_context(record), rule))
            now = self._clock()
            state = self._model.metric(request.group_id, request.edge_node_id, request.device_id, request.metric)
            try:
                topic, data = encode_command(request, datatype=rule.wire_type,
                                             alias=state.alias if state is not None else None, now_ms=now,
                                             template=_instance(state.value if state is not None else None))
            except CommandWireError as exc:
                problem = (422, "wire_error", str(exc))
            else:
                try:
                    await self._link.publish_now(topic, data, qos=0)
                except LinkDownError as exc:
                    problem = (503, "mqtt_down", f"command not sent: {exc}")
                else:
                    record.dispatched_ms = now
                    self._set(record, CommandStatus.DISPATCHED, f"sent on {topic}; waiting for the edge's result")
                    return
        status, reason, message = problem
        self._append(audit_events.command_entry(
            AuditEvent.FAILED, request, self._audit_context(record), rule=rule, decision=decision,
            actor_user_id=request.requested_by, outcome="not_dispatched", reason_code=reason, message=message))
        self._set(record, CommandStatus.NOT_DISPATCHED, message)
        raise CommandError(status, reason, message, record)

    def _target_problem(self, request: CommandRequest) -> tuple[int, str, str] | None:
        node = self._model.node(request.group_id, request.edge_node_id)
        if node is None or not node.online:
            return 409, "target_offline", f"edge node {request.group_id}/{request.edge_node_id} is offline; not sent"
        if request.device_id is not None:
            device = node.devices.get(request.device_id)
            if device is None or not device.online:
                return 409, "target_offline", (f"device {request.device_id} of {request.edge_node_id} "
                                               "is offline; not sent")
        if self._model.metric(request.group_id, request.edge_node_id, request.device_id, request.metric) is None:
            return 409, "metric_not_born", (f"{request.target_label} was not declared in the target's birth; "
                                            "the edge could not resolve it")
        if not self._link.connected:
            return 503, "mqtt_down", "the adapter's MQTT session is down; command not sent"
        return None

    def _born_members(self, request: CommandRequest) -> dict[str, DataType] | None:
        """The members of the target when it is a template instance (as the host last merged it)."""
        state = self._model.metric(request.group_id, request.edge_node_id, request.device_id, request.metric)
        instance = _instance(state.value if state is not None else None)
        return born_members(instance) if instance is not None else None

    def _machine_state(self, request: CommandRequest) -> str | int | None:
        source = self.checker.state_source(request)
        if source is None:
            return None
        state = self._model.metric(request.group_id, request.edge_node_id, source.device_id, source.metric)
        if state is None or state.quality not in (Quality.GOOD, Quality.UNCERTAIN):
            return None
        value = state.value
        return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None

    def _rule(self, record: CommandRecord) -> WritableMetric | None:
        found = self.checker.rule_for(record.request)
        return found[1] if found else None

    def _audit_context(self, record: CommandRecord) -> audit_events.AuditContext:
        request = record.request
        isa95 = line = None
        try:
            equipment = self._mapping.from_sparkplug(request.group_id, request.edge_node_id, request.device_id)
            isa95, line = equipment.topic, equipment.line.topic
        except ValueError:
            pass
        batch = self._context.current(line) if line else None
        running = batch if batch is not None and not batch.ended else None
        return audit_events.AuditContext(source=SOURCE, client_id=record.client_id, isa95_path=isa95,
                                         batch_id=running.batch_id if running else None,
                                         work_order_id=running.work_order_id if running else None)

    def _append(self, entry: AuditEntry) -> None:
        self._audit.append(entry)

    def _set(self, record: CommandRecord, status: CommandStatus, message: str) -> None:
        record.note(status, message, self._clock())
        if self._on_change is not None:
            self._on_change(record)

    def _remember(self, record: CommandRecord) -> None:
        self._records[record.request.command_id] = record
        while len(self._records) > self._keep:
            oldest_id = next(iter(self._records))
            if self._records[oldest_id].status.open and len(self._records) < 2 * self._keep:
                break
            self._records.pop(oldest_id)


def _instance(value: Any) -> Template | None:
    return value if isinstance(value, Template) and not value.is_definition else None


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(command)"
        return f"{loc}: {first.get('msg', '')}".removeprefix("Value error, ")
    return str(exc)


__all__ = ["CommandDraft", "CommandError", "CommandRecord", "CommandService", "CommandStatus", "SOURCE"]
