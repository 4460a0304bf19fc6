"""EdgeNodeCatalog: DATA decoded through what the births declared."""

from __future__ import annotations

import pytest

from uns.sparkplug import sparkplug_b_pb2 as pb
from uns.sparkplug.catalog import EdgeNodeCatalog
from uns.sparkplug.codec import encode_payload
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.errors import DataTypeMismatchError, RemoteProtocolError, UnknownAliasError
from uns.sparkplug.model import Metric, Payload, Template
from uns.sparkplug.topic import MessageType

TS = 1_700_000_000_000
NB, DB, ND, DD = MessageType.NBIRTH, MessageType.DBIRTH, MessageType.NDATA, MessageType.DDATA


def _wire(message_type: MessageType, *metrics: Metric, seq: int | None = 0) -> bytes:
    return encode_payload(Payload(list(metrics), TS, seq), message_type)


@pytest.fixture
def catalog() -> EdgeNodeCatalog:
    cat = EdgeNodeCatalog()
    cat.decode(NB, _wire(NB, Metric("bdSeq", 0, DataType.Int64, timestamp=TS),
                         Metric("Node Control/Rebirth", False, DataType.Boolean, timestamp=TS),
                         Metric("Temp", -12, DataType.Int32, alias=1, timestamp=TS)))
    cat.decode(DB, _wire(DB, Metric("Speed", 1.5, DataType.Float, alias=2, timestamp=TS),
                         Metric("Count", 7, DataType.UInt64, alias=3, timestamp=TS), seq=1), "press")
    return cat


def test_ndata_and_ddata_resolve_alias_name_and_datatype(catalog: EdgeNodeCatalog) -> None:
    """tck-id-payloads-alias-data-cmd-requirement: alias-only DATA; Int32 -12 is not 4294967284."""
    node = catalog.decode(ND, _wire(ND, Metric("Temp", -13, DataType.Int32, alias=1, timestamp=TS), seq=2))
    assert (node.metrics[0].name, node.metrics[0].datatype, node.metrics[0].value) == ("Temp", DataType.Int32, -13)
    dev = catalog.decode(DD, _wire(DD, Metric("Count", 8, DataType.UInt64, alias=3, timestamp=TS), seq=3), "press")
    assert (dev.metrics[0].name, dev.metrics[0].value) == ("Count", 8)


def test_data_by_name_without_alias(catalog: EdgeNodeCatalog) -> None:
    decoded = catalog.decode(ND, _wire(ND, Metric("bdSeq", 1, DataType.Int64, timestamp=TS), seq=2))
    assert decoded.metrics[0].datatype is DataType.Int64


def test_alias_of_another_device_is_unknown(catalog: EdgeNodeCatalog) -> None:
    with pytest.raises(UnknownAliasError, match="alias 2"):
        catalog.decode(ND, _wire(ND, Metric("Speed", 1.0, DataType.Float, alias=2, timestamp=TS), seq=2))


def test_unknown_alias(catalog: EdgeNodeCatalog) -> None:
    with pytest.raises(UnknownAliasError, match="alias 99 was never declared"):
        catalog.decode(ND, _wire(ND, Metric("x", 1, DataType.Int32, alias=99, timestamp=TS), seq=2))
    with pytest.raises(UnknownAliasError, match="'Nope'"):
        catalog.decode(ND, _wire(ND, Metric("Nope", 1, DataType.Int32, timestamp=TS), seq=2))


def test_data_before_birth() -> None:
    """tck-id-payloads-ndata-order, tck-id-payloads-ddata-order: DATA needs the births first."""
    cat = EdgeNodeCatalog()
    with pytest.raises(UnknownAliasError, match="before any NBIRTH"):
        cat.decode(ND, _wire(ND, Metric("Temp", 1, DataType.Int32, alias=1, timestamp=TS), seq=1))
    cat.decode(NB, _wire(NB, Metric("bdSeq", 0, DataType.Int64, timestamp=TS)))
    with pytest.raises(UnknownAliasError, match="before any DBIRTH of device 'd1'"):
        cat.decode(DD, _wire(DD, Metric("Speed", 1.0, DataType.Float, alias=2, timestamp=TS), seq=1), "d1")


def test_alias_uniqueness_across_node_and_devices(catalog: EdgeNodeCatalog) -> None:
    """tck-id-payloads-alias-uniqueness: an alias is unique across the node and all its devices."""
    with pytest.raises(RemoteProtocolError, match="alias 1 .*'Temp'.*alias-uniqueness"):
        catalog.decode(DB, _wire(DB, Metric("Other", 1, DataType.Int32, alias=1, timestamp=TS), seq=4), "mixer")
    with pytest.raises(RemoteProtocolError, match="alias-uniqueness"):
        catalog.decode(NB, _wire(NB, Metric("A", 1, DataType.Int32, alias=5, timestamp=TS),
                                 Metric("B", 1, DataType.Int32, alias=5, timestamp=TS)))


def test_dbirth_replaces_that_device_only(catalog: EdgeNodeCatalog) -> None:
    catalog.decode(DB, _wire(DB, Metric("Speed", 2, DataType.Int16, alias=3, timestamp=TS), seq=4), "press")
    assert catalog.metrics("press")["Speed"].datatype is DataType.Int16
    assert "Count" not in catalog.metrics("press")
    assert catalog.metrics()["Temp"].alias == 1


def test_nbirth_resets_everything(catalog: EdgeNodeCatalog) -> None:
    definition = Template(metrics=[Metric("x", 0, DataType.Int32)], is_definition=True)
    catalog.decode(NB, _wire(NB, Metric("Temp", 1.5, DataType.Double, alias=10, timestamp=TS),
                             Metric("_types_/T", definition, DataType.Template, timestamp=TS)))
    assert not catalog.has_device("press")
    assert catalog.metrics()["Temp"].datatype is DataType.Double
    assert set(catalog.template_definitions) == {"_types_/T"}
    with pytest.raises(UnknownAliasError):
        catalog.decode(ND, _wire(ND, Metric("Temp", 1, DataType.Int32, alias=1, timestamp=TS), seq=1))
    decoded = catalog.decode(ND, _wire(ND, Metric("Temp", 2.5, DataType.Double, alias=10, timestamp=TS), seq=1))
    assert decoded.metrics[0].value == 2.5


def test_value_field_must_match_the_birth_datatype(catalog: EdgeNodeCatalog) -> None:
    raw = pb.Payload(timestamp=TS, seq=2)
    raw.metrics.add(alias=1, timestamp=TS, double_value=1.0)  # Temp is Int32
    with pytest.raises(DataTypeMismatchError, match="'Temp' is Int32 but carries double_value"):
        catalog.decode(ND, raw.SerializeToString())


def test_wire_datatype_in_data_must_agree_with_birth(catalog: EdgeNodeCatalog) -> None:
    """tck-id-payloads-metric-datatype-not-req: DATA SHOULD omit it; if present it must not lie."""
    raw = pb.Payload(timestamp=TS, seq=2)
    raw.metrics.add(alias=1, timestamp=TS, datatype=DataType.Int32, int_value=5)
    assert catalog.decode(ND, raw.SerializeToString()).metrics[0].value == 5
    raw.metrics[0].datatype = DataType.UInt32
    with pytest.raises(DataTypeMismatchError, match="'Temp'.*UInt32.*Int32"):
        catalog.decode(ND, raw.SerializeToString())


def test_node_control_command_by_name_needs_no_birth() -> None:
    """tck-id-operational-behavior-data-commands-rebirth-name-aliases: Rebirth travels by name."""
    raw = pb.Payload(timestamp=TS)
    raw.metrics.add(name="Node Control/Rebirth", datatype=DataType.Boolean, boolean_value=True)
    decoded = EdgeNodeCatalog().decode(MessageType.NCMD, raw.SerializeToString())
    assert decoded.metrics[0].value is True and decoded.seq is None
