"""What `uns up -c` derives for a user's tag map, checked on files (issue 17 item 2).

The MES line from the tag names (line level first, a cell's tag only when it is the only one,
integer counters with the wrap of their datatype), and the broker user for the map's ids: created
in every users file of the stack folder with a backup each, reused (nothing written) on the next
start, never created for a map that names its own user. The run through the real `uns up` with a
second OPC UA server is in tests/docs/test_tutorial_own_plc.py.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from broker.passwords import load_password_file, verify_password
from edge_node.config import EdgeConfig
from unshub.cli.stack import StackPorts, write_stack_config
from unshub.mes_lines import derive_line
from unshub.own_map import mosquitto_root_warning, prepare_own_map

LINE = {"enterprise": "acme", "site": "plant1", "area": "packaging", "line": "line2"}


def _tag(metric: str, datatype: str = "UInt32", cell: str | None = None) -> dict:
    return {"node_id": f"ns=2;s={cell or 'L'}/{metric}", "metric": metric, "datatype": datatype,
            **({"cell": cell} if cell else {})}


def _map(tags: list[dict], **extra: object) -> dict:
    return {"line": LINE, "opcua": [{"name": "plc", "url": "opc.tcp://127.0.0.1:4842", "allow_insecure": True}],
            "tags": tags, **extra}


def test_the_mes_line_comes_from_the_tag_names_and_what_is_unclear_is_left_to_the_user() -> None:
    edge = EdgeConfig.model_validate(_map([
        _tag("GoodCount", "UInt16", cell="Filler"), _tag("GoodCount", "UInt16", cell="Capper"),  # two cells: ask
        _tag("Counters/Scrap", "Int32", cell="Capper"),  # the only reject counter: taken, signed (no modulus)
        _tag("TotalCount", "Double"),  # not an integer: not a counter
        _tag("State", "String"), _tag("State", "String", cell="Filler"),  # the line's own wins
        _tag("CurrentBatch", "String", cell="Filler"), _tag("Speed", "Double", cell="Capper"),
    ]))
    derived = derive_line(edge)
    assert derived.entry == {
        "line": "acme/plant1/packaging/line2",
        "counters": [{"metric": "Counters/Scrap", "cell": "Capper", "role": "reject", "modulus": None}],
        "state": {"metric": "State"}, "batch": {"metric": "CurrentBatch", "cell": "Filler"},
        "speed": {"metric": "Speed", "cell": "Capper"}}
    assert derived.found == ["Capper/Counters/Scrap (reject counter)", "State (state)",
                             "Filler/CurrentBatch (batch)", "Capper/Speed (speed)"]
    assert derived.ambiguous == ["good counter: one of Filler/GoodCount, Capper/GoodCount"]


def test_a_broker_user_is_created_once_for_the_maps_ids_and_a_stated_user_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    ports = StackPorts(mqtt=18830)
    write_stack_config(folder, ports=ports, broker_engine="embedded")
    tag_map = folder / "plant-line2.yaml"
    tag_map.write_text(yaml.safe_dump(_map([_tag("GoodCount"), _tag("State", "String")])))
    before = {name: (folder / name).read_text() for name in ("users.yaml", "mosquitto.passwd", "mosquitto.acl")}

    own = prepare_own_map(folder, tag_map, folder / "adapter.yaml", mqtt_port=ports.mqtt)
    user = "edge-acme_plant1-packaging_line2"
    derived = yaml.safe_load(own.edge_config.read_text())
    assert own.edge_config == folder / "plant-line2.uns-up.yaml" and tag_map.read_text().startswith("line:")
    (url,) = derived["sparkplug"]["brokers"]
    password = url.split(":")[2].split("@")[0]
    assert (url, derived["sparkplug"]["primary_host_id"]) == (f"mqtt://{user}:{password}@127.0.0.1:18830", "uns-mes")
    record = load_password_file(folder / "users.yaml").users[user]
    assert (record.role, record.group, record.edge) == ("edge", "acme:plant1", "packaging:line2")
    assert verify_password(record.hash, password)
    for name, text in before.items():  # each users file backed up, then changed, and said so
        (backup,) = folder.glob(f"{name}.bak-*")
        assert backup.read_text() == text != (folder / name).read_text()
        assert any(str(backup) in line for line in own.lines), own.lines
    acl = (folder / "mosquitto.acl").read_text()
    assert f"user {user}\ntopic read spBv1.0/acme:plant1/NCMD/packaging:line2\n" in acl
    assert f"\n{user}:$7$" in (folder / "mosquitto.passwd").read_text()
    adapter = yaml.safe_load(own.adapter_config.read_text())
    assert own.adapter_config == folder / "adapter.uns-up.yaml"
    assert adapter["mes"]["lines"][-1] == {
        "line": "acme/plant1/packaging/line2", "counters": [
            {"metric": "GoodCount", "role": "good", "modulus": 2**32}], "state": {"metric": "State"}}

    again = prepare_own_map(folder, tag_map, folder / "adapter.yaml", mqtt_port=ports.mqtt)
    assert yaml.safe_load(again.edge_config.read_text()) == derived  # the same user and password
    assert len(list(folder.glob("*.bak-*"))) == 3  # nothing rewritten
    assert not any("broker user" in line and "created" in line for line in again.lines)

    stated = folder / "plant-stated.yaml"
    stated.write_text(yaml.safe_dump(_map([_tag("GoodCount")], sparkplug={
        "brokers": ["mqtt://someone:pw@127.0.0.1:18830"], "primary_host_id": "other-host"})))
    own = prepare_own_map(folder, stated, folder / "adapter.yaml", mqtt_port=ports.mqtt)
    assert own.edge_config == stated and len(list(folder.glob("*.bak-*"))) == 3
    assert own.lines[:2] == [
        "plant-stated.yaml: its broker URL names a user: used as written (no user created)",
        "warning: plant-stated.yaml: sparkplug.primary_host_id 'other-host' is not the adapter's host id 'uns-mes': "
        "the edge waits for that host and never births here"]


def test_a_map_under_another_enterprise_is_warned_about_only_with_mosquitto() -> None:
    """mosquitto.acl binds the adapter's UNS publishing to the stack's enterprise and Mosquitto
    drops a refused publish silently: `uns up -c` must say so before the UNS stays empty."""
    stack, other, same = "acme/plant1/packaging/line1", "globex/plant2/bottling/line2", "acme/plant2/bottling/line2"
    warning = mosquitto_root_warning(stack, other, mosquitto=True)
    assert warning is not None
    assert "'acme/'" in warning and "'globex/'" in warning and "embedded broker" in warning
    assert mosquitto_root_warning(stack, other, mosquitto=False) is None  # the embedded broker's roles allow it
    assert mosquitto_root_warning(stack, same, mosquitto=True) is None
    assert mosquitto_root_warning("", other, mosquitto=True) is None  # no stack line known: nothing to compare
