// uns-hub MES adapter dashboard: vanilla JS, no build step, no CDN (plants are often offline).
// Data: REST (/api/...) with the token from localStorage, live changes over Server-Sent Events.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: localStorage.getItem("uns.token") || "",
  me: null,
  tags: new Map(),          // topic -> tag
  rules: [],
  command: null,            // last command view
  events: null,
};
// other dashboard files (batches.js) hook in here: what to empty on blank(), what to do after start()
const blankHooks = [], startHooks = [];

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  return node;
}

/** Refill a select with ``values`` (value and label alike) if they differ from ``shown``, keeping the
 * user's choice when it is still offered; answers what the select now offers. */
function refillSelect(select, values, shown) {
  if (values.join("\n") === shown.join("\n")) return shown;
  const keep = select.value;
  select.replaceChildren(...values.map((v) => el("option", {value: v}, v)));
  if (values.includes(keep)) select.value = keep;
  return values;
}

function fmtTime(ms) { return ms ? new Date(ms).toLocaleTimeString() : "–"; }
function fmtValue(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/\.?0+$/, "");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
/** A quality label a person can act on: "BAD · BadSensorFailure", "STALE · comm_lost", never "null BAD". */
function qualityLabel(quality, status, reason) {
  if (quality === "GOOD") return "GOOD";
  const why = status || reason;
  return why ? `${quality} \u00b7 ${why}` : quality;
}
/** The shown value: a tag without a usable value shows a dash, not the word null. */
function shownValue(value, quality) {
  // no value: a dash whatever the quality (a GOOD null is a method such as StartBatch, or a tag before its first read)
  return value === null || value === undefined ? "\u2014" : fmtValue(value);
}
function pct(x) { return x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%"; }

function notice(text) {
  const box = $("notice");
  box.hidden = !text;
  box.textContent = text || "";
}

/** Bumped by blank(): a response to a request made before it belongs to a session that has ended
 * (logout, another user, a refusal) and must not be drawn. Without it a refresh in flight at
 * logout repainted the plant on a logged-out page. */
let sessionGeneration = 0;
const isStale = (generation) => generation !== sessionGeneration;

async function api(path, options = {}) {
  const generation = sessionGeneration;
  const headers = Object.assign({"Accept": "application/json"}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {method: options.method || "GET", headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body)});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (isStale(generation)) {
    const err = new Error("the session ended while this request ran");
    err.stale = true;
    throw err;
  }
  if (!response.ok) {
    const err = new Error((body && body.detail) || response.statusText);
    err.status = response.status; err.body = body;
    throw err;
  }
  return body;
}

// ---------------------------------------------------------------- session

/** The header for a signed-in user (whatever the credential: password, token or a session cookie
 * from before): one compact row, the login form and the token box folded into the #account menu
 * ("switch user or use a token"); signed out, they are inline again. The CSS keys on body.signed-in. */
function showSignedIn(on) {
  document.body.classList.toggle("signed-in", on);
  $("account").hidden = !on;
  $("account").open = false;
  $("token-box").open = false;
  $("logout").hidden = !on;
}

/** Nothing of a previous session stays on screen: the stream stops, the pill goes grey, every
 * panel is emptied. Called before any new credential is tried and after logout or a refusal. */
function blank(message) {
  sessionGeneration += 1;  // what is in flight now is answered to nobody
  clearTimeout(refreshTimer); refreshTimer = null; pending.clear();
  if (state.events) { state.events.close(); state.events = null; }
  const live = $("live"); live.textContent = "offline"; live.className = "pill off";
  state.me = null; state.tags.clear(); state.command = null;
  $("who").textContent = "";
  for (const id of ["lines", "tree", "nodes", "confirmations", "commands", "approvals", "cmd-rule"]) $(id).replaceChildren();
  for (const id of ["outbox-depth", "allowlist-version", "cmd-rule-info"]) $(id).textContent = "";
  state.rules = [];
  approvalsShown = null; approvalReasons.clear();  // a new session's reasons start empty
  $("cmd-result").hidden = true; $("cmd-sign").hidden = true;
  trendReset();  // trends.js
  showSignedIn(false);
  clearAlarms();
  blankHooks.forEach((hook) => hook());
  notice(message);
}

/** Start showing the plant for whoever /api/me says we are (token or session cookie). */
async function start() {
  try {
    state.me = await api("/api/me");
  } catch (e) {
    return false;
  }
  $("who").textContent = `${state.me.full_name} (${state.me.role})`;
  showSignedIn(true);
  notice("");
  connectEvents();
  refreshAll();
  startHooks.forEach((hook) => hook());
  return true;
}

async function useToken(token) {
  blank("");
  state.token = token;
  localStorage.removeItem("uns.token");
  if (!token) {
    if (!(await start())) notice("Log in (or enter an API token) to see the plant.");
    return;
  }
  if (await start()) localStorage.setItem("uns.token", token);  // kept only once it is known good
  else { state.token = ""; blank("Token refused: the token is not known to this adapter"); }
}

async function login(ev) {
  ev.preventDefault();
  blank("");
  state.token = ""; localStorage.removeItem("uns.token"); $("token").value = "";
  try {
    await api("/api/session", {method: "POST", body: {user_id: $("login-user").value.trim(),
      password: $("login-password").value}});
  } catch (e) {
    $("login-password").value = "";
    blank(`Login refused: ${e.message}`);
    return;
  }
  $("login-password").value = "";
  if (!(await start())) blank("Login refused");
}

async function logout() {
  try { await api("/api/session", {method: "DELETE"}); } catch (e) { /* the cookie is gone either way */ }
  state.token = ""; localStorage.removeItem("uns.token"); $("token").value = "";
  blank("Logged out.");
}

// ---------------------------------------------------------------- live events (SSE)

function connectEvents() {
  if (state.events) state.events.close();
  // with a token it goes in the query (EventSource sends no headers); a session sends its cookie
  const source = new EventSource(state.token ? "/api/events?token=" + encodeURIComponent(state.token) : "/api/events");
  state.events = source;
  const live = $("live");
  source.onopen = () => { live.textContent = "live"; live.className = "pill on"; };
  source.onerror = () => {
    live.textContent = "reconnecting"; live.className = "pill off";
    // a stream that ends because the session expired or was ended elsewhere must not keep stale data
    api("/api/me").catch((e) => { if (e.status === 401) blank("Session ended: " + e.message); });
  };
  source.addEventListener("snapshot", (ev) => {
    const data = JSON.parse(ev.data);
    state.tags.clear();
    for (const tag of data.tags) if (tag.topic) state.tags.set(tag.topic, tag);
    renderTree();
  });
  source.addEventListener("tags", (ev) => {
    for (const tag of JSON.parse(ev.data).tags) {
      if (!tag.topic) continue;
      const known = state.tags.has(tag.topic);
      state.tags.set(tag.topic, tag);
      if (!known) renderTree(); else updateLeaf(tag);
    }
  });
  for (const kind of ["node", "device"]) source.addEventListener(kind, () => scheduleRefresh(["nodes", "lines"]));
  source.addEventListener("context", () => scheduleRefresh(["lines", "batches"]));
  source.addEventListener("line_status", () => scheduleRefresh(["lines"]));
  source.addEventListener("episode", () => scheduleRefresh(["lines"]));
  source.addEventListener("alarm", () => scheduleRefresh(["alarms"]));
  source.addEventListener("confirmation", () => scheduleRefresh(["confirmations", "lines", "batches"]));
  source.addEventListener("outbox", () => scheduleRefresh(["confirmations"]));
  source.addEventListener("command", (ev) => {
    const data = JSON.parse(ev.data);
    if (state.command && state.command.command_id === data.command_id) loadCommand(data.command_id);
    scheduleRefresh(["commands", "approvals"]);
  });
}

const pending = new Set();
let refreshTimer = null;
function scheduleRefresh(parts) {
  parts.forEach((p) => pending.add(p));
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    const parts = [...pending]; pending.clear();
    for (const p of parts) loaders[p]().catch(() => {});
  }, 300);
}

// ---------------------------------------------------------------- UNS tree

function renderTree() {
  const filter = $("filter").value.trim().toLowerCase();
  const root = {};
  for (const topic of [...state.tags.keys()].sort()) {
    if (filter && !topic.toLowerCase().includes(filter)) continue;
    let node = root;
    const parts = topic.split("/");
    parts.forEach((part, i) => {
      if (i === parts.length - 1) { (node.__leaves ||= []).push(topic); return; }
      node = node[part] ||= {};
    });
  }
  const open = new Set([...document.querySelectorAll("#tree details[open]")].map((d) => d.dataset.path));
  const first = open.size === 0;
  const build = (node, path, depth) => {
    const out = [];
    for (const key of Object.keys(node).filter((k) => k !== "__leaves").sort()) {
      const p = path ? path + "/" + key : key;
      const details = el("details", {"data-path": p}, el("summary", {}, key));
      if (open.has(p) || (first && depth < 5) || filter) details.open = true;
      details.append(...build(node[key], p, depth + 1));
      out.push(details);
    }
    for (const topic of node.__leaves || []) out.push(leaf(topic));
    return out;
  };
  $("tree").replaceChildren(...build(root, "", 0));
  if (state.tags.size === 0) $("tree").append(el("p", {class: "muted"}, "no tags yet"));
}

function leaf(topic) {
  const tag = state.tags.get(topic);
  const row = el("div", {class: "leaf" + (trendHas(topic) ? " selected" : ""), "data-topic": topic,
    title: `${tag.group_id}/${tag.edge_node_id}${tag.device_id ? "/" + tag.device_id : ""} · ${tag.datatype}`,
    onclick: () => trendToggle(topic)},
    el("span", {class: "name"}, topic.split("/").pop()),
    el("span", {class: "val q-" + tag.quality}, shownValue(tag.value, tag.quality)),
    el("span", {class: "muted"}, tag.unit || ""),
    el("span", {class: "q q-" + tag.quality}, qualityLabel(tag.quality, tag.status, tag.quality_reason)),
    el("span", {class: "muted"}, fmtTime(tag.timestamp_ms)));
  return row;
}

function updateLeaf(tag) {
  const row = document.querySelector(`#tree .leaf[data-topic="${CSS.escape(tag.topic)}"]`);
  if (!row) return;
  const fresh = leaf(tag.topic);
  fresh.classList.add("flash");
  row.replaceWith(fresh);
}

// ---------------------------------------------------------------- trend: trends.js (the historian)

// ---------------------------------------------------------------- lines, nodes, confirmations

/** The "incomplete data" marker: never show figures from dead or bad inputs as if they were whole. */
function incompleteMarker(title, reasons, id) {
  return el("div", {class: "incomplete-marker", "data-marker": id, title: (reasons || []).join("\n")},
    el("b", {}, "\u26a0 " + title),
    el("ul", {}, ...(reasons || []).map((r) => el("li", {}, r))));
}

/** Availability, performance, quality and OEE as four boxes (the line card, the batch report). */
function oeeGrid(o, attrs = {}) {
  return el("div", Object.assign({class: "oee" + (o.data_complete === false ? " incomplete" : "")}, attrs),
    el("div", {}, el("b", {}, pct(o.availability)), "availability"),
    el("div", {}, el("b", {}, pct(o.performance)), "performance"),
    el("div", {}, el("b", {}, pct(o.quality)), "quality"),
    el("div", {}, el("b", {"data-field": "oee-value"}, pct(o.oee)), "OEE"));
}

async function loadLines() {
  const generation = sessionGeneration;
  const lines = await api("/api/lines");
  const cards = await Promise.all(lines.map(async (line) => {
    let st = null;
    try { st = await api("/api/lines/" + line.line + "/state"); } catch (e) { /* unknown line vanished */ }
    const batch = st && st.current_batch;
    const signal = (s) => !s ? "not configured" :
      `${shownValue(s.value, s.quality)}${s.unit && s.value !== null ? " " + s.unit : ""}` +
      (s.quality === "GOOD" ? "" : ` (${qualityLabel(s.quality, s.status)})`);
    const kv = el("dl", {class: "kv"},
      el("dt", {}, "state"), el("dd", {"data-field": "machine-state",
        class: st && st.machine_state ? "q-" + st.machine_state.quality : ""}, st ? signal(st.machine_state) : "–"),
      el("dt", {}, "speed"), el("dd", {"data-field": "speed",
        class: st && st.speed ? "q-" + st.speed.quality : ""}, st ? signal(st.speed) : "–"),
      el("dt", {}, "nodes"), el("dd", {}, `${line.nodes_online}/${line.nodes} online`),
      el("dt", {}, "devices"), el("dd", {}, `${line.devices_online}/${line.devices} online`),
      el("dt", {}, "batch"), el("dd", {}, batch ? `${batch.batch_id}${batch.phase ? " · " + batch.phase : ""}` : "none running"));
    if (batch) {
      kv.append(el("dt", {}, "work order"), el("dd", {}, batch.work_order_id || "–"),
        el("dt", {}, "product"), el("dd", {}, batch.product_id || "–"),
        el("dt", {}, "good / scrap"), el("dd", {"data-field": "counts",
          class: st.oee && st.oee.data_complete === false ? "incomplete" : ""},
          (batch.split_unknown ? `${fmtValue(batch.good)} / ${fmtValue(batch.rejects)} rejects (QA split kept by the owner)`
            : `${fmtValue(batch.good)} / ${fmtValue(batch.scrap)}`) +
          (batch.target_quantity ? ` of ${fmtValue(batch.target_quantity)} ${batch.uom || ""}` : "") +
          (st.oee && st.oee.data_complete === false ? " \u26a0 counted on incomplete data" : "")),
        el("dt", {}, "since"), el("dd", {}, new Date(batch.start_ms).toLocaleString()));
    }
    if (st) {
      const q = st.tags_by_quality;
      kv.append(el("dt", {}, "tags"), el("dd", {}, `${q.GOOD} good · ${q.UNCERTAIN} uncertain · ${q.BAD} bad · ${q.STALE} stale`));
    }
    const card = el("div", {class: "card" + (line.data_complete ? "" : " incomplete")}, el("h3", {}, line.line), kv);
    if (!line.data_complete) card.append(incompleteMarker("incomplete data", line.incomplete_reasons, "line-incomplete"));
    if (st && st.oee) {
      const o = st.oee;
      if (o.data_complete === false) card.append(incompleteMarker("OEE from incomplete data", o.incomplete_reasons, "oee-incomplete"));
      card.append(oeeGrid(o));
      if (o.warnings && o.warnings.length) card.append(el("p", {class: "muted"}, o.warnings.join("; ")));
    }
    return card;
  }));
  if (isStale(generation)) return;  // a per-line state may have failed as stale: draw nothing
  $("lines").replaceChildren(...(cards.length ? cards : [el("p", {class: "muted"}, "no lines yet")]));
}

async function loadNodes() {
  const nodes = await api("/api/nodes");
  const rows = [];
  for (const n of nodes) {
    const rebirths = Object.entries(n.rebirths_requested).map(([k, v]) => `${k}: ${v}`).join(", ") || "0";
    rows.push(el("tr", {},
      el("td", {}, el("b", {}, `${n.group_id}/${n.edge_node_id}`)),
      el("td", {class: "state-" + n.state}, n.state),
      el("td", {}, `NBIRTH ${n.nbirths}`), el("td", {}, rebirths), el("td", {}, String(n.seq_gaps)),
      el("td", {}, String(n.tags)), el("td", {}, fmtTime(n.last_seen_ms))));
    for (const d of n.devices) {
      rows.push(el("tr", {},
        el("td", {}, "\u2003" + d.device_id), el("td", {class: "state-" + d.state}, d.state),
        el("td", {}, `DBIRTH ${d.dbirths}`), el("td", {}, ""), el("td", {}, ""),
        el("td", {}, `${d.tags}${d.stale_tags ? ` (${d.stale_tags} stale)` : ""}`), el("td", {}, fmtTime(d.last_seen_ms))));
    }
  }
  $("nodes").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {colspan: 7, class: "muted"}, "no edge nodes yet"))]));
}

async function loadConfirmations() {
  const [rows, outbox] = await Promise.all([api("/api/confirmations?limit=50"), api("/api/outbox?limit=1")]);
  $("outbox-depth").textContent = outbox.webhook_configured === false
    ? `outbox: ${outbox.depth} not sent: no MES endpoint configured (mes.webhook.url) · ${outbox.counts.delivered || 0} delivered`
    : `outbox: ${outbox.depth} pending · ${outbox.counts.delivered || 0} delivered · ${outbox.counts.dead_lettered || 0} dead-lettered`;
  $("confirmations").replaceChildren(...(rows.length ? rows.map((r) => {
    const produced = (r.confirmation.produced || [])[0] || {};
    return el("tr", {}, el("td", {}, fmtTime(r.created_ms)), el("td", {}, r.line), el("td", {}, r.batch_id),
      el("td", {}, r.kind), el("td", {}, fmtValue(produced.good ?? 0)), el("td", {}, fmtValue(produced.scrap ?? 0)),
      el("td", {class: r.status === "dead_lettered" ? "q-BAD" : (r.status === "delivered" ? "q-GOOD" : "")},
        r.status === "not_configured" ? "not configured" : r.status),
      el("td", {}, String(r.attempts)), el("td", {}, r.last_error || ""));
  }) : [el("tr", {}, el("td", {colspan: 9, class: "muted"}, "no confirmations yet"))]));
}

async function loadCommands() {
  const rows = await api("/api/commands?limit=20");
  $("commands").replaceChildren(...rows.map((c) => el("tr", {},
    el("td", {}, fmtTime(c.created_ms)),
    el("td", {}, targetOf(c.request)),
    el("td", {}, fmtValue(c.request.value)), el("td", {}, c.request.requested_by),
    el("td", {class: ["refused", "rejected", "cancelled", "not_dispatched"].includes(c.status) ? "q-BAD" : ""}, c.status),
    el("td", {}, c.message))));
}

async function loadAllowlist() {
  const allow = await api("/api/allowlist");
  state.rules = allow.rules;
  $("allowlist-version").textContent = `allowlist ${allow.version}`;
  // ISA-95 paths (what people read), the non-critical targets first: the default is never the
  // two-person recipe change
  const order = allow.rules.map((r, i) => i).sort((a, b) =>
    Number(!!allow.rules[a].critical) - Number(!!allow.rules[b].critical) || ruleLabel(allow.rules[a]).localeCompare(ruleLabel(allow.rules[b])));
  $("cmd-rule").replaceChildren(...order.map((i) =>
    el("option", {value: String(i)}, ruleLabel(allow.rules[i]) + (allow.rules[i].critical ? " (critical)" : ""))));
  describeRule();
}

function ruleLabel(r) { return r.isa95_path || `${r.edge_node_id}/${r.device_id || "-"}: ${r.metric}`; }

function targetOf(request) {
  const rule = state.rules.find((r) => r.group_id === request.group_id && r.edge_node_id === request.edge_node_id &&
    (r.device_id ?? null) === (request.device_id ?? null) && r.metric === request.metric);
  return rule ? ruleLabel(rule) : `${request.edge_node_id}/${request.device_id || "-"}:${request.metric}`;
}

// Each waiting command keeps its reason box across refreshes: a command event re-renders the queue,
// and a supervisor typing a rejection reason must not lose it (nor the focus) to that refresh.
const approvalReasons = new Map();
let approvalsShown = null;

async function loadApprovals() {
  const rows = await api("/api/approvals");
  const shown = JSON.stringify([rows, state.me && state.me.role]);
  if (shown === approvalsShown) return;  // unchanged: leave the rows (and a button being pressed) alone
  approvalsShown = shown;
  const waiting = new Set(rows.map((a) => a.command.command_id));
  for (const id of [...approvalReasons.keys()]) if (!waiting.has(id)) approvalReasons.delete(id);
  $("approvals").replaceChildren(...(rows.length ? rows.map((a) => {
    const c = a.command, id = c.command_id;
    if (!approvalReasons.has(id))
      approvalReasons.set(id, el("input", {class: "approval-reason", placeholder: "reason (audited)", size: "18"}));
    const reason = approvalReasons.get(id);
    const act = (what) => async () => {
      try {
        showCommand(await api(`/api/commands/${id}/${what}`, {method: "POST", body: {reason: reason.value}}));
      } catch (e) { showCommand(null, e); }
      scheduleRefresh(["approvals", "commands"]);
    };
    const buttons = [el("button", {class: "approval-sign", onclick: () => {
      showCommand(c); $("sign-meaning").value = a.sign_as; $("cmd-sign").scrollIntoView(); }}, "Sign")];
    if (a.sign_as === "approved") buttons.push(el("button", {class: "approval-reject quiet", onclick: act("reject")}, "Reject"));
    if (a.sign_as === "authored" || (state.me && state.me.role !== "operator"))
      buttons.push(el("button", {class: "approval-cancel quiet", onclick: act("cancel")}, "Cancel"));
    return el("tr", {"data-command": id},
      el("td", {}, fmtTime(c.created_ms)), el("td", {class: "approval-target"}, a.target),
      el("td", {class: "approval-current" + (a.current_quality && a.current_quality !== "GOOD" ? " q-" + a.current_quality : "")},
        a.current_quality === null ? "not born" : shownValue(a.current_value, a.current_quality)),
      el("td", {class: "approval-requested"}, fmtValue(a.requested_value)),
      el("td", {}, a.requested_by), el("td", {class: "approval-status"}, c.status + (a.critical ? " (critical)" : "")),
      el("td", {}, c.request.reason), el("td", {}, reason, ...buttons));
  }) : [el("tr", {}, el("td", {colspan: 8, class: "muted"}, "nothing waits for your signature"))]));
}

function describeRule() {
  const rule = state.rules[Number($("cmd-rule").value)];
  if (!rule) { $("cmd-rule-info").textContent = "no writable metrics in the allowlist"; return; }
  const parts = [rule.datatype || "method call"];
  if (rule.min !== undefined || rule.max !== undefined) parts.push(`range ${rule.min ?? "−∞"} … ${rule.max ?? "∞"}`);
  if (rule.enum) parts.push("one of " + rule.enum.join(", "));
  if (rule.allowed_states) parts.push("only in " + rule.allowed_states.join(", "));
  if (rule.critical) parts.push("two-person rule");
  $("cmd-rule-info").textContent = parts.join(" · ");
}

const loaders = {lines: loadLines, nodes: loadNodes, confirmations: loadConfirmations, commands: loadCommands,
  allowlist: loadAllowlist, approvals: loadApprovals, alarms: loadAlarms};

function refreshAll() {
  for (const load of Object.values(loaders)) load().catch((e) => { if (e.status === 401) blank(e.message); });
}

// ---------------------------------------------------------------- commands

function parseValue(text, rule) {
  const t = text.trim();
  if (rule && rule.datatype === "String") return t;
  try { return JSON.parse(t); } catch (e) { return t; }
}

function showCommand(view, error) {
  if (error && error.stale) return;  // an answer to a session that has ended (api)
  const box = $("cmd-result");
  box.hidden = false;
  if (error) {
    box.className = "result refused";
    box.textContent = `Refused (${error.status} ${error.body ? error.body.reason : ""}): ${error.message}`;
    $("cmd-sign").hidden = true;
    return;
  }
  state.command = view;
  const waiting = view.status.startsWith("awaiting");
  const failed = ["refused", "rejected", "cancelled", "not_dispatched"].includes(view.status);
  box.className = "result " + (waiting ? "waiting" : (failed ? "refused" : "ok"));
  box.textContent = `${view.status}: ${view.message}\ncommand ${view.command_id}\nhash ${view.command_hash}` +
    (view.result ? `\nresult: ${view.result.outcome} (read back ${fmtValue(view.result.readback_value)})` : "");
  $("cmd-sign").hidden = !waiting;
  if (waiting) describeStoredKey();
  if (view.status === "awaiting_second_signature") $("sign-meaning").value = "approved";
}

async function loadCommand(id) {
  try { showCommand(await api("/api/commands/" + id)); } catch (e) { showCommand(null, e); }
}

async function submitCommand(ev) {
  ev.preventDefault();
  const rule = state.rules[Number($("cmd-rule").value)];
  if (!rule) return;
  const body = {group_id: rule.group_id, edge_node_id: rule.edge_node_id, device_id: rule.device_id ?? null,
    metric: rule.metric, value: parseValue($("cmd-value").value, rule), reason: $("cmd-reason").value};
  try {
    showCommand(await api("/api/commands", {method: "POST", body}));
  } catch (e) { showCommand(null, e); }
  loadCommands().catch(() => {});
  loadApprovals().catch(() => {});
}

async function postSignature(signature) {
  try {
    showCommand(await api(`/api/commands/${state.command.command_id}/sign`, {method: "POST", body: signature}));
  } catch (e) { showCommand(null, e); }
}

function pemToDer(pem) {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
function b64url(text) {
  const s = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(s + "===".slice((s.length + 3) % 4)), (c) => c.charCodeAt(0));
}
const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");

// ---------------------------------------------------------------- signing keys kept encrypted in this browser
// A key file is read once; with a passphrase it is kept in localStorage only encrypted: AES-GCM
// under a key derived from the passphrase (PBKDF2-SHA-256, 600 000 rounds, random salt). It never
// leaves the browser; the server only ever sees signatures.

const KDF_ROUNDS = 600000;
const storedKeyName = () => "uns.signkey." + (state.me ? state.me.user_id : "");
const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

async function wrappingKey(passphrase, salt) {
  const base = await crypto.subtle.importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey({name: "PBKDF2", hash: "SHA-256", salt, iterations: KDF_ROUNDS}, base,
    {name: "AES-GCM", length: 256}, false, ["encrypt", "decrypt"]);
}

async function storeKey(der, passphrase) {
  const salt = crypto.getRandomValues(new Uint8Array(16)), iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt({name: "AES-GCM", iv}, await wrappingKey(passphrase, salt), der);
  localStorage.setItem(storedKeyName(), JSON.stringify({v: 1, kdf: "PBKDF2-SHA256", rounds: KDF_ROUNDS,
    salt: b64(salt), iv: b64(iv), sealed: b64(sealed)}));
}

async function storedKey(passphrase) {
  const text = localStorage.getItem(storedKeyName());
  if (!text) throw new Error("no key saved in this browser for " + (state.me ? state.me.user_id : "?") + ": choose your key file");
  const box = JSON.parse(text);
  try {
    return new Uint8Array(await crypto.subtle.decrypt({name: "AES-GCM", iv: unb64(box.iv)},
      await wrappingKey(passphrase, unb64(box.salt)), unb64(box.sealed)));
  } catch (e) {
    throw new Error("wrong passphrase for the key saved in this browser");
  }
}

function describeStoredKey() {
  $("sign-key-state").textContent = localStorage.getItem(storedKeyName()) ?
    "a key is saved (encrypted) in this browser: the passphrase is enough" : "no key saved in this browser";
}

/** An Ed25519 signature object (what the server verifies) over ``commandHash``, made in this browser
 * with the key file chosen now (saved encrypted when a passphrase is given) or the key saved here.
 * The signed bytes are RFC 8785 canonical JSON; for this object (ASCII keys, strings and an integer)
 * that is JSON.stringify with the keys in sorted order, exactly what the server verifies. Shared by
 * command signatures and hold releases (alarms.js). */
async function browserSignature(commandHash, meaning, file, passphrase) {
  if (!file && !passphrase) throw new Error("choose your key file, or give the passphrase of the key saved here");
  let der;
  if (file) {
    der = pemToDer(await file.text());
    if (passphrase) await storeKey(der, passphrase);
  } else {
    der = await storedKey(passphrase);
  }
  const key = await crypto.subtle.importKey("pkcs8", der, {name: "Ed25519"}, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  const keyId = hex(await crypto.subtle.digest("SHA-256", b64url(jwk.x))).slice(0, 16);
  const signedAt = Date.now();
  const message = JSON.stringify({command_hash: commandHash, full_name: state.me.full_name,
    key_id: keyId, meaning, schema: "uns-hub.signature.v1", signed_at_ms: signedAt, user_id: state.me.user_id});
  const sig = await crypto.subtle.sign({name: "Ed25519"}, key, new TextEncoder().encode(message));
  const value = btoa(String.fromCharCode(...new Uint8Array(sig)));
  return {user_id: state.me.user_id, full_name: state.me.full_name, meaning, signed_at_ms: signedAt,
    command_hash: commandHash, algorithm: "Ed25519", key_id: keyId, value};
}

async function signInBrowser() {
  const file = $("sign-key").files[0];
  const passphrase = $("sign-passphrase").value;
  if (!state.command || !state.me) { showCommand(state.command); return; }
  try {
    const signature = await browserSignature(state.command.command_hash, $("sign-meaning").value, file, passphrase);
    if (file && passphrase) $("sign-key").value = "";
    $("sign-passphrase").value = "";
    describeStoredKey();
    await postSignature(signature);
  } catch (e) {
    const box = $("cmd-result");
    box.hidden = false; box.className = "result refused";
    box.textContent = "Could not sign in this browser: " + e.message;
  }
}

// ---------------------------------------------------------------- wiring

$("save-token").addEventListener("click", () => useToken($("token").value.trim()));
$("token").addEventListener("keydown", (ev) => { if (ev.key === "Enter") useToken($("token").value.trim()); });
$("forget-token").addEventListener("click", () => { $("token").value = ""; useToken(""); });
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
// an open menu (account, token) closes on a click elsewhere, as menus do
document.addEventListener("click", (ev) => {
  for (const id of ["account", "token-box"]) {
    const menu = $(id);
    if (menu.open && !menu.contains(ev.target) && !$("signin").contains(ev.target)) menu.open = false;
  }
});
$("filter").addEventListener("input", renderTree);
$("cmd-rule").addEventListener("change", describeRule);
$("command-form").addEventListener("submit", submitCommand);
$("sign-browser").addEventListener("click", signInBrowser);
$("sign-paste").addEventListener("click", () => {
  try { postSignature(JSON.parse($("sign-json").value)); } catch (e) { showCommand(null, {status: "", message: "not JSON: " + e.message}); }
});
setInterval(() => { if (state.me) scheduleRefresh(["lines", "nodes", "alarms"]); }, 5000);
$("token").value = state.token;
trendInit();  // trends.js
useToken(state.token);
