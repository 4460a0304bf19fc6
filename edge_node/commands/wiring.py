"""Composing the command executor from the edge config: rules, users, audit chain, OPC UA maps.

Kept out of :mod:`edge_node.app` so the app stays composition-only and this can be tested and
reused (benchmarks build the same runtime). Without a ``commands:`` section the executor still
runs, with an empty allowlist: every command is refused (``not_allowlisted``) and audited, so a
DCMD never vanishes silently and nothing is written.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from uns.audit.chain import AuditLog
from uns.commands.allowlist import Allowlist
from uns.commands.checker import AllowlistChecker
from uns.commands.signing import UserRegistry
from uns.sparkplug.datatypes import DataType

from ..config import ConfigError, EdgeConfig
from ..model import MetricDefinition
from .edge_client import EdgeClient
from .executor import CommandExecutor, ConditionLookup, StateNode, TemplateMembersLookup

log = logging.getLogger("edge_node.command_wiring")  # its name before edge_node.commands

#: the allowlist version reported when the edge has no ``commands:`` section
NO_ALLOWLIST_VERSION = "none (no commands section in the edge config)"


def load_rules(config: EdgeConfig) -> tuple[Allowlist, UserRegistry]:
    """The allowlist and user registry of this edge; empty ones when commands are not configured."""
    commands = config.commands
    if commands is None or commands.allowlist is None:
        return Allowlist(version=NO_ALLOWLIST_VERSION), UserRegistry()
    allowlist = Allowlist.load(commands.allowlist)
    assert commands.users is not None  # CommandsConfig requires it with an allowlist
    try:
        users = UserRegistry.load(commands.users)
    except ValueError as exc:
        raise ConfigError(f"commands.users: {exc}") from None
    return allowlist, users


def command_definitions(config: EdgeConfig, existing: list[MetricDefinition]) -> list[MetricDefinition]:
    """String metrics for this edge's method-call and condition rules that are not tags already.

    A command can only address a metric the birth declared (the session refuses the rest), and
    a method has no OPC UA variable to be a tag, so each ``call:`` rule is born as a writable
    String metric (its command value is the JSON object of the arguments, uns.commands.wire),
    and so is each ``condition:`` rule (``Alarms/<Name>/Acknowledge``, its value the comment).
    """
    allowlist, _ = load_rules(config)
    group_id, edge_node_id = config.sparkplug_ids()
    known = {(d.device_id, d.name) for d in existing}
    out: list[MetricDefinition] = []
    for line in allowlist.lines:
        if (line.group_id, line.edge_node_id) != (group_id, edge_node_id):
            continue
        for rule in line.metrics:
            if (rule.call is not None or rule.condition is not None) and (rule.device_id, rule.metric) not in known:
                what = "OPC UA method" if rule.call is not None else "OPC UA condition method"
                out.append(MetricDefinition(device_id=rule.device_id, name=rule.metric, datatype=DataType.String,
                                            description=rule.description or f"{what} (command only)",
                                            writable=True))
                known.add((rule.device_id, rule.metric))
    return out


@dataclass
class CommandRuntime:
    """The running executor and the audit chain it writes."""

    executor: CommandExecutor
    audit: AuditLog

    async def stop(self) -> None:
        await self.executor.stop()
        await asyncio.to_thread(self.audit.close)


async def start_commands(config: EdgeConfig, client: EdgeClient, conditions: ConditionLookup | None = None,
                         template_members: TemplateMembersLookup | None = None) -> CommandRuntime:
    """Build and start the executor (it resumes or closes what the last run left open, see
    :mod:`edge_node.commands.recovery`), and make it the client's NCMD/DCMD handler, also for
    commands the client's session could not decode. ``conditions`` finds the ConditionId and
    newest EventId of a condition (the endpoints' alarm books) for Acknowledge / Confirm rules;
    ``template_members`` the members of a template instance metric (the sources' types) for
    member rules."""
    allowlist, users = load_rules(config)
    commands = config.commands
    audit_path = (commands.audit_db if commands and commands.audit_db else config.data_dir / "audit" / "commands.db")
    audit = await asyncio.to_thread(AuditLog, audit_path,
                                    witness_path=commands.audit_witness if commands else None)
    group_id, edge_node_id = config.sparkplug_ids()
    device_endpoint: dict[str | None, str] = {}
    state_nodes: dict[tuple[str | None, str], StateNode] = {}
    for tag in config.tags:
        device = config.device_id(tag)
        endpoint = config.endpoint_of(tag)
        device_endpoint.setdefault(device, endpoint)
        state_nodes[(device, tag.metric)] = StateNode(endpoint, tag.node_id)
    default_endpoint = config.opcua[0].name

    def endpoint_of_device(device_id: str | None) -> str:
        """A device's commands go to the server that feeds it; node-level ones to the first endpoint."""
        return device_endpoint.get(device_id, default_endpoint)

    executor = CommandExecutor(
        group_id=group_id, edge_node_id=edge_node_id, mapping=config.mapping,
        checker=AllowlistChecker(allowlist, users), audit=audit, publisher=client, endpoints=config.opcua,
        data_dir=config.data_dir, endpoint_of_device=endpoint_of_device, state_nodes=state_nodes,
        conditions=conditions, template_members=template_members)
    await executor.start()
    client.set_command_handler(executor.handle)
    client.set_rejected_command_handler(executor.handle_rejected)
    if commands is None or commands.allowlist is None:
        log.warning("no commands allowlist configured: every NCMD/DCMD will be refused and audited")
    return CommandRuntime(executor, audit)


__all__ = ["NO_ALLOWLIST_VERSION", "CommandRuntime", "command_definitions", "load_rules", "start_commands"]
