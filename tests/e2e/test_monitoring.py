"""Issue 17 item 9: the Grafana dashboard and the Prometheus alert rules in monitoring/ use only metrics
the services really export, and the compose healthchecks pass against the real services.

One stack of real processes (broker, simulator, adapter, edge node from `uns init`) is started for
the module; the adapter's, edge node's and broker's ``/metrics`` are scraped and every metric name
a dashboard query or an alert expression references must be on one of those pages (``up`` is
Prometheus' own per-target series and must name a job of monitoring/prometheus.yml). promtool is
not installed, so the rule file's structure is checked here. The compose healthchecks are the
very commands from ``docker-compose config``, run as local processes with the stack's free ports
in place of the container ports.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_stack_config import COMPOSE, _compose
from tests.e2e.stack import Stack, running_stack, stop_service, wait_until
from tests.support.net import free_port
from tests.support.procs import REPO

MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "uns-hub-dashboard.json"
ALERTS = MONITORING / "uns-hub-alerts.yml"
SCRAPE = MONITORING / "prometheus.yml"
#: issue 17's list: adapter not ready, ingest failing, outbox backlog, edge store failing, broker down, node dead
REQUIRED_ALERTS = {"UnsAdapterNotReady", "UnsAdapterIngestFailing", "UnsOutboxBacklog", "UnsEdgeStoreFailing",
                   "UnsBrokerDown", "UnsEdgeNodeDead"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("_count", "_sum", "_created"), "gauge": ("",), "info": ("_info",)}
DURATION = re.compile(r"\d+[smhd]")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions, keywords, labels
    (inside ``{}`` or ``by (...)``) or range durations (inside ``[]``)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function
        if match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def exported_names(page: str) -> set[str]:
    """Every name a query can select on a /metrics page, including families with no sample yet (a
    labelled counter before its first increment still has HELP and TYPE)."""
    names = set()
    for family in text_string_to_metric_families(page):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def test_scrape_config_jobs_match_the_compose_services() -> None:
    scrape = yaml.safe_load(SCRAPE.read_text())
    assert scrape["rule_files"] == [ALERTS.name]
    jobs = {job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]}
    assert jobs == {"uns-adapter": ["adapter:8080"], "uns-edge": ["edge:9102"], "uns-broker": ["broker:9101"]}
    services = _compose(COMPOSE)["services"]
    for targets in jobs.values():
        service, port = targets[0].split(":")
        assert any(p.endswith(f":{port}:{port}/tcp") for p in services[service]["ports"]), targets


def test_alert_rules_are_well_formed() -> None:
    """What promtool would refuse: missing fields, bad durations, duplicate names, unbalanced brackets."""
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    group_names = [group["name"] for group in document["groups"]]
    assert len(group_names) == len(set(group_names))
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) and REQUIRED_ALERTS <= set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        for opening, closing in ("()", "{}", "[]"):
            assert rule["expr"].count(opening) == rule["expr"].count(closing), rule["alert"]
        assert "for" not in rule or DURATION.fullmatch(rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    jobs = {job["job_name"] for job in yaml.safe_load(SCRAPE.read_text())["scrape_configs"]}
    for expr in [rule["expr"] for rule in rules] + dashboard_queries():
        assert set(re.findall(r'up\{job="([^"]+)"\}', expr)) <= jobs, expr


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["uid"] == "uns-hub-overview" and dashboard["title"] == "uns-hub"
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"] and all(target["expr"] for target in panel["targets"]), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("monitoring")) as running:
        yield running


def _ports(stack: Stack) -> dict[str, int]:
    """The stack's port for each container port the compose file names."""
    ports = yaml.safe_load((stack.folder / "stack.yaml").read_text())["ports"]
    return {"8080": stack.http_port, "9102": ports["edge_http"], "9101": ports["broker_http"],
            "4840": stack.opcua_port}


def test_every_metric_the_dashboard_and_alerts_use_is_exported(stack: Stack) -> None:
    ports = _ports(stack)
    exported: set[str] = set()
    for container_port in ("8080", "9102", "9101"):
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[container_port]}/metrics", timeout=10) as response:
            exported |= exported_names(response.read().decode())
    assert {"uns_host_online", "uns_edge_born", "uns_broker_up"} <= exported  # all three pages were read
    used = {"dashboard": set(), "alerts": set()}
    for expr in dashboard_queries():
        used["dashboard"] |= promql_metric_names(expr)
    for rule in alert_rules():
        used["alerts"] |= promql_metric_names(rule["expr"])
    for source, names in used.items():
        assert names - exported - {"up"} == set(), source
    assert len(used["dashboard"]) >= 25 and len(used["alerts"]) >= 15


def _healthcheck(argv: list[str], ports: dict[str, int]) -> int:
    """Run a compose healthcheck (``CMD python -c ...``) with this interpreter and the stack's ports."""
    assert argv[:3] == ["CMD", "python", "-c"], argv
    code = argv[3]
    for container_port, port in ports.items():
        code = re.sub(rf"(127\.0\.0\.1['\":, ]+){container_port}\b", rf"\g<1>{port}", code)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_compose_healthchecks_pass_on_the_running_services_and_fail_when_not_ready(stack: Stack) -> None:
    services = _compose(COMPOSE)["services"]
    ports = _ports(stack)
    for name in ("broker", "simulator", "adapter", "edge"):
        assert _healthcheck(services[name]["healthcheck"]["test"], ports) == 0, name
    nothing = {port: free_port() for port in ports}
    for name in ("broker", "simulator", "adapter", "edge"):
        assert _healthcheck(services[name]["healthcheck"]["test"], nothing) != 0, name
    # a live adapter whose broker is gone answers /readyz with 503: its healthcheck must fail too
    stop_service(stack, "broker")
    wait_until(lambda: _healthcheck(services["adapter"]["healthcheck"]["test"], ports) != 0, 30,
               "the adapter's healthcheck to fail without its broker")
    assert _healthcheck(services["broker"]["healthcheck"]["test"], ports) != 0
