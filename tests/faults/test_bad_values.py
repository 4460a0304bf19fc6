"""Issue 12, defects 3 (host half) and 7: invalid is never shown as valid, and a wrong clock never
freezes a tag.

One stack of real processes (`uns init` configs; broker, simulator, adapter, edge) with per-tag
settings in plant.yaml; faults from the operator's CLI (`uns sim fault ...`). Each scenario
asserts the retained UNS topic while the fault lasts (quality, ``reason``, value) and after it
(GOOD, no reason, the server's value or a value that keeps moving):

- an out-of-range spike (-9999 on a 0..95 °C sensor): BAD, ``out_of_range``, ``raw_value``;
- a frozen sensor (``frozen_after_s: 2``): UNCERTAIN, ``frozen``, the value kept;
- a silent tag (``max_age_s: 3``): STALE, ``max_age``, the value kept;
- a Bad burst from the server: BAD, ``bad_status``, null;
- source timestamps an hour ahead and two days behind: UNCERTAIN ``future_timestamp`` /
  ``old_timestamp``, and the tag keeps updating afterwards; the same on the running line's
  GoodCount (the issue's case), which ends equal to the server's counter.

Temperatures carry sensor noise on every simulator tick, so "moving" is observable and "the
server's value" is compared after holding the tag (`uns sim fault freeze`) where no staleness rule
is configured on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.client import call_method
from tests.e2e.stack import Stack, running_stack, wait_until
from tests.faults.truth import (
    Tag,
    UnsView,
    server_values,
    sim_fault,
    tag_settings,
    wait_payload,
    wait_published,
    wait_truth,
)

pytestmark = pytest.mark.timeout(180)

FILLER_TEMP = Tag("Line1/Filler/Temperature", "Filler", "Temperature")
FILLER_SPEED = Tag("Line1/Filler/Speed", "Filler", "Speed")
CAPPER_TEMP = Tag("Line1/Capper/Temperature", "Capper", "Temperature")
LABELER_TEMP = Tag("Line1/Labeler/Temperature", "Labeler", "Temperature")
SETTINGS = {CAPPER_TEMP.path: {"frozen_after_s": 2}, LABELER_TEMP.path: {"max_age_s": 3}}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, UnsView]]:
    workdir: Path = tmp_path_factory.mktemp("bad-values")
    with running_stack(workdir, edge_overrides=tag_settings(SETTINGS)) as stack, UnsView(stack) as view:
        yield stack, view


def good(payload: dict[str, Any]) -> bool:
    return payload["quality"] == "GOOD" and "reason" not in payload and payload["value"] is not None


def keeps_moving(view: UnsView, stack: Stack, tag: Tag, count: int = 3) -> None:
    """``count`` more distinct GOOD values with a sane clock arrive on the tag's topic."""
    topic = tag.topic(stack.line)
    values: set[Any] = set()

    def moved() -> bool:
        payload = view.latest().get(topic)
        if payload is not None and good(payload) and abs(payload["timestamp_ms"] - time.time() * 1000) < 60_000:
            values.add(payload["value"])
        return len(values) >= count
    wait_until(moved, 25, f"{tag.path} updating GOOD after the fault", interval=0.05)


def during(stack: Stack, view: UnsView, tag: Tag, *fault: str, duration: str = "2") -> dict[str, Any]:
    """Inject ``fault`` on a GOOD tag; the first non-GOOD payload its topic then publishes (found in
    the topic's history, so a short episode is seen even on a loaded machine)."""
    topic = tag.topic(stack.line)
    wait_payload(view, topic, good, 20, f"{tag.path} GOOD")
    after = len(view.history(topic))
    sim_fault(stack, *fault, "--tag", tag.path, "--duration", duration)
    return wait_published(view, topic, after, lambda p: p["quality"] != "GOOD", 15, f"{fault[0]} on {tag.path}")[0]


def held_equals_server(stack: Stack, view: UnsView, tag: Tag) -> None:
    sim_fault(stack, "freeze", "--tag", tag.path, "--duration", "3")
    wait_truth(stack, view, [tag], 10)
    sim_fault(stack, "clear", "--tag", tag.path)


def test_out_of_range_spike_is_bad_with_the_raw_value_then_good(plant: tuple[Stack, UnsView]) -> None:
    stack, view = plant
    spike = during(stack, view, FILLER_TEMP, "spike")
    assert (spike["value"], spike["quality"], spike["reason"], spike["raw_value"], spike["status_code"]) == (
        None, "BAD", "out_of_range", "-9999.0", 0x803C0000)
    keeps_moving(view, stack, FILLER_TEMP)
    held_equals_server(stack, view, FILLER_TEMP)


def test_frozen_sensor_is_uncertain_and_silent_tag_stale_then_good(plant: tuple[Stack, UnsView]) -> None:
    stack, view = plant
    after: dict[Tag, int] = {}
    for tag in (CAPPER_TEMP, LABELER_TEMP):
        wait_payload(view, tag.topic(stack.line), good, 20, f"{tag.path} GOOD")
        after[tag] = len(view.history(tag.topic(stack.line)))
        sim_fault(stack, "freeze", "--tag", tag.path, "--duration", "10")
    frozen, before_frozen = wait_published(view, CAPPER_TEMP.topic(stack.line), after[CAPPER_TEMP],
                                           lambda p: p["quality"] != "GOOD", 10, "the frozen Capper temperature")
    stale, before_stale = wait_published(view, LABELER_TEMP.topic(stack.line), after[LABELER_TEMP],
                                         lambda p: p["quality"] != "GOOD", 10, "the silent Labeler temperature")
    held = server_values(stack, [CAPPER_TEMP.path, LABELER_TEMP.path])  # the values the faults hold
    assert (frozen["quality"], frozen["reason"], frozen["status_code"], frozen["value"]) == (
        "UNCERTAIN", "frozen", 0x40930000, held[CAPPER_TEMP.path])
    assert (stale["quality"], stale["reason"], stale["value"]) == ("STALE", "max_age", held[LABELER_TEMP.path])
    # the value kept is the last one published before
    assert before_frozen is not None and before_frozen["value"] == frozen["value"]
    assert before_stale is not None and before_stale["value"] == stale["value"]
    for tag in (CAPPER_TEMP, LABELER_TEMP):
        keeps_moving(view, stack, tag)


def test_bad_burst_is_bad_while_it_lasts_then_the_server_value(plant: tuple[Stack, UnsView]) -> None:
    stack, view = plant
    bad = during(stack, view, FILLER_SPEED, "bad-status")
    assert (bad["value"], bad["quality"], bad["reason"], bad["status_code"]) == (None, "BAD", "bad_status", 0x808C0000)
    wait_truth(stack, view, [FILLER_SPEED], 15)  # idle line: 0.0, unchanged since before the burst


@pytest.mark.parametrize(("fault", "option", "reason", "flag"), [
    ("future-timestamp", "--ahead", "future_timestamp", "future_timestamp"),
    ("past-timestamp", "--behind", "old_timestamp", None),
])
def test_wrong_source_clock_is_flagged_and_the_tag_keeps_updating(plant: tuple[Stack, UnsView], fault: str,
                                                                  option: str, reason: str, flag: str | None) -> None:
    stack, view = plant
    flagged = during(stack, view, FILLER_TEMP, fault, option, "3600" if fault == "future-timestamp" else "172800")
    assert flagged["reason"] == reason
    assert flagged["quality"] == "UNCERTAIN" and flagged["value"] is not None
    skew = flagged["timestamp_ms"] - time.time() * 1000
    assert (skew > 3_000_000) if fault == "future-timestamp" else (skew < -172_000_000)
    if flag is not None:
        assert flagged[flag] is True
    keeps_moving(view, stack, FILLER_TEMP)
    held_equals_server(stack, view, FILLER_TEMP)


def test_future_timestamp_on_a_running_counter_does_not_freeze_it(plant: tuple[Stack, UnsView]) -> None:
    """The issue's case: GoodCount an hour ahead for a few seconds while the line runs; afterwards
    the UNS follows the counter again and ends equal to the server's (the live model applies the
    samples after the flagged one although their source time is older)."""
    stack, view = plant
    good_count = Tag("Line1/GoodCount", None, "GoodCount")
    asyncio.run(call_method(stack.opcua, "Line1", "Start"))
    try:
        flagged = during(stack, view, good_count, "future-timestamp", "--ahead", "3600")
        assert (flagged["quality"], flagged["reason"], flagged["future_timestamp"]) == (
            "UNCERTAIN", "future_timestamp", True)
        keeps_moving(view, stack, good_count)
    finally:
        asyncio.run(call_method(stack.opcua, "Line1", "Stop"))
    wait_truth(stack, view, [good_count], 15)
