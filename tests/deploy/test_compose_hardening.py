"""Issue 17 item 6: the compose stack is hardened, property by property, on the file docker-compose parses.

No Docker engine runs here, so each property is asserted on ``docker-compose config`` output (the
file as the engine would receive it, anchors and overrides merged, variables substituted); the
healthcheck commands themselves are run against real services in
``tests/e2e/test_monitoring.py`` (the adapter, broker and edge node) and below (Mosquitto).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.deploy.test_stack_config import COMPOSE, MOSQUITTO_OVERRIDE, _compose
from tests.support.mosquitto import mosquitto_broker
from tests.support.net import free_port
from tests.support.procs import REPO, uns_command

LONG_RUNNING = {"broker", "simulator", "adapter", "edge"}
#: what each service may write: every other path is the read-only image or a tmpfs
WRITABLE = {"init": {"/config"}, "broker": set(), "simulator": set(), "adapter": {"/data", "/witness"},
            "edge": {"/data", "/witness"}}
READ_ONLY_CONFIG = {"broker", "adapter", "edge"}
NETWORKS = {"broker": {"dmz"}, "simulator": {"ot"}, "adapter": {"dmz", "it"}, "edge": {"ot", "dmz"}}
#: the service's own readiness endpoint its healthcheck calls
READYZ = {"broker": 9101, "adapter": 8080, "edge": 9102}
DEPENDS_HEALTHY = {"adapter": {"broker"}, "edge": {"broker", "simulator", "adapter"}}


def _volumes(service: dict) -> dict[str, bool]:
    """Container path → read-only, from docker-compose's normalised ``source:target[:mode]`` strings."""
    mounts = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":") if isinstance(volume, str) else [volume["source"], volume["target"]]
        mounts[parts[1]] = len(parts) > 2 and "ro" in parts[2].split(",")
    return mounts


def test_every_service_is_non_root_read_only_and_limited() -> None:
    services = _compose(COMPOSE)["services"]
    assert set(services) == LONG_RUNNING | {"init"}
    for name, service in services.items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["tmpfs"] == ["/tmp"], name
        assert service["cap_drop"] == ["ALL"], name
        assert service["security_opt"] == ["no-new-privileges:true"], name
        assert float(service["cpus"]) > 0 and service["mem_limit"] and service["pids_limit"] > 0, name
        image, _, tag = service["image"].rpartition(":")
        assert image == "uns-hub" and re.fullmatch(r"\d+\.\d+\.\d+", tag), service["image"]
        assert service["restart"] == ("no" if name == "init" else "unless-stopped"), name
        mounts = _volumes(service)
        assert {path for path, ro in mounts.items() if not ro} == WRITABLE[name], name
        assert {path for path, ro in mounts.items() if ro} == ({"/config"} if name in READ_ONLY_CONFIG else set())
    assert services["init"]["network_mode"] == "none"
    dockerfile = (REPO / "Dockerfile").read_text()
    # the image's uid is the one compose runs as, and owns every folder a volume is mounted on
    assert "--uid 10001 --gid 10001" in dockerfile and "chown uns:uns /data /config /witness" in dockerfile
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-", dockerfile, re.M)


def test_healthchecks_zones_and_start_order() -> None:
    services = _compose(COMPOSE)["services"]
    assert "healthcheck" not in services["init"]  # one-shot: it completes instead
    for name in LONG_RUNNING:
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["retries"] >= 1 and check["start_period"], name
        assert set(services[name]["networks"]) == NETWORKS[name], name
    for name, port in READYZ.items():
        assert f"http://127.0.0.1:{port}/readyz" in services[name]["healthcheck"]["test"][-1], name
        assert str(port) in " ".join(services[name]["ports"]), name
    assert "('127.0.0.1', 4840)" in services["simulator"]["healthcheck"]["test"][-1]
    assert services["broker"]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
    assert "depends_on" not in services["simulator"]  # needs no config
    for name, needs in DEPENDS_HEALTHY.items():
        assert services[name]["depends_on"] == {n: {"condition": "service_healthy"} for n in needs}, name


@pytest.mark.parametrize(("address", "expected"), [(None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")])
def test_published_ports_listen_on_loopback_unless_configured(address: str | None, expected: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNS_PUBLISH_ADDRESS", raising=False)
    if address is not None:
        monkeypatch.setenv("UNS_PUBLISH_ADDRESS", address)
    services = _compose(COMPOSE)["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert len(published) == 6  # 1883, 9001, 9101, 4840, 8080, 9102
    for port in published:
        assert port.split(":")[0] == expected, port


def test_no_secret_is_in_the_compose_files() -> None:
    """Passwords, tokens and keys are written by `uns init` into the config volume, never into compose."""
    for path in (COMPOSE, MOSQUITTO_OVERRIDE):
        text = path.read_text()
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{path.name}: a URL with a password"
        assert not re.search(r"(?i)(password|passwd|token|secret|api_?key)\s*[:=]", text), path.name
    for service in _compose(COMPOSE, MOSQUITTO_OVERRIDE)["services"].values():
        assert set(service.get("environment", {})) <= {"UNS_LOG_JSON"}


def test_mosquitto_override_keeps_the_hardening_and_its_healthcheck_works(tmp_path: Path) -> None:
    broker = _compose(COMPOSE, MOSQUITTO_OVERRIDE)["services"]["broker"]
    image, _, tag = broker["image"].rpartition(":")
    assert image == "eclipse-mosquitto" and re.fullmatch(r"\d+\.\d+\.\d+", tag), broker["image"]
    assert broker["user"] == "1883:1883" and broker["read_only"] is True and broker["cap_drop"] == ["ALL"]
    assert _volumes(broker) == {"/config": True}
    # the healthcheck's command, run against a real Mosquitto on a free port ($$ is compose's escaped $)
    argv = [arg.replace("$$", "$") for arg in broker["healthcheck"]["test"][1:]]
    port = argv.index("1883")
    with mosquitto_broker(tmp_path) as endpoint:
        argv[port] = str(endpoint.port)
        assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    argv[port] = str(free_port())  # nothing listens: unhealthy
    assert subprocess.run(argv, capture_output=True, timeout=30).returncode != 0
    # the generated ACL lets the anonymous explorer read $SYS, which the healthcheck subscribes as
    out = tmp_path / "config"
    subprocess.run(uns_command("init", "--profile", "compose", "--out", str(out)), check=True,
                   capture_output=True, timeout=60)
    anonymous = (out / "mosquitto.acl").read_text().split("# anonymous clients")[1].split("\n\n")[0]
    assert "topic read $SYS/#" in anonymous


def _as_uns_user(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """A `uns` command as uid/gid 10001, the image's user that compose runs every service as."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or os.geteuid() != 0:
        pytest.fail("needs root and util-linux's setpriv to run a command as uid 10001 (scripts/test runs as root)")
    return subprocess.run([setpriv, "--reuid", "10001", "--regid", "10001", "--clear-groups", *uns_command(*args)],
                          capture_output=True, text=True, timeout=60, cwd=home, env={**os.environ, "HOME": str(home)})


def test_init_runs_as_the_image_user_on_the_folders_the_dockerfile_prepares() -> None:
    """The image's entrypoint steps outside a container: `init` as uid 10001 writes the config into a
    folder owned by 10001 (the Dockerfile's /config, which a fresh named volume copies), and every
    config it wrote validates when read as that user; into a root-owned folder (the old image,
    which chowned /data only) it fails with one line that says why, not a traceback."""
    base = Path(tempfile.mkdtemp(prefix="uns-image-user-"))
    try:
        base.chmod(0o755)  # pytest's tmp folders are 0700 root: uid 10001 could not enter them
        folders = {name: base / name for name in ("config", "data", "witness")}
        for folder in folders.values():
            folder.mkdir()
            os.chown(folder, 10001, 10001)
        init = ("init", "--profile", "compose", "--out", str(folders["config"]), "--keep-existing")
        result = _as_uns_user(*init, home=folders["data"])
        assert result.returncode == 0, result.stderr
        written = sorted(folders["config"].iterdir())
        assert written and all((path.stat().st_uid, path.stat().st_gid) == (10001, 10001) for path in written)
        # the container paths /data and /witness are these folders here (the Dockerfile makes them 10001's)
        for name in ("plant.yaml", "adapter.yaml"):
            path = folders["config"] / name
            path.write_text(path.read_text().replace(" /data/", f" {folders['data']}/")
                            .replace(" /witness/", f" {folders['witness']}/"))
        check = _as_uns_user("check", str(folders["config"]), home=folders["data"])
        assert check.returncode == 0, check.stdout + check.stderr
        again = _as_uns_user(*init, home=folders["data"])
        assert again.returncode == 0 and "kept" in again.stdout

        root_owned = base / "root-owned"
        root_owned.mkdir()
        refused = _as_uns_user("init", "--profile", "compose", "--out", str(root_owned), home=folders["data"])
        assert refused.returncode == 1 and list(root_owned.iterdir()) == []
        assert refused.stderr.strip() == (
            f"uns init: cannot write to {root_owned} (owned by uid 0, running as uid 10001); give the folder "
            "to this user (the uns-hub image owns /config as uid 10001: rebuild an older image, or chown a "
            "bind-mounted folder)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
