"""Store failure episodes: one log line when storing stops, one when it works again, counts exact."""

from __future__ import annotations

import logging

import pytest

from edge_node.store_health import StoreHealth


def test_an_episode_logs_once_at_start_and_once_at_end_with_its_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    health = StoreHealth(clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="edge_node.store")
    health.worked()  # nothing running: nothing to say
    for lost in (10, 0, 7):
        health.failed("store values", OSError("database or disk is full"), lost=lost)
        now[0] += 1.5
    assert health.failing and health.cause == "store values: database or disk is full"
    health.worked()
    health.worked()
    health.failed("probe", OSError("I/O error"))  # a second episode
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in records] == ["ERROR", "WARNING", "ERROR"]
    assert "store-and-forward failing (store values: database or disk is full)" in records[0][1]
    assert ("store-and-forward works again after 4.5 s: 17 values could not be stored, 3 failed operations "
            "(last: store values: database or disk is full)") == records[1][1]
    assert (health.episodes, health.lost, health.errors, health.episode_lost, health.episode_errors) == (2, 17, 4, 0, 1)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback per failure
