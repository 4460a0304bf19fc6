// Orders, stops and QA disposition in the dashboard (issue 19's dashboard part, issue 18): one panel
// with a line chosen at its top. Loaded after app.js and batches.js and uses their helpers (el, api,
// state, loaders, showCommand, browserSignature, refusalText, fmtDateTime, fmtDuration, enc).
// The API decides roles: controls are shown only when /api/me says the user may use them
// (order_start, order_cancel, stop_reason, disposition), and every refusal is shown with the API's
// own reason code and text.
"use strict";

const mes = {
  panel: null,
  lines: [],          // line keys offered in the panel's line select
  reasons: [],        // the configured reason hierarchy, flat (GET /api/stops/reasons)
  starting: false,    // an order is starting: the list is refreshed until its command ends
  unanswered: new Map(),  // dispositions sent whose answer never came, by content: a retry resends the same one
};

const MES_BATCH_ROWS = 15;  // batches looked at for pending rejects: the recent past

// ---------------------------------------------------------------- the panel (built here, one hook in index.html)

function buildMesPanel() {
  const panel = $("mes-ops-panel");
  const field = (label, input) => el("label", {}, label, input);
  const head = (id, headers) => el("table", {id},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))), el("tbody", {}));
  panel.replaceChildren(
    el("h2", {}, "Orders, stops and QA ", el("small", {}, "start orders \u00b7 explain stops \u00b7 classify rejects")),
    el("div", {class: "batch-line-row"}, field("Line", el("select", {id: "mes-line"}))),
    el("div", {id: "mes-result", class: "result", hidden: ""}),
    el("h3", {}, "Orders ", el("small", {}, "from the ERP; a start writes the order to the PLC, signed")),
    el("div", {class: "table-scroll"}, head("orders-table",
      ["order", "product", "quantity", "recipe", "due", "status", ""])),
    el("h3", {}, "Stops ", el("small", {id: "stops-summary"})),
    el("div", {class: "batch-line-row"}, field("Of", el("select", {id: "stops-scope"}))),
    el("div", {class: "table-scroll"}, head("stops-table",
      ["start", "end", "down", "lost", "reason", "bucket", ""])),
    el("h3", {}, "QA disposition ", el("small", {}, "rejects of recent batches, classified with your signature")),
    el("div", {id: "qa-sign", class: "alarm-action", hidden: ""},
      field("Key file (PKCS#8 PEM; only the first time on this panel)",
        el("input", {id: "qa-key", type: "file", accept: ".key,.pem"})),
      field("Passphrase", el("input", {id: "qa-passphrase", type: "password", autocomplete: "off", size: "16",
        placeholder: "protects the key here"}))),
    el("div", {class: "table-scroll"}, head("qa-table",
      ["batch", "rejects", "scrap", "rework", "accepted", "pending", "final", ""])));
  $("mes-line").addEventListener("change", () => { $("stops-scope").replaceChildren(); loadMes(true).catch(() => {}); });
  $("stops-scope").addEventListener("change", () => loadStops().catch(() => {}));
  mes.panel = panel;
}

function mesResult(text, kind) {
  const box = $("mes-result");
  box.hidden = !text;
  box.className = "result " + (kind || "");
  box.textContent = text || "";
}

/** Run one POST of the panel, reload the tables, then show its success text or the API's refusal in
 * the result box: once the result shows, the rows are the fresh ones (a reload finishing later would
 * wipe what the user types next). */
async function mesAction(run, done) {
  let text, kind = "ok";
  try {
    text = done(await run());
  } catch (e) {
    kind = "refused";
    text = e.status ? refusalText(e) : e.unanswered ? "No answer from the adapter (" + e.message +
      "): send it again, it is counted once" : "Could not sign in this browser: " + e.message;
  }
  await loadMes(true).catch(() => {});
  mesResult(text, kind);
}

const may = (what) => !!(state.me && state.me[what]);

/** Replace a table's rows, unless someone is filling in a row and no action of theirs asked for it:
 * a live refresh must not throw away a half-chosen reason or a typed split. */
function fillRows(tableId, rows, force) {
  const body = $(tableId).tBodies[0];
  const busy = [...body.querySelectorAll("input, select")].some((i) => i.value !== "");
  if (!busy || force) body.replaceChildren(...rows);
}
const rowsOr = (rows, span, empty) => rows.length ? rows : [el("tr", {}, el("td", {colspan: span, class: "muted"}, empty))];

// ---------------------------------------------------------------- orders

function orderRow(o) {
  const actions = [];
  if (may("order_start") && (o.status === "received" || o.status === "start_failed")) {
    actions.push(el("button", {class: "order-start", type: "button", onclick: () => mesAction(
      () => api(`/api/orders/${encodeURIComponent(o.order_id)}/start`, {method: "POST"}),
      (r) => { showCommand(r.command); $("cmd-sign").scrollIntoView();
        return `start of ${o.order_id}: command ${r.command.status}; sign it in the Command panel`; })}, "Start"));
  }
  if (may("order_cancel") && o.status === "starting") {
    const reason = el("input", {class: "order-cancel-reason", placeholder: "reason (audited)", size: "16"});
    actions.push(reason, el("button", {class: "order-cancel quiet", type: "button", onclick: () => mesAction(
      () => api(`/api/orders/${encodeURIComponent(o.order_id)}/cancel`, {method: "POST", body: {reason: reason.value}}),
      (r) => `start of ${r.order_id} cancelled: ${r.status}`)}, "Cancel start"));
  }
  return el("tr", {"data-order": o.order_id},
    el("td", {}, el("b", {}, o.order_id), o.detail ? el("small", {class: "order-detail muted"}, o.detail) : ""),
    el("td", {}, o.product_id), el("td", {}, `${fmtValue(o.quantity)} ${o.uom}`),
    el("td", {}, o.recipe_version), el("td", {}, fmtDateTime(o.due_ms)),
    el("td", {class: "order-status " + (o.status === "start_failed" ? "q-BAD" : (o.status === "running" ? "q-GOOD" : ""))},
      o.status),
    el("td", {}, ...actions));
}

async function loadOrders(line, force) {
  const rows = await api(`/api/orders?line=${encodeURIComponent(line)}&limit=50`);
  mes.starting = rows.some((o) => o.status === "starting");
  fillRows("orders-table", rowsOr(rows.map(orderRow), 7, "no orders for this line"), force);
}

// ---------------------------------------------------------------- stops

function reasonSelect() {
  const select = el("select", {class: "stop-code"}, el("option", {value: ""}, "reason\u2026"));
  const groups = new Map();
  for (const r of mes.reasons) {
    const label = `${r.bucket} / ${r.category}`;
    if (!groups.has(label)) { groups.set(label, el("optgroup", {label})); select.append(groups.get(label)); }
    groups.get(label).append(el("option", {value: r.code}, `${r.code} \u00b7 ${r.description}`));
  }
  return select;
}

function stopRow(line, s) {
  const unexplained = !s.micro && !s.reason;
  const actions = [];
  if (may("stop_reason") && !s.micro) {
    const code = reasonSelect(), comment = el("input", {class: "stop-comment", placeholder: "comment", size: "12"});
    actions.push(code, comment, el("button", {class: "stop-set", type: "button", onclick: () => mesAction(
      () => api("/api/stops/reason", {method: "POST",
        body: {line, start_ms: s.start_ms, code: code.value, comment: comment.value.trim() || null}}),
      (r) => `stop of ${fmtDateTime(r.start_ms)}: ${r.reason.code} (${r.bucket})`)}, "Set"));
  }
  const reason = s.micro ? "micro-stop" : (s.reason ? `${s.reason.code}${s.reason.description ? " \u00b7 " + s.reason.description : ""}` +
    ` (${s.reason.source === "plc" ? "PLC" : s.reason.entered_by}${s.reason.comment ? ": " + s.reason.comment : ""})` : "no reason yet");
  return el("tr", {"data-start": String(s.start_ms), class: unexplained ? "unexplained" : ""},
    el("td", {}, fmtDateTime(s.start_ms)), el("td", {}, s.end_ms ? fmtDateTime(s.end_ms) : "open"),
    el("td", {}, fmtDuration(s.down_s)), el("td", {"data-field": "lost"}, fmtDuration(s.lost_s)),
    el("td", {"data-field": "reason"}, reason), el("td", {"data-field": "bucket"}, s.bucket), el("td", {}, ...actions));
}

async function loadStops(force = true) {
  const line = $("mes-line").value;
  if (!line) return;
  const scope = $("stops-scope").value;
  let listed;
  try {
    listed = await api(`/api/stops?line=${encodeURIComponent(line)}${scope ? "&batch=" + encodeURIComponent(scope) : ""}`);
  } catch (e) {
    // a read the API cannot answer (nothing runs, no shift is on) is not a refusal of anything the user did
    $("stops-summary").textContent = e.status === 404 ? `${e.message} (choose a batch below)` : refusalText(e);
    $("stops-table").tBodies[0].replaceChildren();
    return;
  }
  const open = listed.stops.filter((s) => !s.micro && !s.reason).length;
  $("stops-summary").textContent = `${listed.scope} ${listed.key}: ${listed.stops.length} stops, ${open} without a reason`;
  fillRows("stops-table", rowsOr(listed.stops.map((s) => stopRow(line, s)), 7, "no stops"), force);
}

// ---------------------------------------------------------------- QA disposition

/** SHA-256 hex of the canonical disposition (mes_adapter.quality.models.disposition_hash): RFC 8785
 * is JSON.stringify with sorted keys for this object (ASCII keys, strings and numbers). */
async function dispositionHash(line, batchId, dispositionId, split) {
  const canonical = JSON.stringify({accepted: split.accepted, batch_id: batchId, disposition_id: dispositionId,
    line, rework: split.rework, schema: "uns-hub.disposition.v1", scrap: split.scrap});
  return hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical)));
}

/** Classify rejects. A retry of a request whose answer never came (the network failed after the
 * adapter may have recorded it) resends the very same request, same id and signature, so the adapter
 * counts it once; a fresh id would classify the same rejects twice. Any answer ends the retry. */
async function dispose(line, batchId, inputs) {
  const split = Object.fromEntries(Object.entries(inputs).filter(([k]) => k !== "reason")
    .map(([k, input]) => [k, Number(input.value || 0)]));
  const reason = inputs.reason.value.trim() || null;
  const key = JSON.stringify([line, batchId, split, reason]);
  let body = mes.unanswered.get(key);
  if (!body) {
    const dispositionId = crypto.randomUUID();
    const file = $("qa-key").files[0], passphrase = $("qa-passphrase").value;
    const signature = await browserSignature(await dispositionHash(line, batchId, dispositionId, split), "approved",
      file, passphrase);
    if (file && passphrase) $("qa-key").value = "";
    $("qa-passphrase").value = "";
    body = {disposition_id: dispositionId, split, reason, signature};
  }
  mes.unanswered.set(key, body);
  try {
    const answer = await api(`/api/lines/${enc(line)}/batches/${encodeURIComponent(batchId)}/disposition`,
      {method: "POST", body});
    mes.unanswered.delete(key);
    return answer;
  } catch (e) {
    if (e.status) mes.unanswered.delete(key);
    else e.unanswered = true;
    throw e;
  }
}

function qaRow(line, d) {
  const actions = [];
  if (may("disposition") && d.pending > 0) {
    const number = (cls) => el("input", {class: cls, type: "number", min: "0", step: "any", size: "4", placeholder: cls.slice(3)});
    const inputs = {scrap: number("qa-scrap"), rework: number("qa-rework"), accepted: number("qa-accepted"),
      reason: el("input", {class: "qa-reason", placeholder: "reason", size: "10"})};
    actions.push(...Object.values(inputs), el("button", {class: "qa-dispose", type: "button", onclick: (ev) => mesAction(
      () => { ev.target.disabled = true; return dispose(line, d.batch_id, inputs).finally(() => { ev.target.disabled = false; }); },
      (r) => `${r.batch_id}: ${fmtValue(r.scrap)} scrap, ${fmtValue(r.rework)} rework, ${fmtValue(r.accepted)} accepted, ` +
        `${fmtValue(r.pending)} pending`)}, "Sign and classify"));
  }
  return el("tr", {"data-batch": d.batch_id, class: d.pending > 0 ? "unexplained" : ""},
    el("td", {}, el("b", {}, d.batch_id)), el("td", {"data-field": "rejects"}, fmtValue(d.rejects)),
    el("td", {"data-field": "scrap"}, fmtValue(d.scrap)), el("td", {"data-field": "rework"}, fmtValue(d.rework)),
    el("td", {"data-field": "accepted"}, fmtValue(d.accepted)), el("td", {"data-field": "pending"}, fmtValue(d.pending)),
    el("td", {}, d.final_waiting ? "waits for QA" : "\u2013"), el("td", {}, ...actions));
}

async function loadQa(line, batchRows, force) {
  const generation = sessionGeneration;
  const views = await Promise.all(batchRows.map((b) =>
    api(`/api/lines/${enc(line)}/batches/${encodeURIComponent(b.batch_id)}/disposition`).catch(() => null)));
  if (isStale(generation)) return;  // logged out meanwhile (app.js api)
  const shown = views.filter((d) => d && d.rejects > 0);
  $("qa-sign").hidden = !may("disposition") || !shown.some((d) => d.pending > 0);
  fillRows("qa-table", rowsOr(shown.map((d) => qaRow(line, d)), 8, "no rejects in recent batches"), force);
}

// ---------------------------------------------------------------- loading

async function loadMes(force = false) {
  if (!mes.panel) return;
  const keys = (await api("/api/lines")).map((l) => l.line);
  mes.lines = refillSelect($("mes-line"), keys, mes.lines);
  const line = $("mes-line").value;
  if (!line) return;
  if (!mes.reasons.length) mes.reasons = await api("/api/stops/reasons");
  const batchRows = await api(`/api/batches?line=${encodeURIComponent(line)}&limit=${MES_BATCH_ROWS}`);
  const scope = $("stops-scope"), keep = scope.value;
  scope.replaceChildren(el("option", {value: ""}, "the running batch, else the current shift"),
    ...batchRows.map((b) => el("option", {value: b.batch_id}, `batch ${b.batch_id}${b.running ? " (running)" : ""}`)));
  if (batchRows.some((b) => b.batch_id === keep)) scope.value = keep;
  await Promise.all([loadOrders(line, force), loadStops(force), loadQa(line, batchRows, force)]);
}

// ---------------------------------------------------------------- hooks into app.js

buildMesPanel();
loaders.mes = loadMes;
blankHooks.push(() => {
  mes.lines = []; mes.reasons = []; mes.starting = false;
  for (const id of ["mes-line", "stops-scope"]) if ($(id)) $(id).replaceChildren();
  for (const id of ["orders-table", "stops-table", "qa-table"]) if ($(id)) $(id).tBodies[0].replaceChildren();
  if ($("stops-summary")) $("stops-summary").textContent = "";
  if ($("qa-sign")) $("qa-sign").hidden = true;
  mesResult("");
});
startHooks.push(() => {
  // the start's command ends (orders), a batch starts or ends (stops, rejects), a confirmation waits for QA
  for (const kind of ["command", "context", "confirmation"]) state.events.addEventListener(kind, () => scheduleRefresh(["mes"]));
});
setInterval(() => { if (state.me && mes.starting) scheduleRefresh(["mes"]); }, 3000);
