"""``/api/alarms/acknowledge`` and ``/confirm`` build an ordinary command draft (pure part)."""

from __future__ import annotations

import pytest

from mes_adapter.commands.conditions import condition_draft
from mes_adapter.errors import InvalidLineError
from uns.isa95 import MappingMode, NamespaceMapping


def test_the_draft_addresses_the_cells_device_and_carries_the_comment() -> None:
    draft = condition_draft(NamespaceMapping(), line="acme/plant1/packaging/line1", cell="Filler",
                            condition="TemperatureAlarm", method="acknowledge", comment="checked", validity_s=30)
    assert (draft.group_id, draft.edge_node_id, draft.device_id, draft.metric, draft.value, draft.reason,
            draft.validity_s) == ("acme:plant1", "packaging:line1", "Filler", "Alarms/TemperatureAlarm/Acknowledge",
                                  "checked", "checked", 30)
    gateway = NamespaceMapping(mode=MappingMode.GATEWAY, gateway_id="gw1")
    confirm = condition_draft(gateway, line="acme/plant1/packaging/line1", cell="Filler", condition="Jam",
                              method="confirm", comment="ok")
    assert (confirm.edge_node_id, confirm.device_id, confirm.metric) == (
        "gw1", "packaging:line1:Filler", "Alarms/Jam/Confirm")


def test_a_bad_line_or_cell_is_a_value_error() -> None:
    with pytest.raises(InvalidLineError):
        condition_draft(NamespaceMapping(), line="acme/plant1", cell="Filler", condition="Jam", method="confirm",
                        comment="x")
    with pytest.raises(ValueError, match="cell"):
        condition_draft(NamespaceMapping(), line="acme/plant1/packaging/line1", cell="Fil/ler", condition="Jam",
                        method="confirm", comment="x")
