"""What `uns up -c` derives for a user's tag map, checked on files (issue 17 item 2).

The MES line from the tag names (line level first, a cell's tag only when it is the only one,
integer counters with the wrap of their datatype), and the broker user for the map's ids: created
in every users file of the stack folder with a backup each, reused (nothing written) on the next
start, never created for a map that names its own user; a map under another enterprise gets its
namespace in the adapter's Mosquitto ACL, checked against a real Mosquitto. The run through the real `uns up` with a
second OPC UA server is in tests/docs/test_tutorial_own_plc.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import yaml

from broker.passwords import load_password_file, verify_password
from edge_node.config import EdgeConfig
from tests.support.mosquitto import mosquitto_binary
from tests.support.net import free_port, wait_for_port
from tests.support.procs import stop_process
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

    # a second map of the same ids shares the user: its password is found in the first map's derived
    # file, not reset (a reset would lock the first map's edge node out of the broker)
    twin = folder / "plant-line2-twin.yaml"
    twin.write_text(yaml.safe_dump(_map([_tag("GoodCount")])))
    own = prepare_own_map(folder, twin, folder / "adapter.yaml", mqtt_port=ports.mqtt)
    (url,) = yaml.safe_load(own.edge_config.read_text())["sparkplug"]["brokers"]
    assert url == f"mqtt://{user}:{password}@127.0.0.1:18830"
    assert len(list(folder.glob("*.bak-*"))) == 3 and not any("password" in line for line in own.lines)


def test_a_map_under_another_enterprise_gets_its_namespace_in_mosquittos_acl() -> None:
    """`uns init` renders mosquitto.acl for the stack's enterprise only, and Mosquitto drops a refused
    publish without a word: a map under another enterprise would leave its UNS empty. `uns up -c` adds
    the namespace to the adapter's user (backed up, said, once), and a real Mosquitto running that
    file then delivers the adapter's UNS messages there, and still not under a third enterprise."""
    base = Path(tempfile.mkdtemp(prefix="uns-own-acl-"))
    base.chmod(0o755)  # Mosquitto started as root drops to its own user, which must read the files
    try:
        folder = base / "config"
        ports = StackPorts(mqtt=free_port())
        write_stack_config(folder, ports=ports, broker_engine="mosquitto")
        tag_map = folder / "plant-globex.yaml"
        tag_map.write_text(yaml.safe_dump(_map([_tag("GoodCount")], line={**LINE, "enterprise": "globex"})))
        adapter = folder / "adapter.yaml"
        assert mosquitto_root_warning(folder, adapter, "globex/plant1/packaging/line2", mosquitto=True)

        own = prepare_own_map(folder, tag_map, adapter, mqtt_port=ports.mqtt)
        acl = (folder / "mosquitto.acl").read_text()
        (said,) = [line for line in own.lines if "under 'globex/'" in line]
        assert said.startswith(f"let broker user 'mes' publish the UNS under 'globex/' in {folder / 'mosquitto.acl'}")
        assert acl.endswith("user mes\ntopic write globex/#\n")
        backups = sorted(folder.glob("mosquitto.acl.bak-*"))
        assert len(backups) == 2  # the edge user's block, then the namespace
        assert "globex/#" not in backups[-1].read_text().split("user mes", 1)[1].split("\nuser ", 1)[0]
        assert mosquitto_root_warning(folder, own.adapter_config, own.line, mosquitto=True) is None
        assert mosquitto_root_warning(folder, own.adapter_config, "initech/a/b/c", mosquitto=True)
        assert mosquitto_root_warning(folder, own.adapter_config, "initech/a/b/c", mosquitto=False) is None

        again = prepare_own_map(folder, tag_map, adapter, mqtt_port=ports.mqtt)  # the next start: nothing
        assert not [line for line in again.lines if "mosquitto.acl" in line]
        assert (folder / "mosquitto.acl").read_text() == acl and len(list(folder.glob("mosquitto.acl.bak-*"))) == 2

        mes_url = yaml.safe_load(own.adapter_config.read_text())["host"]["broker_url"]
        password = mes_url.split(":")[2].split("@")[0]
        assert _mosquitto_delivers(folder, ports.mqtt, "mes", password) == {"globex/plant1/packaging/line2/GoodCount"}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _mosquitto_delivers(folder: Path, port: int, user: str, password: str) -> set[str]:
    """Run the stack's mosquitto.conf; publish as ``user`` under the map's and under a third enterprise
    (each on its own link: Mosquitto closes a link whose publish it refuses), and return the topics a
    reader of everything (``user`` itself) received before the end marker."""
    import paho.mqtt.client as mqtt

    def client(name: str) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"own-acl-{name}", protocol=mqtt.MQTTv311)
        c.username_pw_set(user, password)
        c.connect("127.0.0.1", port)
        c.loop_start()
        return c

    def publish(topic: str) -> None:
        """Until Mosquitto has acknowledged the publish, or closed the link (a refused one)."""
        c = client("writer")
        closed = threading.Event()
        c.on_disconnect = lambda *_a: closed.set()
        try:
            info = c.publish(topic, b"{}", qos=1)
            deadline = time.monotonic() + 10
            while not (info.is_published() or closed.is_set()):
                assert time.monotonic() < deadline, f"no PUBACK and no close for {topic}"
                closed.wait(0.01)
        finally:
            c.disconnect()
            c.loop_stop()

    proc = subprocess.Popen([mosquitto_binary() or "mosquitto", "-c", str(folder / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: set[str] = set()
    done, subscribed = threading.Event(), threading.Event()
    try:
        wait_for_port(port)
        reader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="own-acl-reader", protocol=mqtt.MQTTv311)
        reader.username_pw_set(user, password)
        reader.on_subscribe = lambda *_a: subscribed.set()
        reader.on_message = lambda _c, _u, msg: done.set() if msg.topic.endswith("own-acl-end") else got.add(msg.topic)
        reader.connect("127.0.0.1", port)
        reader.loop_start()
        try:
            reader.subscribe("#", qos=1)
            assert subscribed.wait(10)
            for topic in ("globex/plant1/packaging/line2/GoodCount", "initech/plant1/packaging/line2/GoodCount",
                          "spBv1.0/STATE/own-acl-end"):
                publish(topic)
            assert done.wait(10), "the end marker never came back"
        finally:
            reader.disconnect()
            reader.loop_stop()
    finally:
        stop_process(proc)
    return got
