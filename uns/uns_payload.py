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

from typing import Any

from pydantic import BaseModel, ConfigDict

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
