"""``host.groups``: an adapter instance that owns some Sparkplug groups (scale-out by group).

It subscribes to ``spBv1.0/<group>/#`` of each owned group (and their certificates) instead of
``spBv1.0/#``, ignores every other group's messages if a broker still delivers them, mirrors only
its groups' tags and asks rebirths only of its groups' nodes. The adapter config refuses a line
whose edge group it does not own, naming both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mes_adapter.config.application import ConfigError, load_adapter_config
from mes_adapter.host import GroupNotOwnedError, HostConfig
from mes_adapter.host.session import HostSession
from tests.host.conftest import rebirth_requests, running_host, wait_for
from tests.host.edge import EdgeScript, PahoEdge
from tests.support.mosquitto import BrokerEndpoint
from tests.support.sniffer import Sniffer
from uns.sparkplug.topic import group_of

OWN, OTHER = "acme:plant1", "acme:plant2"


def test_subscribes_to_its_groups_only_certificates_first() -> None:
    """tck-id-host-topic-phid-birth-sub-required: the own STATE topic is subscribed before the birth;
    instead of spBv1.0/# each owned group's filter, no two filters overlapping."""
    session = HostSession("mes-a", groups=(OWN, "acme:plant3"))
    session.connect(1)
    filters = [f for f, qos in session.connected().filters]
    assert filters == ["$sparkplug/certificates/spBv1.0/acme:plant1/#", "$sparkplug/certificates/spBv1.0/acme:plant3/#",
                       "spBv1.0/STATE/mes-a", "spBv1.0/acme:plant1/#", "spBv1.0/acme:plant3/#"]
    plain = HostSession("mes-b", groups=(OWN,), use_certificates=False)
    plain.connect(1)
    assert [f for f, _ in plain.connected().filters] == ["spBv1.0/STATE/mes-b", "spBv1.0/acme:plant1/#"]


def test_group_of_topics_and_certificates() -> None:
    assert group_of("spBv1.0/acme:plant1/DDATA/packaging:line1/filler") == "acme:plant1"
    assert group_of("$sparkplug/certificates/spBv1.0/acme:plant2/NBIRTH/packaging:line1") == "acme:plant2"
    assert group_of("spBv1.0/STATE/mes") is None
    assert group_of("acme/plant1/packaging") is None


@pytest.mark.parametrize(("groups", "message"), [
    ([], "must name at least one Sparkplug group"),
    (["acme/plant1"], "contains '/'"),
    (["acme:plant1", "plant#"], "contains '#'"),
    (["STATE"], "'STATE' is reserved"),
    (["acme:plant1", "acme:plant1"], "'acme:plant1' is listed more than once"),
])
def test_bad_groups_are_refused_with_the_reason(groups: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HostConfig(groups=groups)


def test_absent_groups_own_everything() -> None:
    assert HostConfig().groups is None and HostConfig().owns_group("any:group")
    config = HostConfig(groups=[OWN])
    assert config.groups == (OWN,) and config.owns_group(OWN) and not config.owns_group(OTHER)


def _adapter_yaml(tmp_path: Path, groups: list[str], order_group: str) -> Path:
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump({
        "host": {"broker_url": "mqtt://127.0.0.1:1883", "host_id": "mes-a", "groups": groups},
        "mes": {"lines": [{"line": "acme/plant1/packaging/line1"}, {"line": "acme/plant2/packaging/line1"}],
                "orders": {"lines": [{"line": "acme/plant1/packaging/line1", "group_id": order_group,
                                      "edge_node_id": "packaging:line1"}]}},
    }))
    return path


def test_a_line_of_a_group_not_owned_is_a_config_error_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_adapter_config(_adapter_yaml(tmp_path, [OWN], OWN))
    assert ("mes.lines: line acme/plant2/packaging/line1 is in Sparkplug group 'acme:plant2', which this "
            "instance does not own (host.groups: acme:plant1)") in str(error.value)
    with pytest.raises(ConfigError, match="mes.orders.lines: line acme/plant1/packaging/line1 starts batches on "
                                          "Sparkplug group 'acme:plant9'"):
        load_adapter_config(_adapter_yaml(tmp_path, [OWN, OTHER], "acme:plant9"))
    assert load_adapter_config(_adapter_yaml(tmp_path, [OWN, OTHER], OTHER)).host.groups == (OWN, OTHER)


@pytest.mark.mosquitto
async def test_other_groups_are_neither_tracked_mirrored_nor_asked_to_rebirth(mosquitto: BrokerEndpoint,
                                                                              sniffer: Sniffer) -> None:
    """Two edge nodes with the same edge id in two groups; the host owns one. The other group's births,
    data and a seq gap change nothing in the host; the owned group's seq gap still earns its rebirth
    request (tck-id-operational-behavior-data-commands-ncmd-rebirth-verb; NCMD checked by rebirth_requests)."""
    own, other = EdgeScript(group=OWN), EdgeScript(group=OTHER)
    async with running_host(mosquitto, groups=[OWN]) as host:
        with PahoEdge(mosquitto.host, mosquitto.port) as edge:
            for script in (own, other):
                edge.send(script.nbirth())
                edge.send(script.dbirth())
            other.skip_seq(3)
            edge.send(other.ddata({"Speed": 99.0}))
            edge.send(own.ddata({"Speed": 130.0}))
            await wait_for(sniffer, lambda m: m.topic == "acme/plant1/packaging/line1/filler/Speed"
                           and b"130" in m.payload)
            own.skip_seq(3)  # the owned group's gap still earns its rebirth
            edge.send(own.ddata({"Speed": 131.0}))
            await wait_for(sniffer, lambda m: m.topic == f"spBv1.0/{OWN}/NCMD/{own.edge}")
        assert [(n.group_id, n.edge_node_id) for n in host.model.nodes()] == [(OWN, own.edge)]
        assert host.model.metric(OTHER, other.edge, other.device, "Speed") is None
        assert sniffer.snapshot(lambda m: m.topic.startswith("acme/plant2")) == []
        assert rebirth_requests(sniffer, OTHER, other.edge) == []
        assert host.stats.extra["foreign_group_messages"] == 0  # the broker never delivered them
        # a broker that delivers them anyway (overlapping filters, a bridge): ignored and counted
        host.handle_message(*other.ndata({"Line/GoodCount": 5}))
        assert host.stats.extra["foreign_group_messages"] == 1 and len(host.model.nodes()) == 1
        with pytest.raises(GroupNotOwnedError, match="does not own Sparkplug group 'acme:plant2'"):
            await host.request_rebirth(OTHER, other.edge)
        assert len(rebirth_requests(sniffer, OWN, own.edge)) == 1
