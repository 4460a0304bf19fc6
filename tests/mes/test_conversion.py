"""Quantities in the material's unit (issue 19 leftovers, item 3): the conversion config is validated,
and a confirmation carries the counts and the converted quantities, here against a hand computation.

The line: a light barrier gives 2 pulses per bottle (``pulse -> EA`` × 0.5) and a bottle of SKU-12
weighs 12.5 g (``EA -> kg`` × 0.0125); the glue pump's counter gives a pulse per 0.1 l of glue, and
glue weighs 0.92 kg/l (``pulse -> l`` × 0.1, ``l -> kg`` × 0.92).

Counted in the batch: GoodCount 0 → 1000 pulses, RejectCount 0 → 40 pulses, GluePulses 0 → 250.
By hand: good 1000 pulses = 500 EA = 6.25 kg; scrap 40 pulses = 20 EA = 0.25 kg; glue 250 pulses
= 25 l = 23 kg.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mes_adapter.config.mes import CounterSignal, LineConfig, MesConfig
from mes_adapter.confirmations.outbox import Outbox
from mes_adapter.confirmations.planning import canonical_json
from mes_adapter.confirmations.service import ConfirmationService
from mes_adapter.context import ContextAssertion, ContextService, ContextStore
from mes_adapter.production.conversion import QuantityConversion
from mes_adapter.production.counters import CounterSample
from mes_adapter.production.quantities import ProductionCounters, ProductionStore
from tests.mes.helpers import LINE, H

T0 = 1_705_471_200_000

LINE_YAML = f"""
line: {LINE}
counters:
  - {{metric: GoodCount, role: good}}
  - {{metric: RejectCount, role: reject}}
  - metric: GluePulses
    role: consumed
    material_id: RM-GLUE
    uom: pulse
    conversion:
      counted_in: pulse
      steps: [{{to: l, factor: 0.1}}, {{to: kg, factor: 0.92}}]
conversions:
  SKU-12:
    counted_in: pulse
    steps: [{{to: EA, factor: 0.5}}, {{to: kg, factor: 0.0125}}]
"""


def _final(tmp_path: Path, product_id: str) -> dict:
    """The final confirmation of batch B-1 of ``product_id`` with the counts of the module docstring."""
    config = MesConfig(data_dir=tmp_path, lines=[LineConfig.model_validate(yaml.safe_load(LINE_YAML))],
                       partial_interval_s=None, confirmation_grace_s=60)
    context = ContextService(ContextStore(config.context_db))
    production = ProductionCounters(config, ProductionStore(config.production_db))
    confirmations = ConfirmationService(config, context, production, Outbox(config.outbox_db))
    context.assert_context(ContextAssertion(line=LINE, seq=1, since_ms=T0, batch_id="B-1", work_order_id="WO-1",
                                            product_id=product_id, target_quantity=500, uom="EA"))
    for metric, end in (("GoodCount", 1000), ("RejectCount", 40), ("GluePulses", 250)):
        production.observe(LINE, None, metric, CounterSample(0, T0 + 1, True))
        production.observe(LINE, None, metric, CounterSample(end, T0 + H // 2))
    context.assert_context(ContextAssertion(line=LINE, seq=2, since_ms=T0 + H, batch_id="B-1", ended=True))
    [final] = confirmations.run_due(T0 + 2 * H)
    assert b'"converted":' in canonical_json(final)  # the glue counter's conversion applies to every product
    return final.model_dump(mode="json")


def test_a_confirmation_carries_counts_and_converted_quantities(tmp_path: Path) -> None:
    body = _final(tmp_path, "SKU-12")
    assert body["produced"] == [{
        "material_id": "SKU-12", "lot_id": "B-1", "uom": "pulse", "good": 1000, "scrap": 40, "rework": 0,
        "converted": {"uom": "kg", "via": ["pulse", "EA", "kg"], "factors": [0.5, 0.0125],
                      "good": 6.25, "scrap": 0.25, "rework": 0}}]
    assert body["consumed"] == [{
        "material_id": "RM-GLUE", "lot_id": None, "uom": "pulse", "quantity": 250,
        "converted": {"uom": "kg", "via": ["pulse", "l", "kg"], "factors": [0.1, 0.92], "quantity": 23}}]


def test_a_product_without_a_conversion_is_confirmed_as_counted(tmp_path: Path) -> None:
    body = _final(tmp_path, "SKU-77")
    assert body["produced"] == [{"material_id": "SKU-77", "lot_id": "B-1", "uom": "EA", "good": 1000, "scrap": 40,
                                 "rework": 0}]


def test_conversion_arithmetic_is_step_by_step_and_rounded() -> None:
    chain = QuantityConversion.model_validate({"counted_in": "pulse", "steps": [{"to": "l", "factor": 0.1},
                                                                                {"to": "kg", "factor": 0.92}]})
    assert 3 * 0.1 != 0.3  # what the rounding is for
    assert (chain.convert(3), chain.convert(250), chain.convert(-10), chain.convert(0), chain.uom, chain.units) == (
        0.276, 23.0, -0.92, 0.0, "kg", ["pulse", "l", "kg"])
    assert math.copysign(1, chain.convert(-1e-12)) == 1.0  # no -0.0 on the wire


@pytest.mark.parametrize(("conversion", "message"), [
    ({"counted_in": "pulse", "steps": [{"to": "EA", "factor": 0}]}, "must be finite and > 0, not 0.0"),
    ({"counted_in": "pulse", "steps": [{"to": "EA", "factor": -2}]}, "must be finite and > 0, not -2.0"),
    ({"counted_in": "pulse", "steps": [{"to": "EA", "factor": "nan"}]}, "must be finite and > 0, not nan"),
    ({"counted_in": "pulse", "steps": [{"to": "EA", "factor": "inf"}]}, "must be finite and > 0, not inf"),
    ({"counted_in": "pulse", "steps": []}, "at least 1 item"),
    ({"counted_in": "", "steps": [{"to": "EA", "factor": 1}]}, "at least 1 character"),
    ({"counted_in": "pulse", "steps": [{"to": "", "factor": 1}]}, "at least 1 character"),
    ({"counted_in": "pulse", "steps": [{"factor": 1}]}, "to\n  Field required"),
    ({"counted_in": "EA", "steps": [{"to": "kg", "factor": 2}, {"to": "EA", "factor": 0.5}]},
     "a conversion names each unit once: EA -> kg -> EA"),
    ({"counted_in": "a", "steps": [{"to": "b", "factor": 1e300}, {"to": "c", "factor": 1e300}]},
     "multiply to inf"),
    ({"counted_in": "pulse", "steps": [{"to": "EA", "factor": 1, "offset": 3}]}, "Extra inputs are not permitted"),
])
def test_a_bad_conversion_is_refused_naming_why(conversion: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        QuantityConversion.model_validate(conversion)


def test_counter_conversions_belong_to_consumed_counters_in_their_unit() -> None:
    glue = {"metric": "GluePulses", "role": "consumed", "material_id": "RM-GLUE", "uom": "pulse",
            "conversion": {"counted_in": "pulse", "steps": [{"to": "l", "factor": 0.1}]}}
    assert CounterSignal.model_validate(glue).conversion is not None
    with pytest.raises(ValidationError, match="counter GluePulses counts in 'stroke', but its conversion starts "
                                              "from 'pulse'"):
        CounterSignal.model_validate({**glue, "uom": "stroke"})
    with pytest.raises(ValidationError, match="a counter conversion is for consumed counters"):
        CounterSignal.model_validate({"metric": "GoodCount", "role": "good", "conversion": glue["conversion"]})
