// Trends on the historian (issue 18 item 4): several tags on one inline SVG chart, a chosen time
// range, raw values for short ranges and the historian's aggregates (min–max band and time-weighted
// average) for long ones, gaps where a tag was BAD or STALE, units on the axes, the values under the
// cursor. No library: the chart is drawn here from /api/history/{raw,aggregates,gaps}.
//
// Loaded before app.js and uses its helpers ($, el, api, fmtValue, state.tags) only when called.
// app.js calls: trendInit() once, trendReset() when the session changes, trendToggle(topic) when a
// tree leaf is clicked, trendHas(topic) to mark the plotted leaves.
//
// The SVG carries what it drew as data attributes (range, mode, interval, each series' values and
// each gap's bounds in epoch ms) so a test compares the drawing with the REST API exactly.
"use strict";

const trendSettings = {
  rawMax: 5000,          // values per tag drawn as they are; a range holding more uses aggregates
  buckets: 240,          // about this many aggregate intervals across the chart
  maxSeries: 6,
  refreshMs: 15000,      // "last hour / shift / day" slide forward this often
};
// aggregate intervals the historian can align to (start and end must be multiples of the interval)
const TREND_INTERVALS = [1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5,
  216e5, 432e5, 864e5];
// mid-tone series colours: at least 3:1 (WCAG 1.4.11, graphics) on the light and the dark panel
const TREND_COLORS = ["#2f74d0", "#e0560f", "#1f9a4a", "#8b5cf6", "#d6337a", "#0891b2"];
const TREND_SPANS = {hour: 3600e3, shift: 8 * 3600e3, day: 24 * 3600e3};
const SVG_NS = "http://www.w3.org/2000/svg";

const trend = {
  series: [],            // {topic, ids, name, unit, color, values | intervals, gaps, note}
  start: 0, end: 0,      // the drawn range [start, end), epoch ms
  mode: "raw",           // or "aggregates"
  interval: null,        // ms, aggregates only
  batches: [],
  generation: 0,         // a slower, older load never overwrites a newer one
  view: null,            // scales of the last drawing, for the cursor
  timer: null,
};

// ---------------------------------------------------------------- hooks for app.js

function trendHas(topic) { return trend.series.some((s) => s.topic === topic); }

function trendReset() {
  trend.series = []; trend.batches = [];
  trend.generation++;
  trendLegend();
  trendDraw();
  $("trend-info").textContent = "";
}

/** Add the tag to the chart, or take it off if it is on. */
function trendToggle(topic) {
  if (trendHas(topic)) {
    trend.series = trend.series.filter((s) => s.topic !== topic);
  } else {
    const tag = state.tags.get(topic);
    if (!tag) return;
    if (trend.series.length >= trendSettings.maxSeries) {
      $("trend-info").textContent = `at most ${trendSettings.maxSeries} tags on one chart: remove one first`;
      return;
    }
    const used = new Set(trend.series.map((s) => s.color));
    trend.series.push({topic, ids: trendIds(tag), name: topic.split("/").slice(-2).join("/"),
      unit: tag.unit || "", color: TREND_COLORS.find((c) => !used.has(c)) || TREND_COLORS[0],
      values: [], intervals: [], gaps: [], note: "loading…"});
  }
  document.querySelectorAll("#tree .leaf").forEach((n) => n.classList.toggle("selected", trendHas(n.dataset.topic)));
  trendLegend();
  trendLoad();
}

function trendInit() {
  $("trend-range").addEventListener("change", trendRangeChanged);
  $("trend-apply").addEventListener("click", trendLoad);
  $("trend-batch").addEventListener("change", trendLoad);
  const box = $("trend-box");
  box.addEventListener("mousemove", trendCursor);
  box.addEventListener("mouseleave", () => { $("trend-readout").hidden = true; trendCursorLine(null); });
  let resize = null;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(trendDraw, 150); });
  trend.timer = setInterval(() => {
    if (state.me && trend.series.length && TREND_SPANS[$("trend-range").value]) trendLoad();
  }, trendSettings.refreshMs);
  trendDraw();
}

// ---------------------------------------------------------------- range

/** A datetime-local input's text for an epoch ms, in the browser's time zone (seconds shown). */
function trendLocalInput(ms) {
  const d = new Date(ms), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

async function trendRangeChanged() {
  const kind = $("trend-range").value;
  $("trend-custom").hidden = kind !== "custom";
  $("trend-batch").hidden = kind !== "batch";
  if (kind === "custom" && !$("trend-from").value) {  // start from what is on screen
    const end = trend.end || Date.now();
    $("trend-from").value = trendLocalInput(trend.start || end - TREND_SPANS.hour);
    $("trend-to").value = trendLocalInput(end);
  }
  if (kind === "batch") {
    try {
      trend.batches = await api("/api/batches?limit=100");
    } catch (e) {
      trend.batches = [];
      $("trend-info").textContent = "batches: " + e.message;
    }
    $("trend-batch").replaceChildren(...(trend.batches.length ? trend.batches.map((b, i) =>
      el("option", {value: String(i)}, `${b.batch_id} · ${b.line} · ${trendTimeLabel(b.start_ms, true)}` +
        (b.end_ms === null ? " · running" : ` – ${trendTimeLabel(b.end_ms, true)}`)))
      : [el("option", {value: ""}, "no batches yet")]));
  }
  if (kind !== "custom") trendLoad();
}

/** The chosen [start, end) in epoch ms and how to name it, or an error text. */
function trendRange() {
  const kind = $("trend-range").value, now = Date.now();
  if (TREND_SPANS[kind]) return {start: now - TREND_SPANS[kind], end: now, label: $("trend-range").selectedOptions[0].text};
  if (kind === "custom") {
    const start = new Date($("trend-from").value).getTime(), end = new Date($("trend-to").value).getTime();
    if (!Number.isFinite(start) || !Number.isFinite(end)) return {error: "give a start and an end"};
    if (end <= start) return {error: "the end must be after the start"};
    return {start, end, label: "custom range"};
  }
  const b = trend.batches[Number($("trend-batch").value)];
  if (!b || $("trend-batch").value === "") return {error: "choose a batch"};
  return {start: b.start_ms, end: b.end_ms === null ? Math.max(now, b.start_ms + 1) : b.end_ms,
    label: `batch ${b.batch_id}` + (b.end_ms === null ? " (running)" : "")};
}

// ---------------------------------------------------------------- loading

function trendIds(tag) {
  const ids = {group: tag.group_id, edge: tag.edge_node_id, metric: tag.name};
  if (tag.device_id) ids.device = tag.device_id;
  return ids;
}

function trendQuery(path, series, params) {
  return api(`/api/history/${path}?` + new URLSearchParams({...series.ids, ...params}));
}

/** A raw query refused only because the range holds more values than asked for. */
function trendTooMany(e) {
  return e.status === 400 && e.body && e.body.reason === "invalid_history_query" && /^more than \d+ values/.test(e.body.detail);
}

/** The aggregate interval: the shortest that gives at most `buckets` intervals over the range. */
function trendInterval(span) {
  return TREND_INTERVALS.find((i) => span / i <= trendSettings.buckets) || TREND_INTERVALS[TREND_INTERVALS.length - 1];
}

async function trendLoad() {
  const generation = ++trend.generation;
  const range = trendRange();
  if (range.error) { $("trend-info").textContent = range.error; return; }
  const {start, end} = range;
  const series = trend.series;
  $("trend").dataset.state = "loading";
  // raw first: a short range is drawn as it is; one tag with more than rawMax values makes the whole
  // chart aggregates (one interval for every tag, so they compare)
  const raws = await Promise.all(series.map((s) =>
    trendQuery("raw", s, {start, end, max_points: trendSettings.rawMax}).then((b) => ({values: b.values}), (e) => ({e}))));
  let mode = raws.some((r) => r.e && trendTooMany(r.e)) ? "aggregates" : "raw";
  let interval = null, aggs = [];
  if (mode === "aggregates") {
    interval = trendInterval(end - start);
    const aStart = Math.floor(start / interval) * interval, aEnd = Math.ceil(end / interval) * interval;
    aggs = await Promise.all(series.map((s) =>
      trendQuery("aggregates", s, {start: aStart, end: aEnd, interval}).then((b) => ({intervals: b.intervals}), (e) => ({e}))));
  }
  const gaps = await Promise.all(series.map((s) =>
    trendQuery("gaps", s, {start, end}).then((b) => b.gaps, () => [])));
  if (generation !== trend.generation) return;  // a newer load (or a reset) took over
  series.forEach((s, i) => {
    const failed = mode === "raw" ? raws[i].e : aggs[i].e;
    s.values = mode === "raw" && !failed ? raws[i].values : [];
    s.intervals = mode === "aggregates" && !failed ? aggs[i].intervals : [];
    s.gaps = failed ? [] : gaps[i];
    s.note = failed ? failed.message : trendNote(s, mode);
  });
  Object.assign(trend, {start, end, mode, interval});
  $("trend-info").textContent = trendCaption(range.label);
  trendLegend();
  trendDraw();
}

function trendNote(s, mode) {
  const n = mode === "raw" ? s.values.length : s.intervals.reduce((a, i) => a + i.samples, 0);
  const text = mode === "raw" && s.values.some((v) => typeof v.value === "string") ? " · text values not plotted" : "";
  return `${n} values` + (s.gaps.length ? ` · ${s.gaps.length} gap${s.gaps.length > 1 ? "s" : ""}` : "") + text;
}

function trendCaption(label) {
  const span = `${trendTimeLabel(trend.start, true)} – ${trendTimeLabel(trend.end, true)}`;
  if (!trend.series.length) return `${label}: ${span}`;
  return trend.mode === "raw"
    ? `${label}: ${span} · raw values (at most ${trendSettings.rawMax} per tag)`
    : `${label}: ${span} · aggregates per ${trendDuration(trend.interval)}: min–max band and time-weighted ` +
      `average (more than ${trendSettings.rawMax} values of a tag in the range)`;
}

function trendDuration(ms) {
  if (ms % 36e5 === 0) return `${ms / 36e5} h`;
  if (ms % 6e4 === 0) return `${ms / 6e4} min`;
  return `${ms / 1e3} s`;
}

function trendTimeLabel(ms, withDate) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
  return withDate ? `${d.toLocaleDateString()} ${time}` : time;
}

// ---------------------------------------------------------------- legend

function trendLegend() {
  const list = $("trend-series");
  list.replaceChildren(...trend.series.map((s) => el("li", {"data-topic": s.topic},
    el("span", {class: "swatch", style: `background:${s.color}`}),
    el("b", {title: s.topic}, s.name), el("span", {class: "muted"}, s.unit ? ` [${s.unit}] ` : " "),
    el("span", {class: "muted note"}, s.note),
    el("button", {class: "quiet remove", title: "take off the chart", onclick: () => trendToggle(s.topic)}, "\u00d7"))));
  $("trend-topic").textContent = trend.series.length ? `${trend.series.length} tag${trend.series.length > 1 ? "s" : ""}`
    : "click tags in the tree to add them";
}

// ---------------------------------------------------------------- drawing

function svgEl(tag, attrs = {}, text) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

function niceStep(span, count) {
  const raw = span / Math.max(count, 1), mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

const numeric = (v) => typeof v === "number" || typeof v === "boolean";

/** The value range of the series drawn in one strip (one unit), padded so lines never touch the edge. */
function stripRange(list) {
  let lo = Infinity, hi = -Infinity;
  for (const s of list) {
    for (const v of s.values) if (numeric(v.value)) { lo = Math.min(lo, Number(v.value)); hi = Math.max(hi, Number(v.value)); }
    for (const a of s.intervals) for (const v of [a.min, a.max]) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function trendDraw() {
  const svg = $("trend");
  const W = Math.max($("trend-box").clientWidth, 320), L = 58, R = 12, T = 8, B = 24, GAP = 16;
  const units = [...new Set(trend.series.map((s) => s.unit))];
  const S = units.length <= 1 ? 220 : Math.max(110, Math.round(260 / units.length));
  const H = T + Math.max(units.length, 1) * S + (Math.max(units.length, 1) - 1) * GAP + B;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.style.height = H + "px";
  const nodes = [];
  const {start, end} = trend;
  Object.assign(svg.dataset, {startMs: start, endMs: end, mode: trend.mode, intervalMs: trend.interval ?? "",
    x0: L, x1: W - R, state: "ready"});
  if (!trend.series.length || end <= start) {
    nodes.push(svgEl("text", {class: "lbl", x: W / 2 - 70, y: H / 2}, "click tags in the tree to add them"));
    svg.replaceChildren(...nodes);
    trend.view = null;
    return;
  }
  const x = (t) => L + (Math.min(Math.max(t, start), end) - start) / (end - start) * (W - L - R);
  const now = Date.now();
  // time axis: ticks at a round interval, about one per 80 px
  const tickMs = TREND_INTERVALS.find((i) => (end - start) / i <= (W - L - R) / 80) || 864e5;
  const offset = new Date(start).getTimezoneOffset() * 6e4;  // round ticks on local wall-clock time
  for (let t = Math.ceil((start - offset) / tickMs) * tickMs + offset; t <= end; t += tickMs) {
    nodes.push(svgEl("line", {class: "grid", x1: x(t), y1: T, x2: x(t), y2: H - B}));
    const text = end - start > 2 * 864e5 ? new Date(t).toLocaleDateString() :
      trendTimeLabel(t, false).slice(0, tickMs < 6e4 ? 8 : 5);
    nodes.push(svgEl("text", {class: "lbl tick-t", x: x(t), y: H - 8, "text-anchor": "middle"}, text));
  }
  const strips = units.map((unit, k) => {
    const top = T + k * (S + GAP), bottom = top + S;
    const list = trend.series.filter((s) => s.unit === unit);
    const [v0, v1] = stripRange(list);
    const y = (v) => bottom - (v - v0) / (v1 - v0) * S;
    const g = svgEl("g", {class: "strip", "data-unit": unit, "data-v0": v0, "data-v1": v1, "data-top": top, "data-bottom": bottom});
    g.append(svgEl("line", {class: "axis", x1: L, y1: bottom, x2: W - R, y2: bottom}),
      svgEl("line", {class: "axis", x1: L, y1: top, x2: L, y2: bottom}));
    const step = niceStep(v1 - v0, Math.max(2, Math.floor(S / 40)));
    for (let v = Math.ceil(v0 / step) * step; v <= v1; v += step) {
      g.append(svgEl("line", {class: "grid", x1: L, y1: y(v), x2: W - R, y2: y(v)}),
        svgEl("text", {class: "lbl", x: L - 4, y: y(v) + 3, "text-anchor": "end"}, fmtValue(Number(v.toPrecision(12)))));
    }
    g.append(svgEl("text", {class: "unit", x: 12, y: (top + bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${(top + bottom) / 2})`}, unit || "(no unit)"));
    for (const s of list) {
      for (const gap of s.gaps) {  // drawn first: the values sit on top
        const gEnd = gap.end_ms === null ? Math.min(end, now) : gap.end_ms;
        const rect = svgEl("rect", {class: `gap gap-${gap.quality}`, x: x(gap.start_ms), y: top,
          width: Math.max(x(gEnd) - x(gap.start_ms), 1.5), height: S, "data-topic": s.topic,
          "data-start-ms": gap.start_ms, "data-end-ms": gap.end_ms ?? "", "data-quality": gap.quality});
        rect.append(svgEl("title", {}, `${s.name} ${gap.quality} from ${trendTimeLabel(gap.start_ms, true)}` +
          (gap.end_ms === null ? " (still open)" : ` to ${trendTimeLabel(gap.end_ms, true)}`)));
        g.append(rect);
      }
      if (trend.mode === "raw") g.append(rawPath(s, x, y, Math.min(end, now)));
      else g.append(...aggregateShapes(s, x, y));
    }
    return {unit, top, bottom, v0, v1, g};
  });
  nodes.push(...strips.map((s) => s.g));
  nodes.push(svgEl("line", {class: "cursor", x1: -10, y1: T, x2: -10, y2: H - B, visibility: "hidden"}));
  svg.replaceChildren(...nodes);
  trend.view = {W, L, R, x, strips};
}

const px = (n) => n.toFixed(1);

/** A step line (a value holds until the next one arrives: report by exception), broken where a
 * value is missing (BAD/STALE nulls); the values drawn are kept on the path as [source_ms, value]. */
function rawPath(s, x, y, until) {
  let d = "", down = false;
  for (const v of s.values) {
    if (numeric(v.value)) {
      d += down ? `H${px(x(v.source_ms))}V${px(y(Number(v.value)))}` : `M${px(x(v.source_ms))},${px(y(Number(v.value)))}`;
      down = true;
    } else if (down) {
      d += `H${px(x(v.source_ms))}`;
      down = false;
    }
  }
  if (down) d += `H${px(x(until))}`;
  return svgEl("path", {class: "series", d: d || "M0,0", stroke: s.color, "data-topic": s.topic,
    "data-points": JSON.stringify(s.values.map((v) => [v.source_ms, v.value]))});
}

/** Per interval a min–max band and the time-weighted average as a step line; across intervals
 * without a sample the last value holds, unless the tag was in a gap (BAD/STALE) meanwhile. */
function aggregateShapes(s, x, y) {
  const out = [];
  let d = "", prev = null;
  const inGap = (from, to) => s.gaps.some((g) => g.start_ms < to && (g.end_ms === null || g.end_ms > from));
  for (const a of s.intervals) {
    if (a.min !== null && a.max !== null) {
      out.push(svgEl("rect", {class: "band", x: px(x(a.start_ms)), y: px(y(a.max)), fill: s.color,
        width: px(Math.max(x(a.end_ms) - x(a.start_ms), 1)), height: px(Math.max(y(a.min) - y(a.max), 1))}));
    }
    if (a.twa === null) { prev = null; continue; }
    if (prev === null) d += `M${px(x(a.start_ms))},${px(y(a.twa))}`;
    else if (prev.end_ms < a.start_ms && prev.last !== null && !inGap(prev.end_ms, a.start_ms)) d += `V${px(y(prev.last))}H${px(x(a.start_ms))}V${px(y(a.twa))}`;
    else if (prev.end_ms < a.start_ms) d += `M${px(x(a.start_ms))},${px(y(a.twa))}`;
    else d += `V${px(y(a.twa))}`;
    d += `H${px(x(a.end_ms))}`;
    prev = a;
  }
  out.push(svgEl("path", {class: "series avg", d: d || "M0,0", stroke: s.color, "data-topic": s.topic,
    "data-intervals": JSON.stringify(s.intervals.map((a) => [a.start_ms, a.min, a.max, a.twa]))}));
  return out;
}

// ---------------------------------------------------------------- cursor

function trendCursorLine(cx) {
  const line = document.querySelector("#trend .cursor");
  if (!line) return;
  line.setAttribute("visibility", cx === null ? "hidden" : "visible");
  if (cx !== null) { line.setAttribute("x1", cx); line.setAttribute("x2", cx); }
}

/** What a series showed at time t: the value then (raw), or its interval's figures (aggregates). */
function trendValueAt(s, t) {
  const gap = s.gaps.find((g) => g.start_ms <= t && (g.end_ms === null || t < g.end_ms));
  if (gap) return `${gap.quality} (gap)`;
  const unit = s.unit ? " " + s.unit : "";
  if (trend.mode === "raw") {
    let last = null;
    for (const v of s.values) { if (v.source_ms > t) break; last = v; }
    if (last === null) return "\u2014";
    return numeric(last.value) || typeof last.value === "string" ? fmtValue(last.value) + unit : last.quality;
  }
  const a = s.intervals.find((i) => i.start_ms <= t && t < i.end_ms);
  if (!a || a.twa === null) return "\u2014";
  return `avg ${fmtValue(a.twa)}${unit} (min ${fmtValue(a.min)}, max ${fmtValue(a.max)})`;
}

function trendCursor(ev) {
  const view = trend.view, svg = $("trend"), box = $("trend-box");
  const readout = $("trend-readout");
  if (!view) { readout.hidden = true; return; }
  const rect = svg.getBoundingClientRect();
  const cx = (ev.clientX - rect.left) * view.W / rect.width;
  if (cx < view.L || cx > view.W - view.R) { readout.hidden = true; trendCursorLine(null); return; }
  const t = Math.round(trend.start + (cx - view.L) / (view.W - view.L - view.R) * (trend.end - trend.start));
  trendCursorLine(cx);
  readout.replaceChildren(el("div", {class: "when"}, trendTimeLabel(t, true)),
    ...trend.series.map((s) => el("div", {"data-topic": s.topic},
      el("span", {class: "swatch", style: `background:${s.color}`}), `${s.name}: `, el("b", {}, trendValueAt(s, t)))));
  readout.dataset.t = t;
  readout.hidden = false;
  const left = ev.clientX - box.getBoundingClientRect().left;
  readout.style.left = (left > box.clientWidth / 2 ? left - readout.offsetWidth - 12 : left + 12) + "px";
}
