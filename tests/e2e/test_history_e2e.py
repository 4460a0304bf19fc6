"""Issue 16 items 1 and 4 end to end: the real simulator -> edge node -> broker -> adapter (the stack
`uns init` generates, with its default adapter config: the historian is on without any setting).

- Every value the adapter recorded of a tag is in the historian, the same values with the same
  source times and qualities, none missing and none doubled (the records store is the reference).
- A BAD episode injected with the simulator's fault surface (`uns sim fault bad-status`) reads as
  a gap over REST, from the first BAD value to the next GOOD one, and the BAD values keep the
  server's raw status code (BadNoCommunication... as the simulator sends it).
- A clean restart of the adapter mid-run loses nothing the historian held, and doubles nothing.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import Stack, running_stack, wait_until
from tests.faults.rig import restart
from tests.faults.truth import Tag, UnsView, sim_fault, wait_published

pytestmark = pytest.mark.timeout(240)

FILLER_TEMP = Tag("Line1/Filler/Temperature", "Filler", "Temperature")
BAD_NO_DATA = 0x808C0000  # what `uns sim fault bad-status` makes the server report


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, UnsView]]:
    workdir: Path = tmp_path_factory.mktemp("history")
    with running_stack(workdir) as stack, UnsView(stack) as view:
        yield stack, view


def _ids(stack: Stack, tag: Tag) -> dict[str, Any]:
    """The tag's Sparkplug ids, from the adapter's live tags (as a user finds them)."""
    def found() -> dict[str, Any] | None:
        status, tags = stack.api("GET", "/api/tags?" + urllib.parse.urlencode({"line": stack.line}), role="viewer")
        assert status == 200, tags
        for t in tags:
            if t["topic"] == tag.topic(stack.line):
                return {"group": t["group_id"], "edge": t["edge_node_id"], "device": t["device_id"],
                        "metric": t["name"]}
        return None
    ids: dict[str, Any] = wait_until(found, 60, f"{tag.path} on /api/tags")
    return {k: v for k, v in ids.items() if v is not None}


def _history(stack: Stack, path: str, **params: Any) -> tuple[int, Any]:
    return stack.api("GET", f"/api/history/{path}?" + urllib.parse.urlencode(params), role="viewer")


def _records(stack: Stack, tag: Tag, start: int, end: int) -> list[tuple[int, Any, str]]:
    query = urllib.parse.urlencode({"topic": tag.topic(stack.line), "from_ms": start, "to_ms": end, "limit": 10000})
    status, body = stack.api("GET", f"/api/tags/history?{query}", role="viewer")
    assert status == 200 and not body["truncated"], body
    return [(p["ts_ms"], p["value"], p["quality"]) for p in body["points"]]


def _raw(stack: Stack, ids: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    status, body = _history(stack, "raw", **ids, start=start, end=end)
    assert status == 200, body
    values: list[dict[str, Any]] = body["values"]
    return values


def _same_as_records(stack: Stack, ids: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    """The historian's values of [start, end) once they are exactly the records store's (same source times,
    values, qualities: nothing missing, nothing doubled); fails with both lists otherwise."""
    last: list[Any] = [None, None]

    def equal() -> list[dict[str, Any]] | None:
        records = _records(stack, FILLER_TEMP, start, end)
        values = _raw(stack, ids, start, end)
        last[:] = [records, [(v["source_ms"], v["value"], v["quality"]) for v in values]]
        return values if records and last[0] == last[1] else None
    try:
        found: list[dict[str, Any]] = wait_until(equal, 30, "historian equal to the records store", interval=0.5)
    except TimeoutError:
        raise AssertionError(f"records {last[0]}\nhistorian {last[1]}") from None
    return found


def test_values_and_a_bad_episode_as_a_gap(plant: tuple[Stack, UnsView]) -> None:
    stack, view = plant
    ids = _ids(stack, FILLER_TEMP)
    start = int(time.time() * 1000)
    topic = FILLER_TEMP.topic(stack.line)
    after = len(view.history(topic))
    sim_fault(stack, "bad-status", "--tag", FILLER_TEMP.path, "--duration", "3")
    wait_published(view, topic, after, lambda p: p.get("quality") == "BAD", 30, "BAD on the UNS")
    wait_published(view, topic, len(view.history(topic)), lambda p: p.get("quality") == "GOOD", 30,
                   "GOOD again after the 3 s burst")
    time.sleep(2)  # a few GOOD values after the episode
    end = int(time.time() * 1000)

    values = _same_as_records(stack, ids, start, end)
    qualities = [v["quality"] for v in values]
    first_bad = qualities.index("BAD")
    first_good_after = first_bad + qualities[first_bad:].index("GOOD")
    assert set(qualities[first_bad:first_good_after]) == {"BAD"}
    assert all(v["value"] is None and v["status_code"] == BAD_NO_DATA for v in values[first_bad:first_good_after])
    assert all(v["status_code"] == 0 and not v["is_historical"] for v in values[first_good_after:])

    status, body = _history(stack, "gaps", **ids, start=start, end=end)
    assert status == 200, body
    assert body["gaps"] == [{"start_ms": values[first_bad]["source_ms"],
                             "end_ms": values[first_good_after]["source_ms"], "quality": "BAD"}]
    assert body["tag"]["path"] == f"{stack.line}/{FILLER_TEMP.cell}"

    # bad queries: each a 4xx with its reason
    assert _history(stack, "raw", **ids, start=end, end=start)[1]["reason"] == "invalid_history_query"
    status, body = _history(stack, "raw", **ids, start=start, end=end, max_points=1)
    assert (status, body["reason"]) == (400, "invalid_history_query")
    status, body = _history(stack, "raw", **{**ids, "metric": "NoSuchTag"}, start=start, end=end)
    assert (status, body["reason"]) == (404, "unknown_tag")


def test_an_adapter_restart_loses_and_doubles_nothing(plant: tuple[Stack, UnsView]) -> None:
    stack, _view = plant
    ids = _ids(stack, FILLER_TEMP)
    start = int(time.time() * 1000)
    time.sleep(3)
    mid = int(time.time() * 1000)
    before = _same_as_records(stack, ids, start, mid)
    restart(stack, "adapter")  # SIGTERM, start again (the edge rebirths it: every value restated)
    wait_until(lambda: _history(stack, "raw", **ids, start=start, end=mid)[0] == 200, 60, "the adapter back")
    time.sleep(3)
    end = int(time.time() * 1000)
    after = _same_as_records(stack, ids, start, end)
    held = [(v["source_ms"], v["value"], v["quality"]) for v in after]
    # everything held before the restart is still there (values of [start, mid) still in flight when
    # `before` was read may have been added since: `after` equals the records store in any case)
    assert [(v["source_ms"], v["value"], v["quality"]) for v in before if v not in after] == []
    assert len(held) > len(before)  # the run went on after the restart
    source_times = [v["source_ms"] for v in after]
    assert len(source_times) == len(set(source_times))  # the rebirth's restatement is not stored twice
