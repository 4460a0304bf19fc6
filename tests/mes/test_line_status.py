"""The line data status (pure): a dead device or a BAD tag makes the line's data incomplete, named."""

from __future__ import annotations

from mes_adapter.host.live_model import LiveModel
from mes_adapter.host.tracker import DeviceBorn, DeviceDied, MetricsChanged, NodeBorn, NodeDied
from mes_adapter.status.data_status import DataStatus, iso, status_of_line
from uns.conventions import PROP_QUALITY, PROP_STATUS_CODE
from uns.isa95 import MappingMode, NamespaceMapping
from uns.sparkplug.datatypes import DataType
from uns.sparkplug.model import QUALITY_BAD, Metric, PropertyValue

T0 = 1_700_000_000_000
LINE = "acme/plant1/packaging/line1"
NODE = ("acme:plant1", "packaging:line1")
MAPPING = NamespaceMapping()


def _good(name: str, ts: int = T0) -> Metric:
    return Metric(name=name, datatype=DataType.Double, value=1.0, timestamp=ts)


def _bad(name: str, ts: int) -> Metric:
    return Metric(name=name, datatype=DataType.Double, value=None, is_null=True, timestamp=ts,
                  properties={PROP_QUALITY: PropertyValue(DataType.Int32, QUALITY_BAD),
                              PROP_STATUS_CODE: PropertyValue(DataType.UInt32, 0x808C0000)})


def plant() -> LiveModel:
    model = LiveModel()
    model.apply(NodeBorn(NODE, 0, T0))
    model.apply(MetricsChanged(NODE, None, [_good("GoodCount")], T0, birth=True))
    for cell in ("Filler", "Capper"):
        model.apply(DeviceBorn(NODE, cell, T0))
        model.apply(MetricsChanged(NODE, cell, [_good("Speed"), _good("Temperature")], T0, birth=True))
    return model


def status(model: LiveModel, line: str = LINE, expected: bool = True) -> DataStatus:
    return status_of_line(model, _equipment, lambda s: "topic", line, expected=expected)


def _equipment(group_id: str, edge_node_id: str, device_id: str | None):  # type: ignore[no-untyped-def]
    try:
        return MAPPING.from_sparkplug(group_id, edge_node_id, device_id)
    except ValueError:
        return None


def test_all_alive_and_good_is_complete() -> None:
    assert status(plant()) == DataStatus(data_complete=True, incomplete_reasons=[], nodes=1, nodes_online=1,
                                         devices=2, devices_online=2)


def test_a_dead_device_is_named_with_its_death_time_while_the_node_stays_online() -> None:
    """The OPC UA outage case: node 1/1 online, but the devices are STALE."""
    model = plant()
    model.apply(DeviceDied(NODE, "Filler", T0 + 1000, "ddeath"))
    assert status(model) == DataStatus(data_complete=False, incomplete_reasons=[
        f"device Filler STALE since {iso(T0 + 1000)}"], nodes=1, nodes_online=1, devices=2, devices_online=1)


def test_bad_tags_are_counted_and_named() -> None:
    model = plant()
    model.apply(MetricsChanged(NODE, "Capper", [_bad("Temperature", T0 + 5), _bad("Speed", T0 + 5)], T0 + 6))
    model.apply(MetricsChanged(NODE, None, [_bad("GoodCount", T0 + 5)], T0 + 6))
    st = status(model)
    assert not st.data_complete
    assert st.incomplete_reasons == ["3 tags BAD: Capper/Speed, Capper/Temperature, GoodCount"]


def test_a_dead_node_and_a_missing_node() -> None:
    model = plant()
    model.apply(NodeDied(NODE, 0, T0 + 2000, "ndeath"))
    st = status(model)
    assert st.incomplete_reasons == [f"edge node acme:plant1/packaging:line1 offline since {iso(T0 + 2000)}",
                                     f"device Filler STALE since {iso(T0 + 2000)}",
                                     f"device Capper STALE since {iso(T0 + 2000)}"]
    assert (st.nodes_online, st.devices_online) == (0, 0)
    other = "acme/plant1/packaging/line9"
    assert status(model, other).incomplete_reasons == ["no edge node of this line has been seen by the host"]
    assert status(model, other, expected=False).data_complete


def test_a_gateway_node_counts_only_the_devices_of_the_line() -> None:
    """One gateway edge node serving two lines: a dead device of line B is not line A's problem."""
    gateway = NamespaceMapping(mode=MappingMode.GATEWAY, gateway_id="gw1")

    def equipment(group_id: str, edge_node_id: str, device_id: str | None):  # type: ignore[no-untyped-def]
        try:
            return gateway.from_sparkplug(group_id, edge_node_id, device_id)
        except ValueError:
            return None

    node = ("acme:plant1", "gw1")
    model = LiveModel()
    model.apply(NodeBorn(node, 0, T0))
    model.apply(MetricsChanged(node, None, [], T0, birth=True))
    for device in ("packaging:line1:Filler", "packaging:line2:Filler"):
        model.apply(DeviceBorn(node, device, T0))
        model.apply(MetricsChanged(node, device, [_good("Speed")], T0, birth=True))
    model.apply(DeviceDied(node, "packaging:line2:Filler", T0 + 1000, "ddeath"))
    line1 = status_of_line(model, equipment, lambda s: "topic", LINE, expected=True)
    assert line1 == DataStatus(data_complete=True, nodes=1, nodes_online=1, devices=1, devices_online=1)
    line2 = status_of_line(model, equipment, lambda s: "topic", "acme/plant1/packaging/line2", expected=True)
    assert line2.incomplete_reasons == [f"device Filler STALE since {iso(T0 + 1000)}"]
    assert (line2.devices, line2.devices_online) == (1, 0)
