// uns-hub MES adapter dashboard: the alarms banner and the alarms / exceptions / holds panel
// (docs/alarms.md, REST part). Loaded before app.js, so its top level only defines functions and
// wires the panel's own controls; it uses app.js's helpers (el, api, fmtTime, state,
// browserSignature, storedKeyName) only when called, after app.js has run. app.js calls
// loadAlarms (refresh, the SSE "alarm" event, the 5 s tick) and clearAlarms (every blank()), the
// only two names this file makes global (other panels' files share the page's global scope).
"use strict";

(function () {

const byId = (id) => document.getElementById(id);

/** Severity bands of OPC UA severity (1..1000) for colour: the band of the worst alarm wins. */
function severityClass(severity) {
  if (severity >= 800) return "sev-critical";
  if (severity >= 500) return "sev-high";
  if (severity >= 200) return "sev-medium";
  return severity > 0 ? "sev-low" : "sev-none";
}

/** What a person reads as the state: active or cleared, the limit, acknowledged or not, stale. */
function alarmStateText(a) {
  // a birth's statement of a condition the server never raised has no EventId
  if (!a.event_id) return a.stale ? "never raised · stale" : "never raised";
  const parts = [a.active ? "active" : "cleared"];
  if (a.state) parts.push(a.state);
  parts.push(a.acked ? "acked" : "unacked");
  if (!a.confirmed) parts.push("unconfirmed");
  if (a.stale) parts.push("stale: last known state");
  return parts.join(" · ");
}

function batchText(row) {
  return row.batch_id ? row.batch_id + (row.phase ? " \u00b7 " + row.phase : "") : "no batch";
}

function shortLine(line) { return line.split("/").slice(-2).join("/"); }

/** Rebuild a table body without losing what a person is typing in it: inputs with ``data-keep``
 * get their value (and the focus) back after the 5 s refresh re-renders the rows. */
function replaceKeepingInputs(body, rows) {
  const kept = new Map([...body.querySelectorAll("input[data-keep]")].map((i) => [i.dataset.keep, i.value]));
  const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.dataset.keep : null;
  body.replaceChildren(...rows);
  for (const input of body.querySelectorAll("input[data-keep]")) {
    if (kept.has(input.dataset.keep)) input.value = kept.get(input.dataset.keep);
    if (input.dataset.keep === focused) input.focus();
  }
}

function emptyRow(columns, text) {
  return el("tr", {}, el("td", {colspan: String(columns), class: "muted"}, text));
}

function alarmResult(kind, text) {
  const box = byId("alarm-result");
  box.hidden = false;
  box.className = "result " + kind;
  box.textContent = text;
}

/** An API refusal as the operator should read it: the code and the server's sentence. */
function refusalText(what, error) {
  const reason = error.body && error.body.reason ? " " + error.body.reason : "";
  return `${what} refused (${error.status || "?"}${reason}): ${error.message}`;
}

const canWrite = () => !!state.me && state.me.role !== "viewer";

// ---------------------------------------------------------------- loading

/** The journal rows of the last hour, paged forward so a busy hour still ends at the newest row
 * (the API returns rows oldest first, at most ``limit`` per call). */
async function recentAlarmHistory(sinceMs, pageSize = 2000, maxPages = 10) {
  let rows = [], from = sinceMs;
  for (let page = 0; page < maxPages; page++) {
    const batch = await api(`/api/alarms/history?from_ms=${from}&limit=${pageSize}`);
    const seen = new Set(rows.map((r) => r.id));
    rows = rows.concat(batch.filter((r) => !seen.has(r.id)));
    if (batch.length < pageSize) break;
    from = batch[batch.length - 1].source_ts_ms;
  }
  return rows;
}

async function loadAlarms() {
  const [lines, alarms, shelves, holds, exceptions, history] = await Promise.all([
    api("/api/lines"), api("/api/alarms"), api("/api/alarms/shelved"), api("/api/holds"),
    api("/api/exceptions"), recentAlarmHistory(Date.now() - 3600_000)]);
  if (!state.me) return;  // logged out while loading: show nothing of that session
  renderBanner(lines, alarms, holds);
  renderAlarms(alarms);
  renderShelves(shelves);
  renderHolds(holds);
  renderExceptions(exceptions);
  renderHistory(history);
}

function clearAlarms() {
  for (const id of ["alarm-banner", "alarms", "alarm-shelves", "holds", "exceptions", "alarm-history",
    "shelve-condition"]) byId(id).replaceChildren();
  byId("alarm-banner").hidden = true;
  byId("alarm-result").hidden = true;
  byId("shelve-form").hidden = true;
  byId("hold-sign").hidden = true;
}

// ---------------------------------------------------------------- banner

function renderBanner(lines, alarms, holds) {
  const items = lines.map((line) => {
    const mine = alarms.filter((a) => a.line === line.line);
    const active = mine.filter((a) => a.active);
    const unacked = mine.filter((a) => !a.acked);
    const worst = Math.max(0, ...active.map((a) => a.severity));
    const held = holds.filter((h) => h.line === line.line && h.held);
    const parts = [`${active.length} active`];
    if (unacked.length) parts.push(`${unacked.length} unacked`);
    if (mine.some((a) => a.stale)) parts.push("stale");  // the edge or device died: last known states
    for (const h of held) parts.push(`${h.batch_id} on hold`);
    return el("a", {href: "#alarms-panel", "data-line": line.line, "data-active": String(active.length),
      "data-unacked": String(unacked.length), title: line.line,
      class: `alarm-line ${severityClass(worst)}${unacked.length ? " unacked" : ""}${held.length ? " held" : ""}`},
      el("b", {}, shortLine(line.line)), " " + parts.join(" \u00b7 "));
  });
  byId("alarm-banner").replaceChildren(...items);
  byId("alarm-banner").hidden = items.length === 0;
}

// ---------------------------------------------------------------- active alarms and shelving

function renderAlarms(alarms) {
  const sorted = [...alarms].sort((a, b) => Number(b.active) - Number(a.active) || b.severity - a.severity ||
    b.source_ts_ms - a.source_ts_ms);
  const active = alarms.filter((a) => a.active).length;
  byId("alarms-summary").textContent = `${active} active \u00b7 ${alarms.filter((a) => !a.acked).length} unacknowledged`;
  byId("alarms").replaceChildren(...(sorted.length ? sorted.map((a) => el("tr", {
    "data-alarm": `${a.line}|${a.cell || ""}|${a.condition}`,
    class: `${severityClass(a.severity)}${a.acked ? "" : " unacked"}${a.active ? "" : " cleared"}${a.stale ? " stale" : ""}`},
  el("td", {}, a.cell || "\u2014"), el("td", {class: "alarm-condition"}, a.condition),
  el("td", {class: "alarm-state"}, alarmStateText(a)),
  el("td", {class: "alarm-severity"}, el("span", {class: "sev-badge " + severityClass(a.severity)}, String(a.severity))),
  el("td", {class: "alarm-message"}, a.message), el("td", {}, fmtTime(a.source_ts_ms)),
  el("td", {class: "alarm-batch"}, batchText(a)),
  el("td", {}, alarmActions(a)))) : [emptyRow(8, "no active or unacknowledged alarms")]));
  // the shelve form offers the conditions listed; the choice survives a refresh
  const select = byId("shelve-condition"), chosen = select.value;
  const keys = [...new Set(sorted.map((a) => JSON.stringify([a.line, a.cell, a.condition])))];
  select.replaceChildren(...keys.map((k) => {
    const [line, cell, condition] = JSON.parse(k);
    return el("option", {value: k}, `${shortLine(line)} \u00b7 ${cell || "line"} \u00b7 ${condition}`);
  }));
  if (keys.includes(chosen)) select.value = chosen;
  byId("shelve-form").hidden = !(canWrite() && keys.length);
}

/** Acknowledge while unacknowledged; once acknowledged, Confirm while unconfirmed (Part 9: an
 * acknowledged alarm waits for its confirmation). Nothing for a stale row or a reader. */
function alarmActions(a) {
  if (!canWrite() || a.stale) return "";
  if (!a.acked) return el("button", {class: "alarm-ack", type: "button",
    title: "creates an acknowledge command for this condition; sign it in the Commands panel",
    onclick: () => conditionCommand(a, "acknowledge")}, "Acknowledge");
  if (!a.confirmed) return el("button", {class: "alarm-confirm", type: "button",
    title: "creates a confirm command for this condition; sign it in the Commands panel",
    onclick: () => conditionCommand(a, "confirm")}, "Confirm");
  return "";
}

const CONDITION_COMMANDS = {acknowledge: ["Acknowledgement", "acknowledged"], confirm: ["Confirmation", "confirmed"]};

/** An acknowledgement or confirmation is an ordinary allowlisted command (docs/alarms.md
 * "Acknowledge from the MES"): created here, then signed in the Commands panel like any write,
 * executed by the edge on the condition's Acknowledge / Confirm method and read back through
 * AckedState / ConfirmedState. */
async function conditionCommand(a, method) {
  const [noun, done] = CONDITION_COMMANDS[method];
  try {
    const view = await api(`/api/alarms/${method}`, {method: "POST", body: {line: a.line, cell: a.cell,
      condition: a.condition, comment: `${done} from the dashboard by ${state.me.user_id}`}});
    showCommand(view);
    alarmResult("ok", `${noun} of ${a.condition} on ${a.cell || shortLine(a.line)} created: ` +
      "sign it in the Commands panel");
    byId("command-panel").scrollIntoView({block: "start"});
  } catch (e) { alarmResult("refused", refusalText(noun, e)); }
}

async function shelveAlarm(ev) {
  ev.preventDefault();
  const [line, cell, condition] = JSON.parse(byId("shelve-condition").value);
  const duration = Number(byId("shelve-duration").value);
  try {
    const shelf = await api("/api/alarms/shelve", {method: "POST", body: {line, cell, condition,
      duration_s: duration, comment: byId("shelve-comment").value}});
    byId("shelve-comment").value = "";
    alarmResult("ok", `${condition} on ${cell || shortLine(line)} shelved until ${fmtDateTime(shelf.until_ms)}`);
  } catch (e) { alarmResult("refused", refusalText("Shelving", e)); }
  loadAlarms().catch(() => {});
}

function fmtDateTime(ms) { return new Date(ms).toLocaleString(); }

function renderShelves(shelves) {
  byId("alarm-shelves").replaceChildren(...(shelves.length ? shelves.map((s) => el("tr", {"data-shelf": String(s.id)},
    el("td", {}, shortLine(s.line)), el("td", {}, s.cell || "\u2014"), el("td", {}, s.condition),
    el("td", {class: "shelf-until", "data-until": String(s.until_ms)}, fmtDateTime(s.until_ms)),
    el("td", {}, s.shelved_by), el("td", {}, s.comment))) : [emptyRow(6, "nothing shelved")]));
}

// ---------------------------------------------------------------- holds and their signed release

/** SHA-256 (lowercase hex) of the RFC 8785 canonical JSON the server's release_hash signs: a flat
 * object of ASCII keys, strings and an integer, so JSON.stringify with sorted keys is that form. */
async function releaseHash(hold, comment) {
  const body = {batch_id: hold.batch_id, comment, hold_id: hold.id, line: hold.line, schema: "uns-hub.hold-release.v1"};
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

function renderHolds(holds) {
  const shown = holds.filter((h) => h.held).concat(holds.filter((h) => !h.held).slice(-10).reverse());
  replaceKeepingInputs(byId("holds"), shown.length ? shown.map((h) => {
    const cells = [el("td", {}, fmtTime(h.held_ms)), el("td", {}, shortLine(h.line)),
      el("td", {class: "hold-batch"}, h.batch_id), el("td", {}, h.reason)];
    if (h.held) {
      cells.push(el("td", {class: "hold-status q-BAD"}, "held"));
      const comment = el("input", {class: "hold-comment", "data-keep": "hold-" + h.id, placeholder: "release comment (signed)", size: "22"});
      cells.push(el("td", {}, ...(canWrite() ? [comment,
        el("button", {class: "hold-release", type: "button", onclick: () => releaseHold(h, comment.value)}, "Sign & release")] : [])));
    } else {
      cells.push(el("td", {class: "hold-status q-GOOD"},
        `released by ${h.released_by} ${fmtTime(h.released_ms)}: ${h.release_comment}`), el("td", {}, ""));
    }
    return el("tr", {"data-hold": String(h.id), class: h.held ? "held" : "released"}, ...cells);
  }) : [emptyRow(6, "no batch is held")]);
  const anyHeld = holds.some((h) => h.held);
  byId("hold-sign").hidden = !(canWrite() && anyHeld);
  if (anyHeld) describeHoldKey();
}

function describeHoldKey() {
  byId("hold-key-state").textContent = localStorage.getItem(storedKeyName()) ?
    "a key is saved (encrypted) in this browser: the passphrase is enough" : "no key saved in this browser";
}

async function releaseHold(hold, comment) {
  if (!comment.trim()) { alarmResult("refused", "Give a release comment: it is part of what you sign"); return; }
  const file = byId("hold-key").files[0], passphrase = byId("hold-passphrase").value;
  let signature;
  try {
    signature = await browserSignature(await releaseHash(hold, comment), "approved", file, passphrase);
  } catch (e) {
    alarmResult("refused", "Could not sign in this browser: " + e.message);
    return;
  }
  if (file && passphrase) byId("hold-key").value = "";
  byId("hold-passphrase").value = "";
  try {
    const released = await api(`/api/holds/${hold.id}/release`, {method: "POST", body: {comment, signature}});
    alarmResult("ok", `Batch ${released.batch_id} released by ${released.released_by}: ${released.release_comment}`);
  } catch (e) { alarmResult("refused", refusalText("Release", e)); }
  loadAlarms().catch(() => {});
}

// ---------------------------------------------------------------- exceptions

function renderExceptions(exceptions) {
  const shown = exceptions.filter((x) => x.open).reverse().concat(exceptions.filter((x) => !x.open).slice(-10).reverse());
  replaceKeepingInputs(byId("exceptions"), shown.length ? shown.map((x) => {
    const action = [];
    if (x.open && canWrite()) {
      const comment = el("input", {class: "exception-comment", "data-keep": "exception-" + x.id,
        placeholder: "closing comment", size: "18"});
      action.push(comment, el("button", {class: "exception-close", type: "button",
        onclick: () => closeException(x, comment.value)}, "Close"));
    }
    return el("tr", {"data-exception": String(x.id), class: severityClass(x.severity) + (x.open ? " open" : " closed")},
      el("td", {}, fmtTime(x.opened_ms)), el("td", {}, x.cell || "\u2014"), el("td", {}, x.condition),
      el("td", {}, String(x.severity)), el("td", {}, x.cause), el("td", {}, `${x.owner}: ${x.action}`),
      el("td", {}, batchText(x)),
      el("td", {class: "exception-status"}, x.open ? "open" : `closed by ${x.closed_by}: ${x.closing_comment}`),
      el("td", {}, ...action));
  }) : [emptyRow(9, "no exceptions")]);
}

async function closeException(exception, comment) {
  if (!comment.trim()) { alarmResult("refused", "Give a closing comment: what was done"); return; }
  try {
    const closed = await api(`/api/exceptions/${exception.id}/close`, {method: "POST", body: {comment}});
    alarmResult("ok", `Exception ${closed.id} (${closed.condition}) closed by ${closed.closed_by}`);
  } catch (e) { alarmResult("refused", refusalText("Closing", e)); }
  loadAlarms().catch(() => {});
}

// ---------------------------------------------------------------- history

function renderHistory(rows) {
  const recent = rows.slice(-25).reverse();
  byId("alarm-history").replaceChildren(...(recent.length ? recent.map((a) => el("tr", {class: severityClass(a.severity)},
    el("td", {}, fmtTime(a.source_ts_ms)), el("td", {}, a.cell || "\u2014"), el("td", {}, a.condition),
    el("td", {}, alarmStateText(a)), el("td", {}, String(a.severity)), el("td", {}, a.message),
    el("td", {}, batchText(a)))) : [emptyRow(7, "no alarm changes in the last hour")]));
}

byId("shelve-form").addEventListener("submit", shelveAlarm);
window.loadAlarms = loadAlarms;
window.clearAlarms = clearAlarms;
})();
