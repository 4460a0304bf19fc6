"""Issue 17 item 5: `uns check` validates a whole deployment at once, for CI.

A stack folder from `uns init` is broken in six files at once; the real `uns check` must list
every problem (not the first of each file, not the first file), each once, as
``file:line: path: message`` with one path style (``lines[0].metrics[2].max``) and one wording for
an unknown key, and exit 2. A file named by another (the allowlist, by the adapter and the edge
node) is reported in its own file, once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.support.procs import uns_command


def check(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(uns_command("check", *map(str, paths)), capture_output=True, text=True, timeout=120)


def replace_line(path: Path, old: str, new: str, occurrence: int = 1) -> int:
    """Replace the ``occurrence``-th line equal to ``old`` (stripped) with ``new`` (same indent);
    returns its 1-based number."""
    lines = path.read_text().splitlines(keepends=True)
    seen = 0
    for index, line in enumerate(lines):
        if line.strip() == old:
            seen += 1
            if seen == occurrence:
                indent = line[: len(line) - len(line.lstrip())]
                lines[index] = "".join(indent + part + "\n" for part in new.split("\n"))
                path.write_text("".join(lines))
                return index + 1
    raise AssertionError(f"{old!r} (#{occurrence}) not in {path}")


def test_clean_folder_passes(conf: Path) -> None:
    done = check(conf)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, kind in (("broker.yaml", "broker"), ("users.yaml", "broker users"), ("plant.yaml", "edge node tag map"),
                       ("adapter.yaml", "MES adapter"), ("allowlist.yaml", "command allowlist"),
                       ("signers.yaml", "command signers")):
        assert f"ok  {conf / name} ({kind})\n" in done.stdout
    assert done.stdout.endswith("uns check: 6 file(s) OK\n")


def test_every_error_of_every_file_once_with_its_line(conf: Path) -> None:
    broker, users, plant, adapter = (conf / n for n in ("broker.yaml", "users.yaml", "plant.yaml", "adapter.yaml"))
    allowlist, signers = conf / "allowlist.yaml", conf / "signers.yaml"
    tcp_port = next(line.strip() for line in broker.read_text().splitlines() if line.strip().startswith("port:"))
    expected = [f"{broker}:{replace_line(broker, tcp_port, 'port: eighteen')}: tcp.port: "
                "Input should be a valid integer, unable to parse string as an integer"]
    role = replace_line(users, "role: host", "role: host\nrol: typo")
    expected.append(f"{users}:{role + 1}: users.mes.rol: unknown field (typo?)")
    speed = replace_line(plant, "metric: Speed", "metric: Speed\ndeadbnd: 2")
    speed_tag = sum(1 for line in plant.read_text().splitlines()[:speed] if line.startswith("- node_id:")) - 1
    expected.append(f"{plant}:{speed + 1}: tags[{speed_tag}].deadbnd: unknown field (typo?)")
    host_id = replace_line(adapter, "host_id: uns-mes", "host_id: uns-mes\nhostid: typo")
    expected.append(f"{adapter}:{host_id + 1}: host.hostid: unknown field (typo?)")
    partial = replace_line(adapter, "partial_interval_s: 300", "partial_interval_s: often")
    expected.append(f"{adapter}:{partial}: mes.partial_interval_s: "
                    "Input should be a valid number, unable to parse string as a number")
    second_max = [line.strip() for line in allowlist.read_text().splitlines() if line.strip().startswith("max:")][1]
    third_max = replace_line(allowlist, second_max, "max: lots")
    # the second rule with a max is the third rule of the first line (the first, Recipe, has none)
    assert sum(1 for line in allowlist.read_text().splitlines()[:third_max] if line.startswith("  - metric:")) == 3
    expected.append(f"{allowlist}:{third_max}: lines[0].metrics[2].max: "
                    "Input should be a valid number, unable to parse string as a number")
    active = replace_line(signers, "active: true", "activ: true")
    expected.append(f"{signers}:{active}: users.demo-operator.activ: unknown field (typo?)")

    done = check(conf)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.splitlines() == expected
    assert done.stderr == f"uns check: {len(expected)} problem(s); 0 of 6 file(s) OK\n"


def test_a_file_named_by_others_is_reported_once_in_its_own_file(conf: Path) -> None:
    """The allowlist is loaded by its own check, by the adapter's and by the edge node's: one line."""
    allowlist = conf / "allowlist.yaml"
    line = replace_line(allowlist, "version: demo-1", "version: demo-1\nvershun: 2")
    done = check(conf / "adapter.yaml", conf / "plant.yaml", allowlist)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [f"{allowlist}:{line + 1}: vershun: unknown field (typo?)"]
    assert done.stderr == "uns check: 1 problem(s); 0 of 3 file(s) OK\n"


def test_a_folder_includes_its_other_tag_maps(conf: Path) -> None:
    second = conf / "plant-line2.yaml"
    second.write_text((conf / "plant.yaml").read_text().replace("  line: line1\n", "  line: line2\n  lne: x\n", 1))
    line = second.read_text().splitlines().index("  lne: x") + 1
    (conf / "plant-external-broker.yaml").write_text("not: checked\n")  # derived by `uns up --broker`
    done = check(conf)
    assert done.returncode == 2
    assert done.stdout.splitlines()[-1] == f"{second}:{line}: line.lne: unknown field (typo?)"
    assert done.stderr == "uns check: 1 problem(s); 6 of 7 file(s) OK\n"


def test_files_are_told_apart_by_content_and_a_stranger_is_named(conf: Path, tmp_path: Path) -> None:
    tag_map = conf / "line2.yaml"  # beside the allowlist and signers it names
    shutil.copy(conf / "plant.yaml", tag_map)
    stranger = tmp_path / "notes.yaml"
    stranger.write_text("- a list\n")
    done = check(tag_map, stranger, tmp_path / "missing.yaml")
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        f"ok  {tag_map} (edge node tag map)",
        f"{stranger}: cannot tell which config this is; name it plant*.yaml, adapter*.yaml, broker*.yaml, "
        "users*.yaml, signers*.yaml or allowlist*.yaml",
        f"{tmp_path / 'missing.yaml'}: does not exist",
    ]
    assert re.fullmatch(r"uns check: 2 problem\(s\); 1 of 3 file\(s\) OK\n", done.stderr)


def test_links_between_valid_files_are_checked_in_a_folder(conf: Path) -> None:
    """Each file valid alone, the deployment broken: the edge waits for another host, its broker
    password is stale, the adapter logs in as a user the broker does not have."""
    plant, adapter, users = conf / "plant.yaml", conf / "adapter.yaml", conf / "users.yaml"
    host = replace_line(plant, "primary_host_id: uns-mes", "primary_host_id: other-host")
    edge_url = next(line.strip()[2:] for line in plant.read_text().splitlines() if "mqtt://edge:" in line)
    broker_line = replace_line(plant, f"- {edge_url}", "- " + re.sub(r"edge:[^@]*@", "edge:stale-password@", edge_url))
    mes_url = next(line.strip() for line in adapter.read_text().splitlines() if "mqtt://mes:" in line)
    adapter_line = replace_line(adapter, mes_url, mes_url.replace("mqtt://mes:", "mqtt://nobody:"))
    host_id_line = next(n for n, line in enumerate(adapter.read_text().splitlines(), 1) if "host_id: uns-mes" in line)
    done = check(conf)
    assert done.returncode == 2
    assert done.stdout.splitlines()[-3:] == [
        f"{plant}:{host}: sparkplug.primary_host_id: 'other-host' is not the adapter's host id 'uns-mes' "
        f"({adapter}:{host_id_line}): the edge node waits for that host's STATE and never births",
        f"{plant}:{broker_line}: sparkplug.brokers[0]: the password of user 'edge' does not match {users}; "
        "reset it with `uns broker passwd`",
        f"{adapter}:{adapter_line}: host.broker_url: user 'nobody' is not in {users}; add it with "
        f"`uns broker passwd {users} nobody --role host`",
    ]
    assert done.stderr == "uns check: 3 problem(s); 4 of 6 file(s) OK\n"


def test_an_edge_user_scoped_to_another_node_is_named(conf: Path) -> None:
    users, plant = conf / "users.yaml", conf / "plant.yaml"
    replace_line(users, "edge: packaging:line1", "edge: packaging:line9")
    assert_scope_refused(conf, plant, allowed="packaging:line9", wanted="packaging:line1", files=6)


def assert_scope_refused(conf: Path, plant: Path, *, allowed: str, wanted: str, files: int) -> None:
    """`uns check conf` reports exactly one problem: the edge user of ``plant`` scoped to another node."""
    broker_line = next(n for n, line in enumerate(plant.read_text().splitlines(), 1) if "mqtt://edge:" in line)
    done = check(conf)
    assert done.returncode == 2
    assert done.stdout.splitlines()[-1] == (
        f"{plant}:{broker_line}: sparkplug.brokers[0]: user 'edge' may publish for acme:plant1/{allowed} "
        f"only, not this node's acme:plant1/{wanted}: the broker refuses its Will and every birth")
    assert done.stderr == f"uns check: 1 problem(s); {files - 1} of {files} file(s) OK\n"


def test_every_tag_map_in_the_folder_is_linked_to_the_broker_users(conf: Path) -> None:
    """A browsed ``plant-own.yaml`` beside the stack (what `uns up -c` runs) is held to the same links
    as ``plant.yaml``: a line placed elsewhere than the edge user's scope is refused before it runs."""
    own = conf / "plant-own.yaml"
    shutil.copy(conf / "plant.yaml", own)
    replace_line(own, "line: line1", "line: line2")
    assert_scope_refused(conf, own, allowed="packaging:line1", wanted="packaging:line2", files=7)
