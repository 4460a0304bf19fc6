// Batches in the dashboard (issue 18 item 2): start / phase / end a batch, the batch list per line,
// and the printable batch report. Loaded after app.js and uses its helpers (el, api, state, loaders).
// The API decides who may change batch context: the controls are shown only when /api/me says
// batch_control, and every refusal the API sends is shown with its reason code and text.
"use strict";

const batches = {
  lines: [],          // line keys offered in the control and the list filter
  open: null,         // {line, batch_id} of the report on screen
  running: false,     // a running batch is listed: its counts move, the list is refreshed
  panel: null,
  report: null,
};

const BATCH_LIST_ROWS = 15;   // rows the list shows (each with its OEE): the recent past, not the archive

function fmtDateTime(ms) { return ms ? new Date(ms).toLocaleString() : "\u2013"; }
function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "\u2013";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : (m ? `${m} min ${r} s` : `${r} s`);
}
/** "Refused (409 batch_running): <the API's own text>", as the command form shows refusals. */
function refusalText(error) {
  return `Refused (${error.status || ""} ${error.body && error.body.reason ? error.body.reason : ""}): ${error.message}`;
}
const enc = (line) => line.split("/").map(encodeURIComponent).join("/");

// ---------------------------------------------------------------- the panel (built here, one hook in index.html)

function buildBatchesPanel() {
  const panel = $("batches-panel");
  const field = (label, input) => el("label", {}, label, input);
  panel.replaceChildren(
    el("h2", {}, "Batches ", el("small", {}, "start, phase, end \u00b7 running and recent \u00b7 report")),
    el("div", {class: "batch-line-row"},
      field("Line", el("select", {id: "batch-line"})),
      el("span", {id: "batch-running", class: "muted"})),
    el("form", {id: "batch-start-form", hidden: ""},
      field("Batch id", el("input", {id: "batch-id", required: "", size: "14", placeholder: "e.g. B-4872"})),
      field("Work order", el("input", {id: "batch-order", size: "12"})),
      field("Product", el("input", {id: "batch-product", size: "10"})),
      field("Target", el("input", {id: "batch-target", type: "number", min: "0", step: "any", size: "6"})),
      field("Unit", el("input", {id: "batch-uom", size: "5", placeholder: "pcs"})),
      el("button", {id: "batch-start", type: "submit"}, "Start batch")),
    el("form", {id: "batch-run-form", hidden: ""},
      field("Phase", el("input", {id: "batch-phase", size: "12", placeholder: "e.g. filling"})),
      el("button", {id: "batch-set-phase", type: "button"}, "Set phase"),
      el("button", {id: "batch-end", type: "button", class: "danger"}, "End batch")),
    el("div", {id: "batch-result", class: "result", hidden: ""}),
    el("table", {id: "batch-table"},
      el("thead", {}, el("tr", {}, ...["batch", "line", "order", "product", "phase", "start", "end", "good",
        "rejects", "OEE", ""].map((h) => el("th", {}, h)))),
      el("tbody", {id: "batch-list"})));
  $("batch-line").addEventListener("change", () => loadBatches().catch(() => {}));
  $("batch-start-form").addEventListener("submit", startBatch);
  $("batch-set-phase").addEventListener("click", setPhase);
  $("batch-end").addEventListener("click", endBatch);
  batches.panel = panel;

  const report = el("section", {id: "batch-report", hidden: ""});
  document.querySelector("main").after(report);
  batches.report = report;
  window.addEventListener("hashchange", openFromHash);
}

function batchResult(text, kind) {
  const box = $("batch-result");
  box.hidden = !text;
  box.className = "result " + (kind || "");
  box.textContent = text || "";
}

async function batchAction(path, body, done) {
  const line = $("batch-line").value;
  if (!line) return;
  try {
    const result = await api(`/api/lines/${enc(line)}/batch/${path}`, {method: "POST", body});
    batchResult(done(result), "ok");
  } catch (e) {
    batchResult(refusalText(e), "refused");
  }
  loadBatches().catch(() => {});
  scheduleRefresh(["lines"]);
}

function startBatch(ev) {
  ev.preventDefault();
  const text = (id) => $(id).value.trim() || null;
  const target = $("batch-target").value.trim();
  const body = {batch_id: $("batch-id").value.trim(), work_order_id: text("batch-order"),
    product_id: text("batch-product"), uom: text("batch-uom"), target_quantity: target === "" ? null : Number(target)};
  return batchAction("start", body, (r) => `started ${r.batch.batch_id} on ${r.batch.line}`);
}

function setPhase() {
  return batchAction("phase", {phase: $("batch-phase").value.trim() || null},
    (r) => `phase of ${r.batch.batch_id}: ${r.batch.phase || "none"}`);
}

function endBatch() {
  const running = $("batch-end").dataset.batch;
  return batchAction("end", {batch_id: running || null},
    (r) => `ended ${r.batch.batch_id}: ${fmtValue(r.batch.good)} good, ${rejectsText(r.batch)}`);
}

/** A batch's rejects as the API splits them: all scrap without QA disposition; with it, how QA
 * classified them so far and what is still pending (never every reject called scrap). */
function rejectsText(b) {
  if (b.split_unknown) return `${fmtValue(b.rejects)} rejects (QA split kept by the owning instance)`;
  if (b.pending_disposition === null || b.pending_disposition === undefined) return `${fmtValue(b.scrap)} scrap`;
  return `${fmtValue(b.rejects)} rejects: ${fmtValue(b.scrap)} scrap, ${fmtValue(b.rework)} rework, ` +
    `${fmtValue(b.accepted)} accepted, ${fmtValue(b.pending_disposition)} pending QA`;
}

/** The OEE cell of a batch row: the value, flagged when incomplete and when implausible (a warning
 * from /api/oee, e.g. effectiveness above 100 %: a counter or ideal-rate misconfiguration). */
function oeeCell(o) {
  if (!o) return el("td", {"data-field": "oee"}, "\u2013");
  const warned = (o.warnings || []).length > 0;
  const cls = [o.data_complete === false ? "incomplete" : "", warned ? "implausible" : ""].filter(Boolean).join(" ");
  return el("td", {"data-field": "oee", class: cls, title: (o.warnings || []).join("\n")},
    pct(o.oee) + (o.data_complete === false || warned ? " \u26a0" : ""));
}

// ---------------------------------------------------------------- the list

async function loadBatches() {
  if (!batches.panel) return;
  const lines = await api("/api/lines");
  const keys = lines.map((l) => l.line);
  const select = $("batch-line");
  batches.lines = refillSelect(select, keys, batches.lines);
  const line = select.value;
  const control = !!(state.me && state.me.batch_control);
  const rows = line ? await api(`/api/batches?line=${encodeURIComponent(line)}&limit=${BATCH_LIST_ROWS}`) : [];
  const running = rows.find((b) => b.running);
  batches.running = !!running;
  $("batch-start-form").hidden = !control || !line || !!running;
  $("batch-run-form").hidden = !control || !running;
  $("batch-end").dataset.batch = running ? running.batch_id : "";
  $("batch-running").textContent = !line ? "no lines yet" :
    (running ? `running: ${running.batch_id}${running.phase ? " \u00b7 " + running.phase : ""}` : "no batch running");
  const generation = sessionGeneration;
  const oees = await Promise.all(rows.map((b) =>
    api(`/api/oee?line=${encodeURIComponent(b.line)}&batch=${encodeURIComponent(b.batch_id)}`).catch(() => null)));
  if (isStale(generation)) return;  // logged out meanwhile (app.js api)
  $("batch-list").replaceChildren(...(rows.length ? rows.map((b, i) => el("tr",
    {"data-batch": b.batch_id, class: b.running ? "running" : ""},
    el("td", {}, el("b", {}, b.batch_id), b.running ? el("span", {class: "pill on"}, "running") : ""),
    el("td", {}, b.line), el("td", {}, b.work_order_id || "\u2013"), el("td", {}, b.product_id || "\u2013"),
    el("td", {}, b.phase || "\u2013"), el("td", {}, fmtDateTime(b.start_ms)), el("td", {}, fmtDateTime(b.end_ms)),
    el("td", {"data-field": "good"}, fmtValue(b.good)),
    el("td", {}, el("span", {"data-field": "rejects"}, fmtValue(b.rejects)),
      b.split_unknown ? el("small", {class: "split", "data-field": "split", title: b.split_unknown},
        "QA split kept by the owning instance") :
      b.pending_disposition === null || b.pending_disposition === undefined ? "" :
        el("small", {class: "split", "data-field": "split"}, `${fmtValue(b.scrap)} scrap \u00b7 ` +
          `${fmtValue(b.rework)} rework \u00b7 ${fmtValue(b.accepted)} accepted \u00b7 ${fmtValue(b.pending_disposition)} pending`)),
    oeeCell(oees[i]),
    el("td", {}, el("button", {class: "quiet batch-open", type: "button",
      onclick: () => { location.hash = reportHash(b.line, b.batch_id); }}, "Report"))))
    : [el("tr", {}, el("td", {colspan: 11, class: "muted"}, line ? "no batches on this line yet" : ""))]));
}

// ---------------------------------------------------------------- the report

const reportHash = (line, batchId) => `#report=${encodeURIComponent(line)}|${encodeURIComponent(batchId)}`;

function openFromHash() {
  const m = /^#report=([^|]+)\|(.+)$/.exec(location.hash);
  if (!m) { closeReport(false); return; }
  openReport(decodeURIComponent(m[1]), decodeURIComponent(m[2]));
}

function closeReport(clearHash = true) {
  batches.open = null;
  if (!batches.report) return;
  batches.report.hidden = true;
  batches.report.replaceChildren();
  document.body.classList.remove("report-open");
  if (clearHash && location.hash.startsWith("#report=")) history.replaceState(null, "", location.pathname);
}

async function openReport(line, batchId) {
  if (!state.me) return;
  batches.open = {line, batch_id: batchId};
  document.body.classList.add("report-open");
  batches.report.hidden = false;
  try {
    const r = await api(`/api/lines/${enc(line)}/batches/${encodeURIComponent(batchId)}/report`);
    if (!batches.open || batches.open.batch_id !== batchId) return;
    batches.report.replaceChildren(...renderReport(r));
  } catch (e) {
    batches.report.replaceChildren(reportToolbar(), el("p", {class: "result refused"}, refusalText(e)));
  }
}

function reportToolbar() {
  return el("div", {class: "report-toolbar"},
    el("button", {id: "report-back", type: "button", class: "quiet", onclick: () => closeReport()}, "\u2190 Back"),
    el("button", {id: "report-refresh", type: "button", class: "quiet",
      onclick: () => batches.open && openReport(batches.open.line, batches.open.batch_id)}, "Refresh"),
    el("button", {id: "report-print", type: "button", onclick: () => window.print()}, "Print"));
}

function table(id, headers, rows, empty) {
  return el("table", {id},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...(rows.length ? rows : [el("tr", {}, el("td", {colspan: headers.length, class: "muted"}, empty))])));
}

const td = (text, attrs = {}) => el("td", attrs, text ?? "\u2013");

function renderReport(r) {
  const b = r.batch, o = r.oee;
  const kv = (pairs) => el("dl", {class: "kv"}, ...pairs.flatMap(([k, v, field]) =>
    [el("dt", {}, k), el("dd", field ? {"data-report": field} : {}, v)]));
  const parts = [reportToolbar(),
    el("h2", {}, `Batch report ${b.batch_id}`, " ", el("small", {}, b.running ? "running: figures move on" : "ended")),
    el("div", {class: "report-head"},
      kv([["line", b.line], ["work order", b.work_order_id || "\u2013", "order"], ["product", b.product_id || "\u2013", "product"],
        ["phase", b.phase || "\u2013"], ["start", fmtDateTime(b.start_ms), "start"], ["end", b.running ? "running" : fmtDateTime(b.end_ms), "end"],
        ["duration", fmtDuration(((b.end_ms || r.generated_ms) - b.start_ms) / 1000)], ["report made", fmtDateTime(r.generated_ms)]]),
      kv([["good", fmtValue(b.good), "good"], ["rejects", fmtValue(b.rejects), "rejects"],
        ...(b.split_unknown ? [["scrap / rework / accepted", "kept by the owning instance (QA split)", "scrap"]]
          : b.pending_disposition === null || b.pending_disposition === undefined ? [["scrap", fmtValue(b.scrap), "scrap"]]
          : [["scrap (QA)", fmtValue(b.scrap), "scrap"], ["rework (QA)", fmtValue(b.rework), "rework"],
            ["accepted (QA)", fmtValue(b.accepted), "accepted"], ["pending QA", fmtValue(b.pending_disposition), "pending"]]),
        ["produced", fmtValue(b.produced), "produced"],
        ["target", b.target_quantity === null ? "\u2013" : `${fmtValue(b.target_quantity)} ${b.uom || ""}`, "target"],
        ...Object.entries(b.consumed).map(([k, v]) => [`consumed ${k}`, fmtValue(v)])]))];
  // a line of another adapter instance (shared MES state): what only its owner keeps is said once, and
  // its sections say "kept by the owning instance", never "none" (empty lists here mean unknown)
  const elsewhere = r.owned_elsewhere;
  if (elsewhere) parts.push(el("p", {class: "q-UNCERTAIN", "data-report": "owned-elsewhere"}, elsewhere));
  const kept = (what) => el("p", {class: "muted", "data-report": "kept-elsewhere"},
    `${what}: kept by the adapter instance that owns this line (see above)`);

  parts.push(el("h3", {}, "OEE ", el("small", {}, "ISO 22400, with the loss breakdown")));
  if (!o && elsewhere) parts.push(kept("OEE"));
  else if (!o) parts.push(el("p", {class: "muted", "data-report": "oee-unavailable"}, r.oee_unavailable || "no OEE"));
  else {
    if (o.data_complete === false) parts.push(incompleteMarker("OEE from incomplete data", o.incomplete_reasons, "report-oee-incomplete"));
    parts.push(oeeGrid(o, {"data-report": "oee"}));
    parts.push(kv([["planned time", fmtDuration(o.pot_s)], ["planned downtime", fmtDuration(o.planned_downtime_s)],
      ["run time", fmtDuration(o.apt_s)], ["unplanned stops", `${fmtDuration(o.unplanned_stop_s)} (${o.stop_count})`],
      ["micro-stops", `${fmtDuration(o.micro_stop_s)} (${o.micro_stop_count})`]]));
    if (o.warnings && o.warnings.length) parts.push(incompleteMarker("OEE implausible: check the counters and the ideal cycle time", o.warnings, "report-oee-warnings"));
    parts.push(table("report-losses", ["loss bucket", "lost time", "stops"],
      Object.entries(o.losses).map(([bucket, loss]) => el("tr", {"data-bucket": bucket},
        td(bucket), td(fmtDuration(loss.lost_s)), td(String(loss.stops)))), "no loss buckets configured"));
  }

  if (elsewhere) {
    for (const what of ["Stops", "Alarms", "Exceptions and holds", "Commands"]) parts.push(el("h3", {}, what), kept(what));
  } else {
  parts.push(el("h3", {}, "Stops ", el("small", {}, `${r.stops.length}`)));
  parts.push(table("report-stops", ["start", "end", "down", "lost", "reason", "bucket"],
    r.stops.map((s) => el("tr", {},
      td(fmtDateTime(s.start_ms)), td(s.end_ms ? fmtDateTime(s.end_ms) : "open"), td(fmtDuration(s.down_s)),
      td(fmtDuration(s.lost_s)), td(s.micro ? "micro-stop" : (s.reason ? `${s.reason.code}${s.reason.description ? " \u00b7 " + s.reason.description : ""}` : "no reason yet"),
        {class: !s.micro && !s.reason ? "q-UNCERTAIN" : ""}), td(s.bucket))), "no stops"));

  parts.push(el("h3", {}, "Alarms ", el("small", {}, `${r.alarms.length} journal rows`)));
  parts.push(table("report-alarms", ["time", "cell", "condition", "severity", "state", "message"],
    r.alarms.map((a) => el("tr", {},
      td(fmtDateTime(a.source_ts_ms)), td(a.cell), td(a.condition), td(String(a.severity)),
      td([a.active ? "active" : "inactive", a.acked ? "acked" : "unacked", a.state].filter(Boolean).join(" \u00b7 ")),
      td(a.message))), "no alarms during the batch"));

  parts.push(el("h3", {}, "Exceptions and holds"));
  parts.push(table("report-exceptions", ["opened", "condition", "cause", "owner", "action", "closed"],
    r.exceptions.map((x) => el("tr", {},
      td(fmtDateTime(x.opened_ms)), td(x.condition), td(x.cause), td(x.owner), td(x.action),
      td(x.open ? "open" : `${fmtDateTime(x.closed_ms)} by ${x.closed_by}: ${x.closing_comment}`))), "no exceptions"));
  if (r.holds.length) parts.push(table("report-holds", ["held", "reason", "released"],
    r.holds.map((h) => el("tr", {}, td(fmtDateTime(h.held_ms)), td(h.reason),
      td(h.held ? "held" : `${fmtDateTime(h.released_ms)} by ${h.released_by}: ${h.release_comment}`))), ""));

  parts.push(el("h3", {}, "Commands ", el("small", {}, "to the line's equipment during the batch")));
  parts.push(table("report-commands", ["time", "target", "value", "by", "signed", "status", "message"],
    r.commands.map((c) => el("tr", {"data-command": c.command_id},
      td(fmtDateTime(c.created_ms)), td(c.target), td(fmtValue(c.value)), td(c.requested_by),
      td(c.signed_by.join(", ") || "\u2013"), td(c.status, {class: ["refused", "rejected", "cancelled", "not_dispatched"].includes(c.status) ? "q-BAD" : ""}),
      td(c.message))), "no commands during the batch"));
  }

  parts.push(el("h3", {}, "Confirmations ", el("small", {}, "to the MES, with their delivery")));
  parts.push(table("report-confirmations", ["created", "kind", "good", "scrap", "delivery", "attempts", "last error", "id"],
    r.confirmations.map((c) => {
      const produced = (c.confirmation.produced || [])[0] || {};
      return el("tr", {"data-kind": c.kind},
        td(fmtDateTime(c.created_ms)), td(c.kind), td(fmtValue(produced.good ?? 0)), td(fmtValue(produced.scrap ?? 0)),
        td(c.status === "not_configured" ? "not configured" : (c.status === "delivered" ? `delivered ${fmtDateTime(c.delivered_ms)}` : c.status),
          {class: "delivery " + (c.status === "dead_lettered" ? "q-BAD" : (c.status === "delivered" ? "q-GOOD" : ""))}),
        td(String(c.attempts)), td(c.last_error || ""), td(c.confirmation_id, {class: "muted"}));
    }), b.running ? "none yet: the final confirmation is made when the batch ends" : "no confirmations"));

  parts.push(el("h3", {}, "Context history"));
  parts.push(table("report-context", ["from", "until", "seq", "phase", "work order", "product", "target", "by"],
    r.context.map((c) => el("tr", {},
      td(fmtDateTime(c.since_ms)), td(c.until_ms ? fmtDateTime(c.until_ms) : "running"), td(String(c.seq)), td(c.phase),
      td(c.work_order_id), td(c.product_id), td(c.target_quantity === null ? null : `${fmtValue(c.target_quantity)} ${c.uom || ""}`),
      td(c.asserted_by))), ""));
  if (r.truncated.length) parts.push(el("p", {class: "q-UNCERTAIN"}, "cut short at the row limit: " + r.truncated.join(", ")));
  return parts;
}

// ---------------------------------------------------------------- hooks into app.js

buildBatchesPanel();
loaders.batches = loadBatches;
blankHooks.push(() => {
  batches.lines = [];
  if ($("batch-line")) $("batch-line").replaceChildren();
  if ($("batch-list")) $("batch-list").replaceChildren();
  for (const id of ["batch-start-form", "batch-run-form"]) if ($(id)) $(id).hidden = true;
  if ($("batch-running")) $("batch-running").textContent = "";
  batchResult("");
  closeReport(false);
});
startHooks.push(openFromHash);
setInterval(() => { if (state.me && batches.running) scheduleRefresh(["batches"]); }, 10000);
