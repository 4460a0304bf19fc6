"""Hypothesis strategies producing model values for every Sparkplug 3.0 datatype.

Values are generated in the form a *decoder* gives back (e.g. Float values already rounded to
float32), so a round trip can be compared with ``==``; NaN is handled by :func:`same`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from hypothesis import strategies as st

from uns.sparkplug.datatypes import BASIC_TYPES, INT_RANGES, DataType
from uns.sparkplug.model import DataSet, MetaData, Metric, Parameter, PropertyValue, Template

TS = 1_700_000_000_000


def f32(x: float) -> float:
    """What a float32 field gives back for ``x``."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN, recursively through lists."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


floats32 = st.floats(width=32, allow_nan=False)
text = st.text(max_size=20)
timestamps = st.integers(min_value=0, max_value=2**63 - 1)
names = st.text(min_size=1, max_size=16)


def scalar_values(datatype: DataType) -> st.SearchStrategy[Any]:
    if datatype in INT_RANGES:
        low, high, _ = INT_RANGES[datatype]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low < 0 else 1]))
    return {
        DataType.Float: st.one_of(floats32, st.just(math.inf), st.just(-math.inf)),
        DataType.Double: st.floats(allow_nan=True),
        DataType.Boolean: st.booleans(),
        DataType.String: text,
        DataType.Text: text,
        DataType.UUID: st.uuids().map(str),
        DataType.DateTime: timestamps,
    }[datatype]


def array_values(datatype: DataType) -> st.SearchStrategy[list]:
    element = {
        DataType.Int8Array: DataType.Int8, DataType.Int16Array: DataType.Int16,
        DataType.Int32Array: DataType.Int32, DataType.Int64Array: DataType.Int64,
        DataType.UInt8Array: DataType.UInt8, DataType.UInt16Array: DataType.UInt16,
        DataType.UInt32Array: DataType.UInt32, DataType.UInt64Array: DataType.UInt64,
    }.get(datatype)
    if element is not None:
        low, high, _ = INT_RANGES[element]
        items: st.SearchStrategy[Any] = st.integers(low, high)
    elif datatype is DataType.FloatArray:
        items = floats32
    elif datatype is DataType.DoubleArray:
        items = st.floats(allow_nan=False)
    elif datatype is DataType.BooleanArray:
        items = st.booleans()
    elif datatype is DataType.StringArray:
        items = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
                        max_size=8)
    else:  # DateTimeArray
        items = st.integers(-(2**63), 2**63 - 1)
    return st.lists(items, max_size=12)


@st.composite
def datasets(draw: st.DrawFn) -> DataSet:
    types = draw(st.lists(st.sampled_from(sorted(BASIC_TYPES)), min_size=1, max_size=5))
    columns = [f"c{i}" for i in range(len(types))]
    rows = draw(st.lists(st.tuples(*[st.none() | scalar_values(t) for t in types]).map(list), max_size=4))
    return DataSet(columns=columns, types=types, rows=rows)


@st.composite
def property_sets(draw: st.DrawFn, depth: int = 2) -> dict[str, PropertyValue]:
    out: dict[str, PropertyValue] = {}
    for key in draw(st.lists(names, max_size=3, unique=True)):
        if key == "Quality":
            out[key] = PropertyValue(DataType.Int32, draw(st.sampled_from([0, 192, 500])))
            continue
        kinds = ["basic", "null"] + (["set", "list"] if depth > 0 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "basic":
            dt = draw(st.sampled_from(sorted(BASIC_TYPES)))
            out[key] = PropertyValue(dt, draw(scalar_values(dt)))
        elif kind == "null":
            out[key] = PropertyValue(draw(st.sampled_from(sorted(BASIC_TYPES))), None, True)
        elif kind == "set":
            out[key] = PropertyValue(DataType.PropertySet, draw(property_sets(depth - 1)))
        else:
            out[key] = PropertyValue(DataType.PropertySetList,
                                     draw(st.lists(property_sets(depth - 1), max_size=2)))
    return out


@st.composite
def templates(draw: st.DrawFn, depth: int = 1) -> Template:
    definition = draw(st.booleans())
    members = []
    for i in range(draw(st.integers(0, 3))):
        if depth > 0 and draw(st.booleans()):
            value = draw(templates(depth - 1))
            members.append(Metric(name=f"m{i}", value=value, datatype=DataType.Template))
        else:
            dt = draw(st.sampled_from(sorted(BASIC_TYPES)))
            members.append(Metric(name=f"m{i}", value=draw(scalar_values(dt)), datatype=dt))
    params = []
    for i in range(draw(st.integers(0, 3))):
        dt = draw(st.sampled_from(sorted(BASIC_TYPES)))
        params.append(Parameter(name=f"p{i}", type=dt, value=draw(st.none() | scalar_values(dt))))
    return Template(metrics=members, parameters=params, version=draw(st.none() | st.just("1.0")),
                    template_ref=None if definition else draw(names), is_definition=definition)


def values(datatype: DataType) -> st.SearchStrategy[Any]:
    if datatype.is_array:
        return array_values(datatype)
    if datatype in (DataType.Bytes, DataType.File):
        return st.binary(max_size=32)
    if datatype is DataType.DataSet:
        return datasets()
    if datatype is DataType.Template:
        return templates()
    return scalar_values(datatype)


METRIC_DATATYPES = sorted(dt for dt in DataType if dt not in (DataType.Unknown, DataType.PropertySet,
                                                              DataType.PropertySetList))


@st.composite
def metrics(draw: st.DrawFn, datatype: DataType | None = None) -> Metric:
    dt = datatype if datatype is not None else draw(st.sampled_from(METRIC_DATATYPES))
    is_null = draw(st.booleans()) if draw(st.integers(0, 9)) == 0 else False
    metadata = None
    if dt is DataType.File:
        metadata = MetaData(file_name=draw(names), content_type="application/octet-stream")
    elif draw(st.integers(0, 4)) == 0:
        metadata = MetaData(description=draw(text), size=draw(st.integers(0, 2**64 - 1)))
    return Metric(
        name=draw(names), value=None if is_null else draw(values(dt)), datatype=dt,
        alias=draw(st.none() | st.integers(0, 2**64 - 1)), timestamp=draw(timestamps),
        is_historical=draw(st.booleans()), is_transient=draw(st.booleans()), is_null=is_null,
        metadata=metadata, properties=draw(st.none() | property_sets()),
    )
