"""Issue 18 item 4 / issue 16 item 4: trends on the historian in a real headless Chromium at 1024×768.

Against a running stack, two tags of the Filler (Temperature in degC, Speed in parts/min) are put on
one chart from the UNS tree, and a Bad-status burst is injected on the Temperature with the
simulator's fault surface (`uns sim fault bad-status`, the simulator's InjectFault). Then, for a
chosen from–to range, a batch's window and a forced aggregate view, the page must draw exactly what
the REST API answers:

- each series' values equal ``/api/history/raw`` (and every vertex of the drawn line sits where the
  axes put that value at that time), or, above the raw limit, the intervals of
  ``/api/history/aggregates`` at the interval the chart names;
- the gap drawn over the Temperature has the bounds ``/api/history/gaps`` gives (the Speed none), and
  the line is broken there;
- each unit is on its axis (the tag's metadata), and the values under the cursor are the raw value
  then, or the gap.

Screenshots are kept under ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from typing import Any

import pytest

from simulator.client import call_method
from tests.e2e.browser import ARTIFACTS, dashboard, require_chromium
from tests.e2e.stack import Stack, running_stack, stop_service, wait_until
from tests.faults.truth import sim_fault

pytestmark = pytest.mark.timeout(300)

TEMPERATURE, SPEED = "Filler/Temperature", "Filler/Speed"


def _tag(stack: Stack, cell_metric: str) -> dict[str, Any]:
    topic = f"{stack.line}/{cell_metric}"

    def found() -> dict[str, Any] | None:
        _, tags = stack.api("GET", "/api/tags?" + urllib.parse.urlencode({"line": stack.line}), role="viewer")
        return next((t for t in tags or [] if t["topic"] == topic), None)
    tag: dict[str, Any] = wait_until(found, 60, f"{topic} on /api/tags")
    return tag


def _ids(tag: dict[str, Any]) -> dict[str, str]:
    ids = {"group": tag["group_id"], "edge": tag["edge_node_id"], "device": tag["device_id"], "metric": tag["name"]}
    return {k: v for k, v in ids.items() if v is not None}


def _history(stack: Stack, path: str, tag: dict[str, Any], **params: Any) -> Any:
    status, body = stack.api("GET", f"/api/history/{path}?" + urllib.parse.urlencode({**_ids(tag), **params}),
                             role="viewer")
    assert status == 200, body
    return body


def _settled_raw(stack: Stack, tag: dict[str, Any], start: int, end: int) -> list[dict[str, Any]]:
    """The raw values of a past range once two reads a second apart agree (nothing still in flight)."""
    last: list[Any] = [None]

    def stable() -> list[dict[str, Any]] | None:
        values = _history(stack, "raw", tag, start=start, end=end)["values"]
        same = values if values and values == last[0] else None
        last[0] = values
        return same
    found: list[dict[str, Any]] = wait_until(stable, 30, "the historian's values of the range settled", interval=1.0)
    return found


def _js_value(v: float) -> str:
    """The dashboard's fmtValue for a number."""
    if float(v).is_integer():
        return str(int(v))
    return re.sub(r"\.?0+$", "", f"{v:.3f}")


def _drawn(page: Any) -> dict[str, Any]:
    """What the chart drew: its range and scales, each series' data, each gap and strip."""
    return page.evaluate("""() => {
      const svg = document.getElementById("trend");
      const strips = [...svg.querySelectorAll(".strip")].map((g) => ({unit: g.dataset.unit,
        v0: Number(g.dataset.v0), v1: Number(g.dataset.v1),
        top: Number(g.dataset.top), bottom: Number(g.dataset.bottom),
        label: g.querySelector(".unit").textContent,
        series: [...g.querySelectorAll(".series")].map((p) => ({topic: p.dataset.topic, d: p.getAttribute("d"),
          points: p.dataset.points ? JSON.parse(p.dataset.points) : null,
          intervals: p.dataset.intervals ? JSON.parse(p.dataset.intervals) : null})),
        gaps: [...g.querySelectorAll(".gap")].map((r) => ({topic: r.dataset.topic, start_ms: Number(r.dataset.startMs),
          end_ms: r.dataset.endMs === "" ? null : Number(r.dataset.endMs), quality: r.dataset.quality,
          x: Number(r.getAttribute("x")), width: Number(r.getAttribute("width"))}))}));
      const d = svg.dataset;
      return {start: Number(d.startMs), end: Number(d.endMs), mode: d.mode,
              interval: d.intervalMs === "" ? null : Number(d.intervalMs),
              x0: Number(d.x0), x1: Number(d.x1), width: svg.viewBox.baseVal.width, strips};
    }""")


def _x(drawn: dict[str, Any], t: int) -> float:
    return drawn["x0"] + (t - drawn["start"]) / (drawn["end"] - drawn["start"]) * (drawn["x1"] - drawn["x0"])


def _y(strip: dict[str, Any], v: float) -> float:
    return strip["bottom"] - (v - strip["v0"]) / (strip["v1"] - strip["v0"]) * (strip["bottom"] - strip["top"])


def _vertices(d: str) -> tuple[list[tuple[float, float]], int]:
    """The step path's value vertices (after each M and each V) and how many pieces it has."""
    x = y = 0.0
    out: list[tuple[float, float]] = []
    pieces = 0
    for op, args in re.findall(r"([MHV])([^MHV]*)", d):
        if op == "M":
            x, y = (float(a) for a in args.split(","))
            out.append((x, y))
            pieces += 1
        elif op == "H":
            x = float(args)
        else:
            y = float(args)
            out.append((x, y))
    return out, pieces


def _strip_of(drawn: dict[str, Any], topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for strip in drawn["strips"]:
        for series in strip["series"]:
            if series["topic"] == topic:
                return strip, series
    raise AssertionError(f"{topic} not drawn: {drawn}")


def _assert_raw_drawn(drawn: dict[str, Any], topic: str, values: list[dict[str, Any]]) -> int:
    """The series shows exactly the API's values, each vertex where the axes put it; its pieces."""
    strip, series = _strip_of(drawn, topic)
    assert series["points"] == [[v["source_ms"], v["value"]] for v in values]
    vertices, pieces = _vertices(series["d"])
    numeric = [v for v in values if v["value"] is not None]
    assert len(vertices) == len(numeric)
    for (vx, vy), v in zip(vertices, numeric, strict=True):
        assert abs(vx - _x(drawn, v["source_ms"])) <= 0.06 and abs(vy - _y(strip, v["value"])) <= 0.06, (vx, vy, v)
    return pieces


def _assert_gaps_drawn(drawn: dict[str, Any], topic: str, gaps: list[dict[str, Any]]) -> None:
    strip, _ = _strip_of(drawn, topic)
    shown = [g for g in strip["gaps"] if g["topic"] == topic]
    assert [{k: g[k] for k in ("start_ms", "end_ms", "quality")} for g in shown] == gaps
    for g in shown:  # drawn over exactly that period (an open one up to the range's end: now), and
        # at least 1.5 px wide: a burst of seconds stays visible on a day's chart
        left = _x(drawn, max(g["start_ms"], drawn["start"]))
        right = _x(drawn, drawn["end"] if g["end_ms"] is None else g["end_ms"])
        assert abs(g["x"] - left) <= 0.01 and abs(g["width"] - max(right - left, 1.5)) <= 0.01


def test_two_tags_with_a_bad_burst_drawn_as_the_historian_answers(tmp_path: Any) -> None:
    require_chromium()
    from playwright.sync_api import expect

    with running_stack(tmp_path) as stack:
        line = stack.line
        temperature, speed = _tag(stack, TEMPERATURE), _tag(stack, SPEED)
        assert (temperature["unit"], speed["unit"]) == ("degC", "parts/min")
        topics = {TEMPERATURE: temperature["topic"], SPEED: speed["topic"]}
        asyncio.run(call_method(stack.opcua, "Line1", "Start"))  # the Speed moves (before Playwright's loop)
        with dashboard(stack, "viewer", 768) as page:
            page.set_viewport_size({"width": 1024, "height": 768})
            expect(page.locator("#live")).to_have_text("live", timeout=15_000)
            for topic in topics.values():
                page.locator(f'#tree .leaf[data-topic="{topic}"]').click()
                expect(page.locator(f'#trend-series li[data-topic="{topic}"]')).to_be_visible()
            expect(page.locator(f'#tree .leaf[data-topic="{topics[SPEED]}"]')).to_have_class(re.compile("selected"))
            # the default range: the last hour, raw (a fresh stack holds far fewer than the raw limit)
            expect(page.locator("#trend .strip")).to_have_count(2, timeout=15_000)  # both tags loaded
            expect(page.locator("#trend-info")).to_contain_text("last hour")
            hour = _drawn(page)
            assert (hour["end"] - hour["start"], hour["mode"]) == (3_600_000, "raw")
            assert [s["unit"] for s in hour["strips"]] == ["degC", "parts/min"]

            # a batch with a Bad-status burst of 3 s on the Temperature inside it, the line running
            start = int(time.time()) * 1000
            status, body = stack.api("POST", f"/api/lines/{line}/batch/start",
                                     {"batch_id": "B-TREND", "work_order_id": "WO-T", "product_id": "SKU-12"})
            assert status == 201, body
            time.sleep(2)
            sim_fault(stack, "bad-status", "--tag", "Line1/Filler/Temperature", "--duration", "3")

            def gap_closed() -> list[dict[str, Any]] | None:
                now = int(time.time() * 1000)
                gaps = _history(stack, "gaps", temperature, start=start, end=now)["gaps"]
                return gaps if gaps and gaps[-1]["end_ms"] is not None else None
            wait_until(gap_closed, 30, "the BAD burst closed in the historian")
            time.sleep(2)
            status, body = stack.api("POST", f"/api/lines/{line}/batch/end", {"batch_id": "B-TREND"})
            assert status == 200, body
            time.sleep(1)
            end = (int(time.time()) + 1) * 1000

            raw = {k: _settled_raw(stack, t, start, end) for k, t in ((TEMPERATURE, temperature), (SPEED, speed))}
            gaps = {k: _history(stack, "gaps", t, start=start, end=end)["gaps"]
                    for k, t in ((TEMPERATURE, temperature), (SPEED, speed))}
            assert [g["quality"] for g in gaps[TEMPERATURE]] == ["BAD"] and gaps[SPEED] == []
            assert any(v["value"] is None for v in raw[TEMPERATURE])

            # a chosen from–to range: raw values
            page.select_option("#trend-range", "custom")
            page.fill("#trend-from", page.evaluate("ms => trendLocalInput(ms)", start))
            page.fill("#trend-to", page.evaluate("ms => trendLocalInput(ms)", end))
            page.click("#trend-apply")
            expect(page.locator("#trend")).to_have_attribute("data-start-ms", str(start), timeout=15_000)
            expect(page.locator("#trend")).to_have_attribute("data-state", "ready", timeout=15_000)
            drawn = _drawn(page)
            assert (drawn["start"], drawn["end"], drawn["mode"]) == (start, end, "raw")
            assert drawn["width"] <= 1024
            assert [(s["unit"], s["label"]) for s in drawn["strips"]] == [("degC", "degC"), ("parts/min", "parts/min")]
            assert _assert_raw_drawn(drawn, topics[TEMPERATURE], raw[TEMPERATURE]) == 2  # broken over the gap
            assert _assert_raw_drawn(drawn, topics[SPEED], raw[SPEED]) == 1
            _assert_gaps_drawn(drawn, topics[TEMPERATURE], gaps[TEMPERATURE])
            _assert_gaps_drawn(drawn, topics[SPEED], [])
            expect(page.locator("#trend-info")).to_contain_text("raw values")
            gap_rect = page.locator(f'#trend .gap[data-topic="{topics[TEMPERATURE]}"]')
            expect(gap_rect).to_be_visible()

            # the value and time under the cursor: a GOOD Temperature value, then inside the gap
            page.locator("#trend-panel").scroll_into_view_if_needed()
            values = raw[TEMPERATURE]
            i = max((k for k in range(len(values) - 1) if values[k]["value"] is not None),
                    key=lambda k: values[k + 1]["source_ms"] - values[k]["source_ms"])  # the widest step
            here = (values[i]["source_ms"] + values[i + 1]["source_ms"]) // 2
            _hover(page, drawn, here)
            readout = page.locator("#trend-readout")
            expect(readout).to_be_visible()
            shown_t = int(readout.get_attribute("data-t") or 0)
            assert values[i]["source_ms"] <= shown_t < values[i + 1]["source_ms"]
            expect(readout.locator(f'[data-topic="{topics[TEMPERATURE]}"] b')).to_have_text(
                f"{_js_value(values[i]['value'])} degC")
            gap = gaps[TEMPERATURE][0]
            _hover(page, drawn, (gap["start_ms"] + gap["end_ms"]) // 2)
            expect(readout.locator(f'[data-topic="{topics[TEMPERATURE]}"] b')).to_have_text("BAD (gap)")
            page.locator("#trend-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-raw-1024x768.png"))
            page.locator("#trend-panel").screenshot(path=str(ARTIFACTS / "trend-raw-panel.png"))
            page.mouse.move(1, 1)

            # the batch's window
            _, batches = stack.api("GET", f"/api/batches?line={urllib.parse.quote(line)}", role="viewer")
            batch = next(b for b in batches if b["batch_id"] == "B-TREND")
            page.select_option("#trend-range", "batch")
            option = page.locator("#trend-batch option", has_text="B-TREND")
            expect(option).to_have_count(1, timeout=10_000)
            page.select_option("#trend-batch", option.get_attribute("value"))
            expect(page.locator("#trend")).to_have_attribute("data-start-ms", str(batch["start_ms"]), timeout=15_000)
            expect(page.locator("#trend")).to_have_attribute("data-state", "ready", timeout=15_000)
            drawn = _drawn(page)
            assert (drawn["start"], drawn["end"]) == (batch["start_ms"], batch["end_ms"])
            in_batch = _history(stack, "raw", temperature, start=batch["start_ms"], end=batch["end_ms"])["values"]
            assert _assert_raw_drawn(drawn, topics[TEMPERATURE], in_batch) == 2  # the burst is inside the batch
            window = {"start": batch["start_ms"], "end": batch["end_ms"]}
            _assert_gaps_drawn(drawn, topics[TEMPERATURE], _history(stack, "gaps", temperature, **window)["gaps"])
            expect(page.locator("#trend-info")).to_contain_text("batch B-TREND")
            page.locator("#trend-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-batch-1024x768.png"))

            # more values than the raw limit: the historian's aggregates, said on the chart
            page.evaluate("() => { trendSettings.rawMax = 5; }")
            page.select_option("#trend-range", "custom")
            page.click("#trend-apply")
            expect(page.locator("#trend")).to_have_attribute("data-mode", "aggregates", timeout=15_000)
            expect(page.locator("#trend")).to_have_attribute("data-state", "ready", timeout=15_000)
            drawn = _drawn(page)
            interval = drawn["interval"]
            assert (drawn["start"], drawn["end"]) == (start, end) and interval
            expect(page.locator("#trend-info")).to_contain_text("aggregates per")
            a_start, a_end = start // interval * interval, -(-end // interval) * interval
            for key, tag in ((TEMPERATURE, temperature), (SPEED, speed)):
                api_rows = _history(stack, "aggregates", tag, start=a_start, end=a_end, interval=interval)["intervals"]
                _, series = _strip_of(drawn, topics[key])
                assert series["intervals"] == [[a["start_ms"], a["min"], a["max"], a["twa"]] for a in api_rows]
                assert api_rows
            _assert_gaps_drawn(drawn, topics[TEMPERATURE], gaps[TEMPERATURE])
            band = page.locator("#trend .band")
            assert band.count() > 0
            page.locator("#trend-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-aggregates-1024x768.png"))

            # an OPC UA outage: the Filler dies, both tags STALE, the gap still open (drawn up to now)
            page.evaluate("() => { trendSettings.rawMax = 5000; }")
            stop_service(stack, "simulator")

            def stale_open() -> bool:
                soon = int(time.time() * 1000) + 60_000
                found = [_history(stack, "gaps", t, start=start, end=soon)["gaps"] for t in (temperature, speed)]
                return all(g and g[-1]["quality"] == "STALE" and g[-1]["end_ms"] is None for g in found)
            wait_until(stale_open, 60, "both tags STALE in the historian")
            page.select_option("#trend-range", "hour")
            for topic in topics.values():
                expect(page.locator(f'#trend .gap-STALE[data-topic="{topic}"]')).to_have_count(1, timeout=15_000)
            drawn = _drawn(page)
            assert drawn["mode"] == "raw"
            for key, tag in ((TEMPERATURE, temperature), (SPEED, speed)):
                now_gaps = _history(stack, "gaps", tag, start=drawn["start"], end=drawn["end"])["gaps"]
                assert now_gaps[-1]["end_ms"] is None
                _assert_gaps_drawn(drawn, topics[key], now_gaps)
            expect(page.locator(f'#trend-series li[data-topic="{topics[SPEED]}"]')).to_contain_text("1 gap")
            page.locator("#trend-panel").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "trend-outage-1024x768.png"))

            # a tag taken off the chart from its legend entry
            page.locator(f'#trend-series li[data-topic="{topics[SPEED]}"] .remove').click()
            expect(page.locator("#trend-series li")).to_have_count(1)
            expect(page.locator("#trend .strip")).to_have_count(1, timeout=15_000)
            expect(page.locator(f'#tree .leaf[data-topic="{topics[SPEED]}"]')).not_to_have_class(re.compile("selected"))
            assert page.evaluate("() => trend.series.map((s) => s.topic)") == [topics[TEMPERATURE]]


def _hover(page: Any, drawn: dict[str, Any], t: int) -> None:
    box = page.locator("#trend").bounding_box()
    scale = box["width"] / drawn["width"]
    page.mouse.move(box["x"] + _x(drawn, t) * scale, box["y"] + 40)
