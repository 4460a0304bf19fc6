"""Issue 12: an episode open when the adapter is killed is neither lost nor duplicated.

Real stack; ``bad_status`` on ``Line1/Filler/Temperature`` for long enough that the adapter can be
SIGKILLed (by its PID) while the episode is active and started again. The new adapter loads the open
episode from its store; the edge's births restate the still-Bad tag without opening a second one, and
the first GOOD value after the fault closes the stored row: one episode, the same id, start as before,
an end, bound to the batch; the retained ``_alarms`` topic ends ``cleared`` with that id.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.stack import running_stack, wait_until
from tests.faults.test_status_and_episodes import TAG, payload, sim_fault, uns_sniffer

pytestmark = pytest.mark.timeout(150)


def test_open_episode_survives_an_adapter_sigkill(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        alarm_topic = f"{stack.line}/_alarms/Filler/Temperature"
        status, body = stack.api("POST", f"/api/lines/{stack.line}/batch/start",
                                 {"batch_id": "B-R1", "phase": "fill"})
        assert status == 201, body
        with uns_sniffer(stack, alarm_topic) as sniffer:
            sim_fault(stack, "bad-status", "--tag", TAG, "--duration", "15")
            [active] = sniffer.wait_for(lambda m: payload(m)["state"] == "active", timeout=20)
            event = payload(active)
            assert (event["batch_id"], event["phase"], event["reason"]) == ("B-R1", "fill", "bad_status")

            # kill -9 the adapter while the episode is open, start the very same command again
            [(spec, proc)] = [(s, p) for s, p in stack.supervisor.running if s.name == "adapter"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            stack.supervisor.running.remove((spec, proc))
            stack.supervisor.start(spec)

            _, episodes = stack.api("GET", f"/api/lines/{stack.line}/events?batch_id=B-R1", role="viewer")
            assert [(e["id"], e["start_ms"], e["active"]) for e in episodes] == [
                (event["episode_id"], event["start_ms"], True)]
            [cleared] = sniffer.wait_for(lambda m: payload(m)["state"] == "cleared", timeout=40)
            done = payload(cleared)
            assert (done["episode_id"], done["start_ms"], done["batch_id"]) == (
                event["episode_id"], event["start_ms"], "B-R1")
            assert done["end_ms"] > done["start_ms"]

        def closed() -> list | None:
            _, rows = stack.api("GET", f"/api/lines/{stack.line}/events?batch_id=B-R1", role="viewer")
            return rows if rows and not rows[-1]["active"] else None

        episodes = wait_until(closed, 10, "the stored episode closed")
        assert [(e["id"], e["metric"], e["start_ms"], e["end_ms"], e["batch_id"], e["phase"]) for e in episodes] == [
            (event["episode_id"], "Temperature", event["start_ms"], done["end_ms"], "B-R1", "fill")]
