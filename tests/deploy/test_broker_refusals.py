"""`uns up` finds the broker's refusal of the edge node in broker.log (plain text or JSON lines).

The lines are the broker's own wording (broker.auth_plugin, broker.amqtt_ext); the end-to-end
path (a real broker refusing a real edge node under `uns up`) is in tests/docs/test_tutorial_own_plc.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from unshub.broker_refusals import RefusalWatch, refusal_in

EDGE = "uns-edge-acme_plant1-packaging_line2"
WILL = (f"refused client '{EDGE}' (user 'edge'): its Will topic 'spBv1.0/acme:plant1/NDEATH/packaging:line2' "
        "is not one it may publish")


def test_plain_and_json_lines_of_the_client_are_found_and_others_are_not() -> None:
    assert refusal_in(f"2026-12-02 19:20:30,106 WARNING broker.amqtt_ext: {WILL}\n", EDGE) == WILL
    as_json = json.dumps({"ts": "2026-12-02T19:20:30.106Z", "level": "WARNING", "logger": "broker.amqtt_ext",
                          "msg": WILL})
    assert refusal_in(as_json, EDGE) == WILL
    assert refusal_in(f"... INFO broker.auth_plugin: refused client '{EDGE}': unknown user 'edgy'", EDGE) == (
        f"refused client '{EDGE}': unknown user 'edgy'")
    assert refusal_in(f"... INFO broker.auth_plugin: refused anonymous client '{EDGE}': anonymous access is off",
                      EDGE) == f"refused anonymous client '{EDGE}': anonymous access is off"
    assert refusal_in(WILL.replace(EDGE, "uns-mes"), EDGE) is None
    assert refusal_in("{not json", EDGE) is None


def test_the_watch_reads_only_what_was_written_after_it_started_and_waits_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    log.write_text(f"old run: {WILL}\n")
    watch = RefusalWatch(log, EDGE)
    assert watch.poll() is None  # an earlier run's refusal is not this run's
    with open(log, "a") as out:
        out.write("19:20:30 INFO broker: client 'x' connected\n" + WILL[:20])
    assert watch.poll() is None  # half a line: not yet
    with open(log, "a") as out:
        out.write(WILL[20:] + "\n")
    assert watch.poll() == WILL
    assert RefusalWatch(tmp_path / "missing.log", EDGE).poll() is None
