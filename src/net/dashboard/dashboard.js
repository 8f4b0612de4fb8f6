// The sluice dashboard: polls the admin API every 2 s and draws what it
// gets with the DOM and SVG (no libraries). The admin token, when the
// listener asks for one, is kept in sessionStorage (this tab only) and
// sent as "Authorization: Bearer"; it never goes into a URL. Every text
// that came from the server is set with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "sluice.admin.token";
const POLL_MS = 2000;
const SPARK_POINTS = 150; // 5 minutes of 2 s samples
const SVGNS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
let spark = [];
let lastSample = null;
let account = null;
let tokenAsked = false;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(path) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const r = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  if (r.status === 401) {
    askToken();
    throw new Error("unauthorized");
  }
  return r;
}

function askToken() {
  if (tokenAsked) return;
  tokenAsked = true;
  setStatus("down", "admin token needed");
  const d = $("token-dialog");
  $("token-input").value = "";
  if (!d.open) d.showModal();
}

function setStatus(kind, text) {
  $("status-dot").className = "dot " + kind;
  $("status").textContent = text;
}

function fmt(n) {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}

// ---- live rates from /metrics (sluice_decisions_total by outcome) ----

function parseDecisions(text) {
  const out = { allowed: 0, delayed: 0, rejected: 0, unauthorized: 0, error: 0 };
  for (const line of text.split("\n")) {
    if (!line.startsWith("sluice_decisions_total{")) continue;
    const m = /outcome="([a-z]+)"\}\s+([0-9.e+]+)/.exec(line);
    if (m && m[1] in out) out[m[1]] += Number(m[2]);
  }
  return out;
}

async function pollRates() {
  const r = await api("/metrics");
  if (!r.ok) throw new Error("metrics " + r.status);
  const now = performance.now();
  const c = parseDecisions(await r.text());
  if (lastSample) {
    const dt = (now - lastSample.t) / 1000;
    const rate = (k) => Math.max(0, (c[k] - lastSample.c[k]) / dt);
    const all = rate("allowed") + rate("delayed") + rate("rejected") + rate("unauthorized") + rate("error");
    $("rate-all").textContent = fmt(all);
    $("rate-allowed").textContent = fmt(rate("allowed"));
    $("rate-delayed").textContent = fmt(rate("delayed"));
    $("rate-rejected").textContent = fmt(rate("rejected"));
    $("reject-share").textContent = all > 0 ? ((100 * rate("rejected")) / all).toFixed(1) + " % of decisions" : "";
    spark.push(all);
    if (spark.length > SPARK_POINTS) spark.shift();
    drawSpark();
  }
  lastSample = { t: now, c };
}

function drawSpark() {
  const s = $("spark");
  s.replaceChildren();
  if (spark.length < 2) return;
  const max = Math.max(1, ...spark);
  const step = 300 / (Math.max(spark.length, 30) - 1); // at least 1 minute wide
  const x0 = 300 - (spark.length - 1) * step;
  let d = "";
  spark.forEach((v, i) => {
    d += (i ? "L" : "M") + (x0 + i * step).toFixed(1) + "," + (46 - (v / max) * 42).toFixed(1);
  });
  s.appendChild(svg("path", { class: "area", d: d + "L300,48L" + x0.toFixed(1) + ",48Z" }));
  s.appendChild(svg("path", { class: "line", d }));
}

// ---- top accounts and rejections by limit ----

async function pollTop() {
  const by = $("top-by").value;
  const r = await api("/v1/usage/top?by=" + encodeURIComponent(by) + "&window=1h&n=10");
  if (r.status === 503) {
    $("top-body").replaceChildren(row5("The usage history is off on this daemon."));
    return;
  }
  if (!r.ok) throw new Error("top " + r.status);
  const j = await r.json();
  drawByLimit(j.rejected_by || {});
  const body = $("top-body");
  body.replaceChildren();
  if (!j.accounts.length) body.appendChild(row5("No traffic in the last hour."));
  for (const a of j.accounts) {
    const tr = el("tr", "pick");
    tr.title = "show " + a.account;
    tr.appendChild(el("td", "", a.account));
    tr.appendChild(el("td", "num ok", fmt(a.allowed)));
    tr.appendChild(el("td", "num warn", fmt(a.delayed)));
    tr.appendChild(el("td", "num bad", fmt(a.rejected)));
    tr.appendChild(el("td", "num", fmt(a.cost)));
    tr.addEventListener("click", () => { $("account-input").value = a.account; showAccount(a.account); });
    body.appendChild(tr);
  }
}

function row5(text) {
  const tr = el("tr");
  const td = el("td", "empty", text);
  td.colSpan = 5;
  tr.appendChild(td);
  return tr;
}

function drawByLimit(by) {
  const box = $("by-limit");
  box.replaceChildren();
  const names = Object.keys(by).sort((a, b) => by[b] - by[a]);
  if (!names.length) {
    box.appendChild(el("p", "empty", "No rejections in the last hour."));
    return;
  }
  const max = by[names[0]];
  for (const n of names.slice(0, 12)) {
    const row = el("div", "row");
    row.appendChild(el("span", "name", n));
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = Math.max(2, (100 * by[n]) / max) + "%";
    track.appendChild(fill);
    row.appendChild(track);
    row.appendChild(el("span", "n", fmt(by[n])));
    box.appendChild(row);
  }
}

// ---- one account: its limits (peek) and its history ----

async function showAccount(name) {
  account = name.trim();
  if (!account) return;
  try { await pollAccount(); } catch (e) { if (e.message !== "unauthorized") msg(String(e.message)); }
}

function msg(text) {
  const m = $("account-msg");
  m.textContent = text;
  m.hidden = !text;
}

async function pollAccount() {
  if (!account) return;
  const enc = encodeURIComponent(account);
  const bucket = $("bucket").value;
  const [peek, hist] = await Promise.all([
    api("/v1/accounts/" + enc + "/usage"),
    api("/v1/accounts/" + enc + "/usage/history?bucket=" + bucket),
  ]);
  $("account-view").hidden = false;
  $("account-name").textContent = account;
  if (peek.ok) {
    const p = await peek.json();
    $("account-plan").textContent = p.plan ? p.plan : "no plan";
    $("account-plan").hidden = false;
    drawLimits(p.limits || []);
    msg("");
  } else {
    $("account-plan").hidden = true;
    $("limits").replaceChildren();
    msg(peek.status === 404 ? "No such account: " + account : "Limits unavailable (HTTP " + peek.status + ")");
  }
  if (hist.ok) drawHistory(await hist.json());
}

function drawLimits(limits) {
  const box = $("limits");
  box.replaceChildren();
  if (!limits.length) box.appendChild(el("p", "empty", "No limit applies to this account."));
  for (const l of limits) {
    const card = el("div", "limit");
    card.dataset.limit = l.name;
    card.appendChild(el("div", "lname", l.name));
    const win = l.window_seconds ? " per " + span(l.window_seconds) : "";
    const nums = l.unlimited ? "unlimited" : fmt(l.remaining) + " of " + fmt(l.limit) + " left" + win;
    card.appendChild(el("div", "lnums", nums));
    const g = el("div", "gauge");
    const f = el("div");
    const share = l.unlimited || !l.limit ? 1 : Math.max(0, Math.min(1, l.remaining / l.limit));
    f.style.width = (share * 100).toFixed(1) + "%";
    if (!l.unlimited) f.className = share <= 0 ? "out" : share < 0.2 ? "low" : "";
    g.appendChild(f);
    card.appendChild(g);
    if (l.reset && !l.unlimited) {
      const t = new Date(l.reset * 1000);
      card.appendChild(el("div", "lnums", "resets " + t.toLocaleTimeString()));
    }
    box.appendChild(card);
  }
}

function span(s) {
  if (s % 86400 === 0) return s === 86400 ? "day" : s / 86400 + " days";
  if (s % 3600 === 0) return s === 3600 ? "hour" : s / 3600 + " hours";
  if (s % 60 === 0) return s === 60 ? "minute" : s / 60 + " minutes";
  return s + " s";
}

function label(start, bucket) {
  const d = new Date(start * 1000);
  if (bucket === "day") return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// The smallest round number >= v (a power of ten times 1, 1.2, 1.6, 2,
// 4, 5, 6 or 8) so that its four ticks are round too.
function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.6, 2, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawHistory(h) {
  const s = $("history");
  s.replaceChildren();
  // the drawing is as wide as the element, so text is never stretched
  const W = Math.max(300, Math.round(s.getBoundingClientRect().width || 900));
  const H = 240, L = 48, B = 22, T = 8;
  s.setAttribute("viewBox", "0 0 " + W + " " + H);
  const pts = h.series || [];
  let total = { a: 0, d: 0, r: 0 };
  let peak = 1;
  for (const p of pts) {
    peak = Math.max(peak, p.allowed + p.delayed + p.rejected);
    total.a += p.allowed; total.d += p.delayed; total.r += p.rejected;
  }
  const max = niceCeil(peak);
  $("account-totals").textContent = fmt(total.a) + " allowed · " + fmt(total.d) + " delayed · " + fmt(total.r) + " rejected";
  for (let i = 0; i <= 4; i++) {
    const y = T + ((H - T - B) * i) / 4;
    s.appendChild(svg("line", { class: "grid", x1: L, x2: W, y1: y, y2: y }));
    const t = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" });
    t.textContent = fmt((max * (4 - i)) / 4);
    s.appendChild(t);
  }
  if (!pts.length) return;
  const bw = (W - L) / pts.length;
  const scale = (H - T - B) / max;
  const every = Math.max(1, Math.ceil(pts.length / 8));
  pts.forEach((p, i) => {
    const x = L + i * bw + Math.min(1, bw * 0.15);
    const w = Math.max(1, bw - Math.min(2, bw * 0.3));
    let y = H - B;
    for (const [k, cls] of [["allowed", "a"], ["delayed", "d"], ["rejected", "r"]]) {
      const hgt = p[k] * scale;
      if (hgt <= 0) continue;
      y -= hgt;
      const rect = svg("rect", { class: cls, x: x.toFixed(1), y: y.toFixed(1), width: w.toFixed(1), height: Math.max(1, hgt).toFixed(1),
        "data-start": p.start, "data-kind": k, "data-n": p[k] });
      const tip = svg("title", {});
      tip.textContent = label(p.start, h.bucket) + ": " + p[k] + " " + k;
      rect.appendChild(tip);
      s.appendChild(rect);
    }
    if (i % every === 0) {
      const t = svg("text", { x: (L + i * bw).toFixed(1), y: H - 6 });
      t.textContent = label(p.start, h.bucket);
      s.appendChild(t);
    }
  });
}

// ---- wiring ----

async function tick() {
  try {
    await Promise.all([pollRates(), pollTop(), pollAccount()]);
    setStatus("live", "live");
  } catch (e) {
    if (e.message !== "unauthorized") setStatus("down", "admin API unreachable");
  }
}

function init() {
  $("token-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    tokenAsked = false;
    lastSample = null;
    tick();
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close();
    tokenAsked = false;
  });
  $("token-btn").addEventListener("click", () => { tokenAsked = false; askToken(); });
  $("account-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showAccount($("account-input").value);
  });
  $("bucket").addEventListener("change", () => pollAccount().catch(() => {}));
  $("top-by").addEventListener("change", () => pollTop().catch(() => {}));
  const pre = new URLSearchParams(location.search).get("account");
  if (pre) { $("account-input").value = pre; account = pre; }
  // Ask first whether a token is needed, so a fresh tab prompts for it
  // instead of starting with a failed request.
  fetch("/dashboard/auth.json", { cache: "no-store", credentials: "omit" })
    .then((r) => r.json())
    .then((a) => {
      if (a.token_required && !token()) askToken();
      else tick();
    })
    .catch(() => setStatus("down", "admin API unreachable"))
    .finally(() => setInterval(() => { if (!tokenAsked) tick(); }, POLL_MS));
}

document.addEventListener("DOMContentLoaded", init);
