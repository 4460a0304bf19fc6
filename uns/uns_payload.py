"""The plain-JSON payloads of the UNS mirror: the contract every plant app and MQTT explorer reads.

``<metric topic>`` (retained, QoS 1)::

    {"value": 72.4, "timestamp_ms": 1733904005123, "quality": "GOOD", "status_code": 0,
     "datatype": "Double", "unit": "degC"}

a superset of UMH Core's ``{"value", "timestamp_ms"}`` so such consumers can ignore the extras.
Bad data has ``"value": null``. A value whose quality the edge (or host) degraded says why
in ``reason`` (and ``raw_value`` when the edge withheld the raw reading)::

    {"value": null, "timestamp_ms": 1733904005123, "quality": "BAD", "status_code": 2151415808,
     "reason": "out_of_range", "raw_value": "-9999.0", "datatype": "Double", "unit": "degC"}
A template instance's ``value`` is an object of its members (nested templates nested), a DataSet's
a list of row objects (``docs/templates.md``).

``<metric topic>/_meta`` (retained) describes the tag once; for a template instance ``template``
gives its name, version and member datatypes, for a DataSet ``columns`` its columns and types.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic_core import SchemaSerializer, core_schema

from uns.conventions import Quality


class UnsValue(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: Any = None
    timestamp_ms: int
    quality: Quality = Quality.GOOD
    status_code: int | None = None
    datatype: str | None = None
    unit: str | None = None
    #: the value came from store-and-forward replay or back-fill, not live
    is_historical: bool = False
    #: the source timestamp lies in the future of the edge node's clock
    future_timestamp: bool = False
    #: why ``quality`` is not GOOD, when known: out_of_range, max_age, frozen, future_timestamp,
    #: old_timestamp, bad_status, comm_lost (``uns.conventions.QualityReason``); absent when GOOD
    reason: str | None = None
    #: the raw source value the edge withheld (e.g. an out-of-range reading), as text
    raw_value: str | None = None

    def to_bytes(self) -> bytes:
        """The JSON payload without the optional fields left unset; ``value`` is always present
        (``null`` for Bad data: a reader must see that the value is unknown, not missing)."""
        body = self.model_dump_json(exclude_none=True, exclude_defaults=False).encode()
        return body if self.value is not None else b'{"value":null,' + body[1:]


#: the serializer pydantic gives ``UnsValue.value`` (``Any``, non-finite floats as ``null``)
_ANY = SchemaSerializer(core_schema.any_schema(), core_schema.CoreConfig(ser_json_inf_nan="null"))
_QUALITY = {quality: f',"quality":"{quality.value}"'.encode() for quality in Quality}


def value_json(value: Any, timestamp_ms: int, quality: Quality = Quality.GOOD, status_code: int | None = None,
               datatype: str | None = None, unit: str | None = None, is_historical: bool = False,
               future_timestamp: bool = False, reason: str | None = None, raw_value: str | None = None) -> bytes:
    """Exactly the bytes of ``UnsValue(...).to_bytes()`` for the same fields, without building the model.

    The UNS mirror builds one payload per change: at 10,000 changes/s validating and dumping a
    pydantic model was ~20 % of the host's CPU (issue 20). Here the parts a metric repeats (status,
    datatype, unit, flags) are formatted once per distinct combination and cached; per change only
    ``value`` and ``timestamp_ms`` are formatted. ``value`` (already JSON-ready, as
    ``mes_adapter.host.template_json.uns_value`` leaves it) and strings go through pydantic-core's
    own serializer with the model's settings (``Any``, NaN and ±inf as ``null``), so floats (``1e-7``, ``0.00001``), big
    integers, unicode and escapes come out byte for byte the same; ``UnsValue`` stays the contract
    and tests/host/test_mirror_json.py compares the two over generated states.
    """
    try:
        quality_part = _QUALITY[quality]
    except KeyError:
        raise ValueError(f"quality must be one of {', '.join(Quality)}, not {quality!r}") from None
    extra = b""
    if reason is not None:
        extra = b',"reason":' + _ANY.to_json(reason)
    if raw_value is not None:
        extra += b',"raw_value":' + _ANY.to_json(raw_value)
    return b'{"value":%b,"timestamp_ms":%d%b%b%b}' % (
        b"null" if value is None else _ANY.to_json(value), timestamp_ms, quality_part,
        _fixed_fields(status_code, datatype, unit, is_historical, future_timestamp), extra)


@lru_cache(maxsize=4096)
def _fixed_fields(status_code: int | None, datatype: str | None, unit: str | None, is_historical: bool,
                  future_timestamp: bool) -> bytes:
    """The fields between ``quality`` and ``reason``: the same for most changes of a metric."""
    out = b""
    if status_code is not None:
        out += b',"status_code":%d' % status_code
    if datatype is not None:
        out += b',"datatype":' + _ANY.to_json(datatype)
    if unit is not None:
        out += b',"unit":' + _ANY.to_json(unit)
    return (out + (b',"is_historical":true' if is_historical else b',"is_historical":false')
            + (b',"future_timestamp":true' if future_timestamp else b',"future_timestamp":false'))


class UnsMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")

    datatype: str
    unit: str | None = None
    eng_low: float | None = None
    eng_high: float | None = None
    description: str | None = None
    group_id: str
    edge_node_id: str
    device_id: str | None = None
    metric_name: str
    alias: int | None = None
    #: a template instance's type: {"name", "version", "members": {member: datatype or nested type}}
    template: dict[str, Any] | None = None
    #: a DataSet's columns: [{"name", "datatype"}], in column order
    columns: list[dict[str, str]] | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()
