"""Sparkplug values as JSON-ready Python, for the UNS mirror and the REST API alike.

Scalars and arrays are already JSON-friendly; what is not gets one fixed, documented shape so
every consumer reads the same thing: bytes and File as base64 text, a DataSet as
``{"columns", "types", "rows"}``, a Template instance as ``{"template_ref", "metrics": {name: value}}``,
a PropertySet as ``{key: value}``; non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import base64
import math
from typing import Any

from uns.sparkplug.model import DataSet, PropertyValue, Template


def jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, DataSet):
        return {"columns": list(value.columns), "types": [t.name for t in value.types],
                "rows": [[jsonable(cell) for cell in row] for row in value.rows]}
    if isinstance(value, Template):
        return {"template_ref": value.template_ref, "version": value.version,
                "metrics": {m.name or str(m.alias): jsonable(m.value) for m in value.metrics},
                "parameters": {p.name: jsonable(p.value) for p in value.parameters}}
    if isinstance(value, PropertyValue):
        return jsonable(value.value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(value)
