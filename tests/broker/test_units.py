"""The broker's protocol logic without sockets: topic algebra, ACL, policy, Sparkplug awareness,
password file, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker.acl import Action, Authorizer, Principal, RoleRules
from broker.config import BrokerConfigError, DemoAnonymous, load_settings
from broker.passwords import PasswordFileError, load_password_file, verify_password
from broker.policy import merged_roles
from broker.sparkplug_aware import BirthCertificateStore, EdgeNodeRegistry, sparkplug_topic_or_none
from broker.sys_topics import BrokerStats
from broker.topics import InvalidFilterError, filter_covers, topic_matches, validate_filter
from uns.sparkplug.topic import parse_node_topic


@pytest.mark.parametrize(("flt", "topic", "expected"), [
    ("a/b", "a/b", True), ("a/+", "a/b", True), ("a/+", "a/b/c", False), ("a/#", "a", True),
    ("a/#", "a/b/c", True), ("#", "$SYS/x", False), ("+/x", "$SYS/x", False), ("$SYS/#", "$SYS/x", True),
    ("+/+", "a", False), ("a/b", "a/c", False),
])
def test_topic_matches(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


@pytest.mark.parametrize(("outer", "inner", "expected"), [
    ("#", "a/+/c", True), ("a/#", "a/#", True), ("a/+", "a/#", False), ("a/+", "a/+", True),
    ("a/b", "a/+", False), ("spBv1.0/G/NCMD/E", "spBv1.0/G/NCMD/E", True), ("#", "$SYS/#", False),
    ("spBv1.0/#", "#", False), ("+/b", "a/b", True), ("a/+/c", "a/b/c/d", False),
])
def test_filter_covers(outer: str, inner: str, expected: bool) -> None:
    assert filter_covers(outer, inner) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a#", "a/b+"])
def test_invalid_filters(bad: str) -> None:
    with pytest.raises(InvalidFilterError):
        validate_filter(bad)


EDGE = Principal("e1", "edge", "c1", "acme:plant", "area:line1")
HOST = Principal("mes", "host", "c2")
VIEWER = Principal(None, "explorer", "c3")


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(merged_roles({}))


@pytest.mark.parametrize(("principal", "action", "topic", "expected"), [
    (EDGE, Action.PUBLISH, "spBv1.0/acme:plant/NBIRTH/area:line1", True),
    (EDGE, Action.PUBLISH, "spBv1.0/acme:plant/DDATA/area:line1/Filler", True),
    (EDGE, Action.PUBLISH, "spBv1.0/acme:plant/NDATA/area:line2", False),
    (EDGE, Action.PUBLISH, "spBv1.0/acme:plant/NCMD/area:line1", False),
    (EDGE, Action.PUBLISH, "acme/plant/area/line1/x", False),
    (EDGE, Action.SUBSCRIBE, "spBv1.0/acme:plant/NCMD/area:line1", True),
    (EDGE, Action.SUBSCRIBE, "spBv1.0/acme:plant/DCMD/area:line1/+", True),
    (EDGE, Action.SUBSCRIBE, "spBv1.0/STATE/+", True),
    (EDGE, Action.SUBSCRIBE, "spBv1.0/acme:plant/NCMD/+", False),
    (EDGE, Action.RECEIVE, "spBv1.0/STATE/mes", True),
    (EDGE, Action.RECEIVE, "spBv1.0/acme:plant/NBIRTH/area:line2", False),
    (HOST, Action.PUBLISH, "spBv1.0/STATE/mes", True),
    (HOST, Action.PUBLISH, "spBv1.0/acme:plant/DCMD/area:line1/Filler", True),
    (HOST, Action.PUBLISH, "acme/plant/area/line1/Filler/Speed", True),
    (HOST, Action.PUBLISH, "spBv1.0/acme:plant/NBIRTH/area:line1", False),
    (HOST, Action.SUBSCRIBE, "#", True),
    (HOST, Action.SUBSCRIBE, "$sparkplug/certificates/#", True),
    (VIEWER, Action.SUBSCRIBE, "$SYS/#", True),
    (VIEWER, Action.PUBLISH, "anything", False),
])
def test_default_policy(authz: Authorizer, principal: Principal, action: Action, topic: str, expected: bool) -> None:
    assert authz.allowed(principal, action, topic) is expected


def test_unknown_role_and_missing_scope_are_denied(authz: Authorizer) -> None:
    assert not authz.allowed(Principal("x", "nope"), Action.SUBSCRIBE, "#")
    assert not authz.allowed(Principal("x", "edge"), Action.PUBLISH, "spBv1.0/G/NDATA/E")
    with pytest.raises(ValueError, match="no Sparkplug group/edge"):
        authz.check_principal(Principal("x", "edge"))


def test_custom_role_with_deny(tmp_path: Path) -> None:
    authz = Authorizer(merged_roles({"line": RoleRules.of(publish=["plant/{username}/#"], subscribe=["plant/#"],
                                                          deny_subscribe=["plant/secret/#"])}))
    p = Principal("l1", "line")
    assert authz.allowed(p, Action.PUBLISH, "plant/l1/x")
    assert not authz.allowed(p, Action.PUBLISH, "plant/l2/x")
    assert authz.allowed(p, Action.RECEIVE, "plant/a")
    assert not authz.allowed(p, Action.RECEIVE, "plant/secret/a")
    assert not authz.allowed(p, Action.SUBSCRIBE, "plant/secret/#")


def test_certificate_store_keeps_original_bytes() -> None:
    store = BirthCertificateStore()
    assert store.record(parse_node_topic("spBv1.0/G/NDATA/E"), b"x") is None
    cert = store.record(parse_node_topic("spBv1.0/G/DBIRTH/E/D"), b"\x00raw")
    assert cert == "$sparkplug/certificates/spBv1.0/G/DBIRTH/E/D"
    assert store.get(cert) == b"\x00raw" and len(store) == 1


def test_edge_registry_detects_second_live_client() -> None:
    reg = EdgeNodeRegistry()
    birth = parse_node_topic("spBv1.0/G/NBIRTH/E")
    assert reg.on_publish("a", birth, 1) is None
    assert reg.on_publish("a", birth, 2) is None  # rebirth by the same client
    alarm = reg.on_publish("b", birth, 3)
    assert alarm is not None and (alarm.existing_client_id, alarm.new_client_id) == ("a", "b")
    assert json.loads(alarm.to_json())["alarm"] == "duplicate-edge-node"
    reg.on_disconnect("b")
    assert reg.owner("G", "E") is None
    assert reg.on_publish("a", birth, 4) is None
    reg.on_publish("a", parse_node_topic("spBv1.0/G/NDEATH/E"), 5)
    assert reg.owner("G", "E") is None


def test_non_sparkplug_topics_are_ignored() -> None:
    assert sparkplug_topic_or_none("acme/plant") is None
    assert sparkplug_topic_or_none("spBv1.0/STATE/h") is None
    assert sparkplug_topic_or_none("spBv1.0/G/BOGUS/E") is None


def test_sys_snapshot() -> None:
    snap = BrokerStats(started_at=100.0).snapshot(version="v", clients_connected=2, retained=3, subscriptions=4,
                                                  certificates=1, now=160.0)
    assert snap["$SYS/broker/uptime"] == b"60 seconds"
    assert snap["$SYS/broker/clients/connected"] == b"2"


def test_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("demo_anonymous: off\n")
    with pytest.raises(BrokerConfigError, match="nobody could connect"):
        load_settings(cfg)
    cfg.write_text("demo_anonymous: read-only\nwebsocket: null\n")
    settings = load_settings(cfg)
    assert settings.demo_anonymous is DemoAnonymous.READ_ONLY and settings.tcp and settings.tcp.port == 1883
    cfg.write_text("demo_anonymous: read-only\ntls: {certfile: /nope.pem, keyfile: /nope.key}\n")
    with pytest.raises(BrokerConfigError, match="certfile /nope.pem does not exist"):
        load_settings(cfg)
    cfg.write_text("demo_anonymous: read-only\nroles: {x: {publish: ['a/#/b']}}\n")
    with pytest.raises(BrokerConfigError, match="'#' must be a whole level"):
        load_settings(cfg)
    cfg.write_text("demo_anonymous: read-only\nlisten: 1\n")
    with pytest.raises(BrokerConfigError, match="listen"):
        load_settings(cfg)


def test_config_errors_name_file_line_and_field_or_the_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "b.yaml"
    cfg.write_text("demo_anonymous: read-only\ntcp:\n  port: notaport\nbogus: 1\n")
    with pytest.raises(BrokerConfigError) as info:
        load_settings(cfg)
    assert f"{cfg}:3: tcp.port: Input should be a valid integer" in str(info.value)
    assert f"{cfg}:4: bogus: unknown field (typo?)" in str(info.value)
    cfg.write_text("demo_anonymous: read-only\n")
    with pytest.raises(BrokerConfigError, match="command line: demo_anonymous"):
        load_settings(cfg, demo_anonymous="sometimes")
    cfg.write_text("tcp: [\n")
    with pytest.raises(BrokerConfigError, match=rf"broker config {cfg}:2: YAML syntax"):
        load_settings(cfg)


def test_cli_passwd_creates_updates_and_deletes(tmp_path: Path) -> None:
    from unshub.cli.main import app

    runner = CliRunner()
    file = tmp_path / "users.yaml"
    result = runner.invoke(app, ["broker", "passwd", str(file), "line1", "--role", "edge", "--group", "acme:plant",
                                 "--edge", "area:line1", "--password-stdin"], input="s3cret\n")
    assert result.exit_code == 0, result.output
    record = load_password_file(file).users["line1"]
    assert (record.role, record.group, record.edge) == ("edge", "acme:plant", "area:line1")
    assert verify_password(record.hash, "s3cret") and not verify_password(record.hash, "wrong")
    assert file.stat().st_mode & 0o777 == 0o600
    result = runner.invoke(app, ["broker", "passwd", str(file), "x", "--role", "edge", "--password-stdin"], input="p\n")
    assert result.exit_code == 2 and "--group" in result.output
    result = runner.invoke(app, ["broker", "passwd", str(file), "line1", "--delete"])
    assert result.exit_code == 0 and load_password_file(file).users == {}


def test_malformed_password_file(tmp_path: Path) -> None:
    file = tmp_path / "users.yaml"
    file.write_text("users:\n  a: {hash: plain-text}\n")
    with pytest.raises(PasswordFileError, match="argon2"):
        load_password_file(file)
    with pytest.raises(PasswordFileError, match="does not exist"):
        load_password_file(tmp_path / "missing.yaml")
