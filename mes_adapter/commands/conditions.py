"""An acknowledgement (or confirmation) of an OPC UA condition as an ordinary command draft.

``POST /api/alarms/acknowledge`` and ``/confirm`` name a condition the way people see it on
``_alarms`` (line, cell, ConditionName); this turns that into the :class:`CommandDraft` every other
write uses, so it goes through the same allowlist, signatures, audit chain and edge executor:
the cell's Sparkplug device (the namespace mapping), the metric ``Alarms/<Name>/Acknowledge`` or
``.../Confirm`` (:func:`uns.commands.allowlist.condition_metric`) and the comment as the value
(it is also the command's reason: the why of the acknowledgement). The edge adds the ConditionId
and the newest EventId it received (docs/alarms.md "Acknowledge from the MES").
"""

from __future__ import annotations

from typing import Literal

from mes_adapter.lines import parse_line_key
from uns.commands.allowlist import condition_metric
from uns.isa95 import EquipmentPath, NamespaceMapping

from .service import CommandDraft

ConditionMethod = Literal["acknowledge", "confirm"]


def condition_draft(mapping: NamespaceMapping, *, line: str, cell: str, condition: str, method: ConditionMethod,
                    comment: str, validity_s: float | None = None) -> CommandDraft:
    """The command that calls ``method`` on the condition of ``cell``; ValueError for a bad line or cell."""
    ids = mapping.to_sparkplug(EquipmentPath(line=parse_line_key(line), cell=cell))
    return CommandDraft(group_id=ids.group_id, edge_node_id=ids.edge_node_id, device_id=ids.device_id,
                        metric=condition_metric(condition, method), value=comment, reason=comment,
                        validity_s=validity_s)


__all__ = ["ConditionMethod", "condition_draft"]
