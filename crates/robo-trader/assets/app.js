// robo-trader dashboard: REST for the tables, the WebSocket (/ws) for live updates.
// Every number shown comes from the server; nothing is computed here but formatting.
"use strict";

const $ = (id) => document.getElementById(id);
let lastMessage = Date.now();
let activeTab = "overview";
const logs = [];
const LOG_KEEP = 1000;
const LEVELS = ["error", "warn", "info", "debug", "trace"];

function text(v) { return v === null || v === undefined ? "–" : String(v); }
function cls(v) { const n = Number(v); return isNaN(n) || n === 0 ? "" : n > 0 ? "pos" : "neg"; }
function usd(v) { if (v === null || v === undefined) return "–"; const n = Number(v); return isNaN(n) ? v : n.toLocaleString(undefined, { style: "currency", currency: "USD" }); }
function pct(v) { return v === null || v === undefined ? "–" : (Number(v) * 100).toFixed(2) + "%"; }

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c && typeof c === "object") { td.textContent = text(c.t); if (c.c) td.className = c.c; }
    else td.textContent = text(c);
    tr.appendChild(td);
  }
  return tr;
}
function fill(id, rows) { const b = $(id); b.replaceChildren(...rows.map(row)); }
function showError(msg) { const e = $("error"); if (msg) { e.textContent = msg; e.hidden = false; } else e.hidden = true; }

async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await r.json();
  if (!r.ok) throw new Error(path + ": " + (body.error || r.status));
  return body;
}

function renderStatus(s) {
  $("mode").textContent = s.mode;
  const st = $("state"); st.textContent = s.trading_state;
  st.className = "pill " + (s.trading_state === "active" ? "ok" : s.trading_state === "halted" ? "bad" : "warn");
  $("clock").textContent = s.clock ? s.clock.now + " (" + s.clock.source + ")" : "";
  const c = s.connection || {};
  const cb = $("conn-banner");
  cb.textContent = "Broker " + text(c.state) + (c.since ? " since " + c.since : "") + (c.reason ? " — " + c.reason : "");
  cb.className = "banner " + (c.state === "ready" ? "ok" : "bad");
  const m = s.market || {};
  $("session").textContent = text(m.session) + (m.is_open ? " (open)" : "");
  $("next-open").textContent = "next open " + text(m.next_open);
  $("equity").textContent = usd(s.equity);
  $("cash").textContent = "cash " + usd(s.cash);
  const total = s.equity !== null && s.starting_cash !== null ? (Number(s.equity) - Number(s.starting_cash)) : null;
  $("total-pnl").textContent = usd(total); $("total-pnl").className = "value " + cls(total);
  $("realized").textContent = "realized " + usd(s.realized_pnl) + ", unrealized " + usd(s.unrealized_pnl);
  const cs = $("ctl-state"); cs.textContent = s.trading_state; cs.className = st.className;
  for (const b of document.querySelectorAll(".controls button[data-state]")) b.setAttribute("aria-pressed", b.dataset.state === s.trading_state ? "true" : "false");
  const k = s.kill_switch || {};
  $("ks-state").textContent = text(k.state);
  $("ks-cause").textContent = text(k.cause) + " (" + text(k.source) + ")";
  renderPositions(s.positions || []);
  renderFeeds(s.symbols || []);
}

// Symbols not simply tradeable on live data: delayed, untradeable, dropped (with why).
function renderFeeds(list) {
  const b = $("feeds-banner");
  const odd = list.filter((x) => x.state !== "tradeable" || x.delayed);
  b.hidden = odd.length === 0;
  b.textContent = odd.map((x) => x.symbol + ": " + x.state + (x.delayed ? " (delayed data)" : "") + (x.reason ? " — " + x.reason : "")).join("; ");
  b.className = "banner " + (odd.some((x) => x.state !== "tradeable") ? "bad" : "warn");
}

function renderPositions(list) {
  fill("pos-body", list.map((p) => [p.symbol, p.quantity, usd(p.avg_cost), usd(p.market_price), usd(p.market_value), { t: usd(p.unrealized_pnl), c: cls(p.unrealized_pnl) }]));
}

async function loadOverview() {
  const s = await api("/api/status"); renderStatus(s);
  const p = await api("/api/performance");
  $("day-pnl").textContent = usd(p.day_pnl); $("day-pnl").className = "value " + cls(p.day_pnl);
}
async function loadWatchlist() {
  const m = await api("/api/market");
  fill("watch-body", m.symbols.map((s) => [s.symbol, s.ts, usd(s.close), { t: s.change === null ? "–" : s.change, c: cls(s.change) }, pct(s.change_pct), s.signal ? s.signal.direction + " " + Number(s.signal.strength).toFixed(2) : "–", s.position]));
}
async function loadPositions() { const p = await api("/api/positions"); renderPositions(p.positions); }
async function loadOrders() {
  const o = await api("/api/orders?limit=200");
  fill("orders-body", o.orders.slice().reverse().map((x) => [x.id, x.symbol, x.side, x.quantity, x.filled, x.type, x.purpose, x.state, x.avg_fill_price, x.updated]));
  const f = await api("/api/fills?limit=200");
  fill("fills-body", f.fills.slice().reverse().map((x) => [x.ts, x.order_id, x.symbol, x.side, x.quantity, usd(x.price), usd(x.commission)]));
}
async function loadDecisions() {
  const d = await api("/api/decisions?limit=200");
  fill("dec-body", d.decisions.slice().reverse().map((x) => [x.ts, x.symbol, x.close, x.signal, x.action, x.verdict, x.refused_reason || x.reason]));
}
async function loadPerformance() {
  const p = await api("/api/performance");
  const cards = [["Equity", usd(p.equity)], ["Realized", usd(p.realized_pnl)], ["Unrealized", usd(p.unrealized_pnl)], ["Day P&L", usd(p.day_pnl)], ["Total P&L", usd(p.total_pnl)],
    ["Max drawdown", pct(p.max_drawdown.fraction) + " (" + usd(p.max_drawdown.amount) + ")"], ["Sharpe", p.sharpe === null ? "–" : Number(p.sharpe).toFixed(2)],
    ["Trades", p.trades.count], ["Win rate", pct(p.trades.win_rate)], ["Profit factor", p.trades.profit_factor === null ? "–" : Number(p.trades.profit_factor).toFixed(2)]];
  $("perf-cards").replaceChildren(...cards.map(([l, v]) => { const d = document.createElement("div"); d.className = "card"; const a = document.createElement("div"); a.className = "label"; a.textContent = l; const b = document.createElement("div"); b.className = "value"; b.textContent = text(v); d.append(a, b); return d; }));
  await loadCharts();
  fill("daily-body", p.daily.slice().reverse().map((d) => [d.date, usd(d.close), { t: usd(d.pnl), c: cls(d.pnl) }]));
}
// The charts are re-fetched at most every CHART_EVERY ms (rendering them costs the server more
// than a table) and swapped in as data: URLs, so the old chart stays up until the new one is in.
// The endpoints take no query parameters, so a cache-busting `?_=` is not an option.
const CHART_EVERY = 5000;
let chartsAt = 0;
async function loadCharts() {
  if (Date.now() - chartsAt < CHART_EVERY) return;
  chartsAt = Date.now();
  for (const [id, path] of [["chart-equity", "/api/charts/equity.svg"], ["chart-drawdown", "/api/charts/drawdown.svg"]]) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    $(id).src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(await r.text());
  }
}
// Fractions as percentages (setting and use alike); other numbers to at most 4 decimals.
function limitValue(v, frac) {
  if (v === null || v === undefined || typeof v === "boolean") return text(v);
  const n = Number(v);
  if (isNaN(n)) return text(v);
  return frac ? pct(n) : n.toLocaleString(undefined, { maximumFractionDigits: 4 });
}
async function loadRisk() {
  const r = await api("/api/risk");
  fill("limits-body", r.limits.map((l) => {
    const frac = String(l.unit).startsWith("fraction");
    return [l.name, limitValue(l.limit, frac), l.use === null ? "(" + l.detail + ")" : limitValue(l.use, frac), l.unit];
  }));
  fill("refusals-body", r.refusals.map((x) => [x.check, x.count, x.last_ts, x.last_reason]));
}
async function loadLogs() {
  const l = await api("/api/logs?limit=500&level=trace");
  logs.length = 0; logs.push(...l.logs); renderLogs();
}
let logsFrame = 0;
function scheduleLogs() { if (!logsFrame) logsFrame = requestAnimationFrame(() => { logsFrame = 0; renderLogs(); }); }
function renderLogs() {
  const max = LEVELS.indexOf($("log-level").value);
  const pre = $("log-lines");
  const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
  pre.textContent = logs.filter((l) => LEVELS.indexOf(l.level.toLowerCase()) <= max).map((l) => l.ts + " " + l.level + " " + l.target + ": " + l.message).join("\n");
  if (follow) pre.scrollTop = pre.scrollHeight;
}

const loaders = { overview: loadOverview, watchlist: loadWatchlist, positions: loadPositions, orders: loadOrders, decisions: loadDecisions, performance: loadPerformance, risk: loadRisk, logs: loadLogs };
let pending = null;
function refresh(delay) {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    try { await loaders[activeTab](); if (activeTab !== "overview") await loadOverview(); showError(null); }
    catch (e) { showError(String(e.message || e)); }
  }, delay || 0);
}

// On a narrow screen the tab strip scrolls sideways: keep the selected tab in view.
function revealTab(b) {
  const nav = b.parentElement, pad = 16;
  if (b.offsetLeft < nav.scrollLeft) nav.scrollLeft = b.offsetLeft - pad;
  else if (b.offsetLeft + b.offsetWidth > nav.scrollLeft + nav.clientWidth) nav.scrollLeft = b.offsetLeft + b.offsetWidth - nav.clientWidth + pad;
}

function selectTab(name) {
  activeTab = name;
  for (const b of document.querySelectorAll("nav button")) {
    const on = b.dataset.tab === name;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", on ? "true" : "false");
    b.tabIndex = on ? 0 : -1;
    if (on) revealTab(b);
  }
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "tab-" + name;
  refresh(0);
}

function onMessage(m) {
  lastMessage = Date.now();
  $("stale").hidden = true;
  switch (m.type) {
    case "snapshot": if (m.status) renderStatus(m.status); break;
    case "connection": refresh(200); break;
    case "log": logs.push(m); if (logs.length > LOG_KEEP) logs.splice(0, logs.length - LOG_KEEP); if (activeTab === "logs") scheduleLogs(); break;
    case "heartbeat": $("clock").textContent = m.clock + " (" + m.clock_source + ")"; break;
    case "market": case "signal": if (activeTab === "watchlist") refresh(500); break;
    default: refresh(500); // fill, order, position, decision, performance, risk
  }
}

// The server drops a client that falls behind (or restarts): reconnect after 1 s, doubling up
// to 10 s while nothing gets through; the snapshot sent on connect catches the page up.
let retries = 0;
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  const s = $("stream");
  ws.onopen = () => { s.textContent = "live"; s.className = "pill ok"; };
  ws.onmessage = (e) => {
    retries = 0;
    let m;
    try { m = JSON.parse(e.data); } catch (err) { showError("bad stream message: " + err); return; }
    onMessage(m);
  };
  ws.onclose = () => {
    const wait = Math.min(1000 * 2 ** retries, 10000);
    retries += 1;
    s.textContent = "reconnecting…"; s.className = "pill bad";
    setTimeout(connect, wait);
  };
  ws.onerror = () => {};
}

function ctlResult(kind, msg) { const e = $("ctl-result"); e.textContent = msg; e.className = "banner " + kind; }

async function control(btn) {
  const token = $("token").value.trim();
  sessionStorage.setItem("robo-token", token);
  const path = "/api/control/" + btn.dataset.ctl;
  const opts = { method: "POST", headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" } };
  if (btn.dataset.state) opts.body = JSON.stringify({ state: btn.dataset.state });
  if (btn.classList.contains("danger") && !window.confirm(btn.textContent + "?")) return;
  try {
    const r = await fetch(path, opts);
    const body = await r.json().catch(() => ({}));
    if (r.ok) ctlResult("ok", "done: " + body.action + (body.state ? " → " + body.state : "") + " (recorded as " + body.recorded + ")");
    else ctlResult("bad", "refused (" + r.status + "): " + text(body.error) + (r.status === 401 ? " — enter the token from <db>.token" : ""));
  } catch (e) { ctlResult("bad", "failed: " + e); }
  refresh(0);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => selectTab(b.dataset.tab));
  document.querySelector("nav").addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll("nav button")];
    const i = tabs.findIndex((b) => b.dataset.tab === activeTab);
    const j = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : e.key === "Home" ? 0 : e.key === "End" ? tabs.length - 1 : null;
    if (j === null) return;
    e.preventDefault();
    const t = tabs[(j + tabs.length) % tabs.length];
    selectTab(t.dataset.tab); t.focus();
  });
  for (const b of document.querySelectorAll(".controls button")) b.addEventListener("click", () => control(b));
  $("token").value = sessionStorage.getItem("robo-token") || "";
  $("log-level").addEventListener("change", renderLogs);
  setInterval(() => { if (Date.now() - lastMessage > 10000) $("stale").hidden = false; }, 1000);
  setInterval(() => refresh(0), 5000);
  selectTab("overview");
  connect();
});
