"""Type judgement, normalization and the read-back comparison the executor will use."""

from __future__ import annotations

import pytest

from uns.commands.values import normalize_value, parse_writable_datatype, type_problem, values_match
from uns.sparkplug.datatypes import DataType


@pytest.mark.parametrize(("datatype", "value", "ok"), [
    (DataType.Int16, 5, True), (DataType.Int16, 40000, False), (DataType.UInt8, -1, False),
    (DataType.Int32, True, False), (DataType.Int32, 5.0, False), (DataType.Double, 5, True),
    (DataType.Float, 1e39, False), (DataType.Boolean, 0, False), (DataType.String, 5, False),
    (DataType.DateTime, 1_760_000_000_000, True), (DataType.DateTime, -1, False), (DataType.Text, "x", True),
])
def test_type_problem(datatype: DataType, value: object, ok: bool) -> None:
    assert (type_problem(datatype, value) is None) is ok


def test_normalize() -> None:
    assert normalize_value(DataType.Float, 0.1) == pytest.approx(0.1, abs=1e-8)
    assert normalize_value(DataType.Float, 0.1) != 0.1
    assert normalize_value(DataType.Double, 5) == 5.0 and isinstance(normalize_value(DataType.Double, 5), float)
    assert normalize_value(DataType.Int32, 5) == 5


def test_values_match() -> None:
    assert values_match(DataType.Double, 120.5, 120.509, tolerance=0.01)
    assert not values_match(DataType.Double, 120.5, 120.52, tolerance=0.01)
    assert values_match(DataType.Float, 72.4, normalize_value(DataType.Float, 72.4))
    assert values_match(DataType.Int64, 2**62 + 1, 2**62 + 1) and not values_match(DataType.Int64, 2**62 + 1, 2**62)
    assert not values_match(DataType.Int32, 1, True) and not values_match(DataType.Int32, 1, None)
    assert values_match(DataType.String, "SKU-14", "SKU-14") and not values_match(DataType.Boolean, True, 1)


def test_parse_writable_datatype() -> None:
    assert parse_writable_datatype("Double") is DataType.Double
    with pytest.raises(ValueError, match="not writable"):
        parse_writable_datatype("DataSet")
