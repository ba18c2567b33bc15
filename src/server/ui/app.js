// slowburn status page. Plain JavaScript, no build step, no outside assets: a client of the
// public /api/v1 and nothing else. Views are chosen by the URL hash:
//   #/?status=&kind=&label=&q=&offset=   overview (server-side filtered and paged)
//   #/probe/NAME?window=6h               one probe: charts with drift projection, phases, notes
//   #/alerts                             active alerts, ack/resolve, silences
//   #/alert/ID                           one incident's timeline, exportable as Markdown
"use strict";

const PAGE = 100;
const REFRESH_MS = 10000;
const WINDOWS = ["1h", "6h", "24h", "7d"];
const TOKEN_KEY = "slowburn-api-token";
let refreshTimer = null;
let renderSeq = 0;

// ---- small helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options) {
  const response = await fetch("/api/v1" + path, options);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, (body && body.error) || `${response.status} ${response.statusText}`);
  }
  return { body, headers: response.headers };
}

const get = async (path) => (await api(path)).body;

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const sign = seconds < 0 ? "-" : "";
  let x = Math.abs(seconds);
  // Loopback latencies are a few hundred microseconds: rounded to ms they would read "0ms".
  if (x > 0 && x < 1e-6) return sign + Math.round(x * 1e9) + "ns";
  if (x > 0 && x < 0.001) return sign + Math.round(x * 1e6) + "µs";
  if (x < 0.01) return sign + (x * 1000).toFixed(1).replace(/\.0$/, "") + "ms";
  if (x < 1) return sign + Math.round(x * 1000) + "ms";
  if (x < 60) return sign + (x < 10 ? x.toFixed(1).replace(/\.0$/, "") : Math.round(x)) + "s";
  x = Math.round(x);
  const d = Math.floor(x / 86400), hr = Math.floor((x % 86400) / 3600), m = Math.floor((x % 3600) / 60), sec = x % 60;
  if (d > 0) return sign + d + "d" + (hr ? hr + "h" : "");
  if (hr > 0) return sign + hr + "h" + (m ? m + "m" : "");
  return sign + m + "m" + (sec ? sec + "s" : "");
}

function fmtNumber(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return String(Number(v.toPrecision(3)));
}

function fmtValue(unit, v) {
  if (v === null || v === undefined || !isFinite(v)) return "—";
  switch (unit) {
    case "bytes": {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0, x = v;
      while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return (Math.abs(x) >= 100 || i === 0 ? Math.round(x) : Number(x.toPrecision(3))) + " " + units[i];
    }
    case "seconds": return fmtDuration(v);
    case "ratio": return Number((v * 100).toPrecision(3)) + "%";
    default: return fmtNumber(v);
  }
}

function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function fmtIso(t) {
  return t ? new Date(t * 1000).toISOString().replace(/\.\d+Z$/, "Z") : "—";
}

function ago(t) {
  if (!t) return "never";
  const d = Date.now() / 1000 - t;
  return d < 0 ? "in " + fmtDuration(-d) : fmtDuration(d) + " ago";
}

function statusBadge(status) {
  return h("span", { class: "status " + status, "data-status": status }, status);
}

function labelsOf(labels) {
  return h("span", { class: "labels" }, Object.entries(labels || {}).map(([k, v]) => h("span", {}, `${k}=${v}`)));
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || "") };
}

let shownHash = null;

// Replaces the view; a refresh of the same view keeps the reader's scroll position.
function setView(...children) {
  const view = document.getElementById("view");
  const y = window.scrollY;
  view.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  if (shownHash === location.hash) window.scrollTo(0, y);
  shownHash = location.hash;
}

function errorBox(e) {
  return h("div", { class: "error", role: "alert" }, e.message || String(e));
}

function toast(text) {
  for (const old of document.querySelectorAll(".toast")) old.remove();
  const el = h("div", { class: "toast", role: "status" }, text);
  document.body.append(el);
  setTimeout(() => el.remove(), 3000);
}

function stamp() {
  document.getElementById("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---- API token (asked once, kept in this tab's sessionStorage only) ---------------------------

function askToken() {
  return new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    input.value = "";
    dialog.hidden = false;
    input.focus();
    const done = (token) => {
      dialog.hidden = true;
      form.onsubmit = null;
      document.getElementById("token-cancel").onclick = null;
      resolve(token);
    };
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      done(token);
    };
    document.getElementById("token-cancel").onclick = () => done(null);
  });
}

// Sends a write with the bearer token; asks for the token when there is none or it was refused.
async function write(method, path, body) {
  for (let attempt = 0; attempt < 2; attempt++) {
    let token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) token = await askToken();
    if (!token) throw new Error("no API token given");
    try {
      return (await api(path, {
        method,
        headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      })).body;
    } catch (e) {
      if (e.status === 401 && attempt === 0) {
        sessionStorage.removeItem(TOKEN_KEY);
        continue;
      }
      throw e;
    }
  }
  throw new Error("the API token was refused");
}

// ---- charts ----------------------------------------------------------------------------------

function sparkline(values, unit) {
  const w = 120, hgt = 24;
  const svg = s("svg", { class: "spark", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img" });
  const ok = values.filter((v) => v !== null);
  if (values.length === 0) return svg;
  let lo = Math.min(...ok), hi = Math.max(...ok);
  if (!ok.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { hi = lo + (Math.abs(lo) || 1); }
  const x = (i) => values.length === 1 ? w / 2 : (i / (values.length - 1)) * (w - 4) + 2;
  const y = (v) => hgt - 2 - ((v - lo) / (hi - lo)) * (hgt - 4);
  let run = [];
  const flush = () => {
    if (run.length > 1) svg.append(s("polyline", { points: run.join(" ") }));
    else if (run.length === 1) { const [px, py] = run[0].split(","); svg.append(s("circle", { cx: px, cy: py, r: 1.5, fill: "currentColor" })); }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null) {
      flush();
      svg.append(s("rect", { class: "fail", x: x(i) - 1, y: hgt - 6, width: 2, height: 6 }));
    } else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  });
  flush();
  svg.append(s("title", {}, `${ok.length ? fmtValue(unit, ok[ok.length - 1]) : "no value"} (${values.length} points)`));
  return svg;
}

// Ticks at round values; for bytes, round in KiB, MiB or GiB rather than in decimal bytes.
function valueTicks(unit, lo, hi, count) {
  if (unit !== "bytes") return niceTicks(lo, hi, count);
  let scale = 1;
  while (Math.max(Math.abs(lo), Math.abs(hi)) / scale >= 1024 && scale < Math.pow(1024, 4)) scale *= 1024;
  return niceTicks(lo / scale, hi / scale, count).map((t) => t * scale);
}

function niceTicks(lo, hi, count) {
  const span = hi - lo || 1;
  const step0 = span / count;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => span / st <= count) || step0;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
  return out;
}

function timeTicks(t0, t1) {
  const spans = [1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  const step = spans.find((st) => (t1 - t0) / st <= 7) || 86400;
  const out = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
  return out;
}

function timeLabel(t, span) {
  const d = new Date(t * 1000);
  const hm = d.toLocaleTimeString(undefined, span < 600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" });
  return span > 86400 * 1.5 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hm : hm;
}

// One signal's history with, when it is watched, the fitted trend, its projection to the limit
// line and the ETA written at the end of the projection.
function chart(hist, windowSeconds) {
  const fit = hist.fit;
  const W = 860, H = 260, L = 64, R = fit ? 150 : 24, T = 14, B = 28;
  const pts = hist.points.filter((p) => p[1] !== null);
  const now = hist.now;
  let t0 = hist.since, t1 = now;
  if (hist.source === "recent" && hist.points.length) {
    // Only the last runs are in memory: show the span they cover, not an empty window.
    const first = hist.points[0][0];
    t0 = Math.max(hist.since, first - Math.max(1, (now - first) * 0.05));
  }
  let hit = null;
  if (fit && fit.level !== null && fit.slope !== null && fit.at !== null) {
    if (fit.eta_seconds !== null && fit.slope > 0 && fit.eta_seconds <= windowSeconds * 2) {
      hit = fit.at + fit.eta_seconds;
      t1 = Math.max(t1, hit + windowSeconds * 0.04);
    }
  }
  let values = pts.map((p) => p[1]);
  if (fit) values.push(fit.limit);
  if (fit && fit.level !== null) values.push(fit.level);
  if (!values.length) values = [0, 1];
  let lo = Math.min(0, ...values), hi = Math.max(...values);
  if (hi - lo < 1e-12) hi = lo + 1;
  hi += (hi - lo) * 0.06;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "data-signal": hist.signal });
  svg.append(s("title", {}, `${hist.signal} over the last ${fmtDuration(windowSeconds)}`));
  for (const v of valueTicks(hist.unit, lo, hi, 4)) {
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtValue(hist.unit, v)));
  }
  for (const t of timeTicks(t0, t1)) {
    svg.append(s("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, timeLabel(t, t1 - t0)));
  }
  svg.append(s("line", { class: "now", x1: x(now), x2: x(now), y1: T, y2: H - B }));
  // Data, broken where runs failed.
  let run = [];
  const flush = () => {
    if (run.length > 1) svg.append(s("polyline", { class: "data", points: run.join(" ") }));
    else if (run.length === 1) { const [px, py] = run[0].split(","); svg.append(s("circle", { cx: px, cy: py, r: 2, fill: "#1f5fbf" })); }
    run = [];
  };
  for (const [t, v] of hist.points) {
    if (v === null) {
      flush();
      svg.append(s("rect", { class: "fail", x: x(t) - 1, y: H - B - 8, width: 2, height: 8 }));
    } else run.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
  }
  flush();
  if (fit) {
    svg.append(s("line", { class: "limit", x1: L, x2: W - R, y1: y(fit.limit), y2: y(fit.limit) }));
    svg.append(s("text", { class: "limit-text", x: W - R + 4, y: y(fit.limit) + 4 }, "limit " + fit.limit_text));
    if (fit.level !== null && fit.slope !== null && fit.at !== null) {
      const from = Math.max(t0, pts.length ? pts[0][0] : t0);
      svg.append(s("line", { class: "fit", x1: x(from), y1: y(fit.level - fit.slope * (fit.at - from)), x2: x(fit.at), y2: y(fit.level) }));
      if (hit !== null) {
        svg.append(s("line", { class: "projection", x1: x(fit.at), y1: y(fit.level), x2: x(hit), y2: y(fit.limit) }));
        svg.append(s("circle", { cx: x(hit), cy: y(fit.limit), r: 4, fill: "#b26a00" }));
        svg.append(s("text", { class: "eta-text", x: x(hit) - 8, y: y(fit.limit) - 8, "text-anchor": "end" }, fit.summary));
      } else if (fit.slope > 0) {
        // The breach is beyond this window: draw the projection to the right edge.
        const tEnd = t1;
        svg.append(s("line", { class: "projection", x1: x(fit.at), y1: y(fit.level), x2: x(tEnd), y2: y(fit.level + fit.slope * (tEnd - fit.at)) }));
      }
    }
  }
  return svg;
}

// ---- overview --------------------------------------------------------------------------------

function overviewQuery(params) {
  const q = new URLSearchParams();
  for (const key of ["status", "kind", "label", "q"]) {
    const v = params.get(key);
    if (v) q.set(key, v);
  }
  q.set("offset", params.get("offset") || "0");
  q.set("limit", String(PAGE));
  q.set("sort", "status");
  return q;
}

function go(params) {
  const clean = new URLSearchParams();
  for (const [k, v] of params) if (v) clean.set(k, v);
  const text = clean.toString();
  location.hash = "#/" + (text ? "?" + text : "");
}

async function renderOverview(params, seq) {
  const data = await get("/overview?" + overviewQuery(params));
  if (seq !== renderSeq) return;
  const set = (key, value) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value); else next.delete(key);
    next.delete("offset");
    go(next);
  };
  const search = h("input", { type: "search", id: "search", placeholder: "Search probes by name", value: params.get("q") || "", "aria-label": "search by name" });
  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => set("q", search.value.trim()), 250);
  });
  const kind = h("select", { id: "kind-filter", "aria-label": "kind", onchange: (e) => set("kind", e.target.value) },
    h("option", { value: "" }, "all kinds"),
    data.kinds.map((k) => h("option", { value: k, selected: params.get("kind") === k }, k)));
  const labelOptions = [];
  for (const [k, values] of Object.entries(data.labels)) for (const v of values) labelOptions.push(`${k}=${v}`);
  const label = h("select", { id: "label-filter", "aria-label": "label", onchange: (e) => set("label", e.target.value) },
    h("option", { value: "" }, "all labels"),
    labelOptions.map((l) => h("option", { value: l, selected: params.get("label") === l }, l)));
  const current = (params.get("status") || "").split(",").filter(Boolean);
  const chips = h("div", { class: "chips", id: "status-chips" },
    h("button", { class: "chip" + (current.length ? "" : " on"), onclick: () => set("status", "") }, `all ${data.total}`),
    Object.entries(data.counts).filter(([, n]) => n > 0).map(([st, n]) =>
      h("button", { class: "chip" + (current.includes(st) ? " on" : ""), "data-status": st, onclick: () => set("status", current.includes(st) ? "" : st) },
        statusBadge(st), " ", n)));
  const rows = data.probes.map((p) => {
    const reason = p.reason
      ? h("td", { class: "reason", title: p.reason }, p.reason)
      : p.last_failure
        ? h("td", { class: "reason old", title: p.last_failure.error }, `${p.last_failure.error} (${ago(p.last_failure.at)})`)
        : h("td", { class: "reason" });
    return h("tr", { "data-probe": p.name, "data-status": p.status },
      h("td", {}, statusBadge(p.status)),
      h("td", {}, h("a", { href: "#/probe/" + encodeURIComponent(p.name), class: "probe-link" }, p.name),
        h("div", { class: "small muted hide-narrow" }, p.target)),
      h("td", { class: "hide-narrow" }, p.kind),
      h("td", { class: "num small", title: fmtTime(p.last_check) }, p.last_check ? ago(p.last_check) : "never"),
      h("td", { class: "num hide-narrow" }, p.duration_seconds !== null ? fmtDuration(p.duration_seconds) : "—"),
      h("td", { class: "hide-narrow", title: p.main_signal }, sparkline(p.spark, p.unit)),
      reason);
  });
  const offset = data.offset;
  const pager = h("div", { class: "pager" },
    h("span", { class: "muted", id: "page-info" }, data.matched ? `${offset + 1}–${offset + data.probes.length} of ${data.matched}` : "no probes match"),
    h("button", { class: "secondary", id: "prev-page", disabled: offset === 0, onclick: () => { const n = new URLSearchParams(params); n.set("offset", String(Math.max(0, offset - PAGE))); go(n); } }, "‹ Prev"),
    h("button", { class: "secondary", id: "next-page", disabled: offset + PAGE >= data.matched, onclick: () => { const n = new URLSearchParams(params); n.set("offset", String(offset + PAGE)); go(n); } }, "Next ›"));
  const hadFocus = document.activeElement && document.activeElement.id === "search";
  setView(
    h("div", { class: "filters" }, search, kind, label),
    chips,
    h("div", { class: "table-wrap" }, h("table", { id: "probes" },
      h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Probe"), h("th", { class: "hide-narrow" }, "Kind"),
        h("th", { class: "num" }, "Last check"), h("th", { class: "num hide-narrow" }, "Latency"), h("th", { class: "hide-narrow" }, "Recent"), h("th", {}, "Reason"))),
      h("tbody", { id: "probe-rows" }, rows))),
    pager);
  if (hadFocus) {
    const el = document.getElementById("search");
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }
  if (!window.slowburnFirstRender) window.slowburnFirstRender = performance.now();
}

// ---- probe page ------------------------------------------------------------------------------

const WINDOW_SECONDS = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
const PHASE_COLORS = ["#5b8def", "#46b3a5", "#e6a23c", "#9b6dd6", "#e06c75", "#7f8c8d"];

async function renderProbe(name, params, seq) {
  const win = WINDOWS.includes(params.get("window")) ? params.get("window") : "6h";
  const probe = await get("/probes/" + encodeURIComponent(name));
  const signals = [...new Set([...probe.drift.map((d) => d.signal), probe.main_signal])];
  const histories = await Promise.all(signals.map((sig) =>
    get(`/probes/${encodeURIComponent(name)}/history?signal=${encodeURIComponent(sig)}&since=${win}`).catch((e) => ({ signal: sig, error: e }))));
  const alerts = (await get("/alerts")).filter((a) => a.probe === name).slice(-10).reverse();
  const uptime = await get(`/probes/${encodeURIComponent(name)}/uptime`).catch((e) => ({ error: e }));
  // Each location's latest result, for probes with `locations:` (replicas sharing a database).
  const places = probe.locations ? await get(`/probes/${encodeURIComponent(name)}/locations`).catch(() => null) : null;
  if (seq !== renderSeq) return;
  const last = probe.last;
  const status = probe.status || (!last ? "pending" : last.success ? "up" : "down");
  const windowButtons = h("div", { class: "row windows", id: "windows" }, WINDOWS.map((w) =>
    h("button", { class: w === win ? "on" : "", "data-window": w, onclick: () => { location.hash = `#/probe/${encodeURIComponent(name)}?window=${w}`; } }, w)));
  const charts = histories.map((hist) => {
    if (hist.error) return h("div", { class: "card" }, h("h2", {}, hist.signal), errorBox(hist.error));
    const fit = hist.fit;
    const eta = fit ? h("div", { class: "eta" + (fit.eta_seconds === null ? " calm" : ""), "data-signal": hist.signal }, fit.summary,
      fit.slope !== null ? h("span", { class: "muted small" }, `  · trend ${fmtValue(hist.unit, fit.slope * 3600)}/h · level ${fmtValue(hist.unit, fit.level)} · horizon ${fmtDuration(fit.horizon_seconds)}${fit.firing ? " · firing" : ""}`) : null) : null;
    const drift = probe.drift.find((d) => d.signal === hist.signal);
    const detectorNotes = drift && drift.notes && drift.notes.length ? h("div", { class: "muted small detector-notes", "data-signal": hist.signal },
      drift.notes.map((n) => `${n.detector}: ${n.note}`).join(" · ")) : null;
    const note = hist.source === "recent" ? h("div", { class: "muted small" }, `last ${hist.points.length} runs kept in memory (add a drift: entry to keep history in the store)`) : null;
    return h("div", { class: "card chart-card", "data-signal": hist.signal },
      h("h2", {}, hist.signal, h("span", { class: "muted small" }, ` ${hist.unit}`)), eta, detectorNotes,
      hist.points.length ? chart(hist, WINDOW_SECONDS[win]) : h("p", { class: "muted" }, "no samples in this window yet"), note);
  });
  const info = h("div", { class: "card" },
    h("div", { class: "row" }, statusBadge(status), h("h1", {}, probe.name)),
    h("div", { class: "muted" }, `${probe.kind} · ${probe.target} · every ${fmtDuration(probe.interval_seconds)} · timeout ${fmtDuration(probe.timeout_seconds)} · ${probe.defined_at}`),
    labelsOf(probe.labels),
    h("div", { class: "stats", style: null },
      h("div", {}, "Last check", h("b", {}, last ? ago(last.at) : "not yet")),
      h("div", {}, "Duration", h("b", {}, last ? fmtDuration(last.duration_seconds) : "—")),
      h("div", {}, "Last success", h("b", {}, probe.last_success ? ago(probe.last_success) : "never")),
      h("div", {}, "Runs", h("b", {}, probe.runs)),
      h("div", {}, "Failures", h("b", {}, Object.values(probe.failures || {}).reduce((a, b) => a + b, 0)))),
    last && last.error ? h("p", { class: "error", id: "probe-error" }, last.error) : null);
  const sections = [info, uptimeCard(uptime), h("div", { class: "row" }, h("b", {}, "Window"), windowButtons), ...charts];
  if (places && places.locations) {
    const badge = { passing: "up", failing: "down", no_data: "pending" };
    const quorum = places.min_failing ? ` · pages when ${places.min_failing} fail together for ${fmtDuration(places.for_seconds)}` : "";
    sections.splice(1, 0, h("div", { class: "card", id: "locations" }, h("h2", {}, "Locations", h("span", { class: "muted small" }, quorum)),
      h("table", {}, h("tbody", {}, places.locations.map((l) => h("tr", { "data-location": l.location },
        h("td", {}, statusBadge(badge[l.result] || "pending")), h("td", {}, l.location),
        h("td", {}, l.result.replace("_", " ")), h("td", { class: "num" }, l.seconds_ago === null ? "—" : `${fmtDuration(l.seconds_ago)} ago`)))))));
  }
  if (last && Object.keys(last.phases).length) {
    const total = Object.values(last.phases).reduce((a, b) => a + b, 0) || 1;
    const entries = Object.entries(last.phases);
    sections.push(h("div", { class: "card", id: "phases" }, h("h2", {}, "Phases of the last run"),
      h("div", { class: "phases" }, entries.map(([p, d], i) => {
        const el = h("div", { title: `${p} ${fmtDuration(d)}` });
        el.style.width = (100 * d / total) + "%";
        el.style.background = PHASE_COLORS[i % PHASE_COLORS.length];
        return el;
      })),
      h("div", { class: "legend" }, entries.map(([p, d], i) => {
        const sw = h("i");
        sw.style.background = PHASE_COLORS[i % PHASE_COLORS.length];
        return h("span", {}, sw, `${p} ${fmtDuration(d)}`);
      }))));
  }
  if (last && last.checks.length) {
    sections.push(h("div", { class: "card", id: "checks" }, h("h2", {}, "Assertions"),
      h("table", {}, h("tbody", {}, last.checks.map((c) => h("tr", {},
        h("td", { class: c.passed ? "pass" : "fail-text" }, c.passed ? "✔ pass" : "✘ fail"),
        h("td", { class: "mono" }, c.name), h("td", {}, c.detail)))))));
  }
  if (last && last.notes.length) {
    sections.push(h("div", { class: "card", id: "notes" }, h("h2", {}, probe.kind === "postgres" ? "Offending sessions" : probe.kind === "process" ? "Matched processes" : "Notes"),
      last.notes.map((n) => h("pre", {}, n))));
  }
  if (last && Object.keys(last.signals).length) {
    sections.push(h("div", { class: "card" }, h("h2", {}, "Signals of the last run"),
      h("div", { class: "stats" }, Object.entries(last.signals).map(([k, v]) => h("div", {}, k, h("b", {}, fmtNumber(v)))))));
  }
  if (alerts.length) {
    sections.push(h("div", { class: "card" }, h("h2", {}, "Alerts"), h("table", {}, h("tbody", {}, alerts.map((a) => h("tr", {},
      h("td", {}, statusBadge(a.state)), h("td", {}, h("a", { href: "#/alert/" + a.id }, `#${a.id} ${a.reason}`)), h("td", {}, a.summary), h("td", { class: "num" }, ago(a.since))))))));
  }
  setView(h("p", {}, h("a", { href: "#/" }, "‹ all probes")), ...sections);
  window.slowburnProbeRendered = true;
}

// Uptime over 24h/7d/30d/90d, and one bar per UTC day of the last 90 (grey: no runs).
function uptimeCard(uptime) {
  if (uptime.error) return h("div", { class: "card", id: "uptime" }, h("h2", {}, "Uptime"), errorBox(uptime.error));
  // Truncated, not rounded: 99.999% is not shown as 100%.
  const pct = (v) => v === null ? "—" : v === 100 || v === 0 ? `${v}%` : `${(Math.floor(v * 100) / 100).toFixed(2)}%`;
  const stats = h("div", { class: "stats" }, uptime.windows.map((w) =>
    h("div", { "data-window": w.window, title: `${w.ok} of ${w.runs} runs succeeded` }, w.window,
      h("b", {}, pct(w.uptime_percent)),
      h("span", { class: "muted small" }, w.mean_duration_seconds === null ? "no runs" : `mean ${fmtDuration(w.mean_duration_seconds)}`))));
  const byDay = new Map(uptime.days.map((d) => [d.start, d]));
  const today = Math.floor(uptime.now / 86400) * 86400;
  const bars = h("div", { class: "uptime-bars" });
  for (let k = uptime.retention_days - 1; k >= 0; k--) {
    const start = today - k * 86400;
    const d = byDay.get(start);
    const bar = h("i", { title: d ? `${fmtIso(start).slice(0, 10)}: ${pct(d.uptime_percent)} of ${d.runs} runs` : `${fmtIso(start).slice(0, 10)}: no runs` });
    bar.className = !d ? "none" : d.uptime_percent >= 99.9 ? "good" : d.uptime_percent >= 99 ? "fair" : "bad";
    bars.appendChild(bar);
  }
  return h("div", { class: "card", id: "uptime" }, h("h2", {}, "Uptime", h("span", { class: "muted small" }, ` · ${uptime.retention_days} days in 1-minute buckets`)), stats, bars);
}

// ---- alerts ----------------------------------------------------------------------------------

async function renderAlerts(seq) {
  const [active, resolved, silences] = await Promise.all([get("/alerts?state=active"), get("/alerts?state=resolved"), get("/silences")]);
  const details = await Promise.all(active.slice(0, 50).map((a) => get("/alerts/" + a.id).catch(() => a)));
  if (seq !== renderSeq) return;
  const act = (verb, id) => async (ev) => {
    ev.target.disabled = true;
    try {
      await write("POST", `/alerts/${id}/${verb}`, { by: "status page" });
      toast(`alert ${id}: ${verb === "ack" ? "acknowledged" : "resolved"}`);
    } catch (e) {
      toast(e.message);
    }
    route();
  };
  const activeRows = details.map((a) => {
    const sent = (a.notifications || []).filter((r) => r.event === "trigger" || r.event === "flapping");
    const paged = sent.length
      ? sent.map((r) => h("div", { class: "small" }, `${r.notifier}: ${r.state}${r.state === "sent" ? " " + ago(r.at) : ""}`))
      : (a.paged || []).map((n) => h("div", { class: "small" }, n));
    const flags = [a.silenced ? statusBadge("silenced") : null, a.flapping ? statusBadge("flapping") : null,
    (a.held_by || []).length ? statusBadge("held") : null];
    return h("tr", { "data-alert": a.id, "data-state": a.state },
      h("td", {}, statusBadge(a.state), " ", flags),
      h("td", {}, h("a", { href: "#/alert/" + a.id }, `#${a.id}`), " ", h("a", { href: "#/probe/" + encodeURIComponent(a.probe) }, a.probe),
        h("div", { class: "small muted" }, a.reason)),
      h("td", {}, a.severity),
      h("td", { class: "small" }, a.message),
      h("td", { class: "num small", title: fmtTime(a.since) }, ago(a.since)),
      h("td", { class: "small" }, a.policy ? `${a.policy} · ${a.escalation_step !== null ? "step " + a.escalation_step + " paged" : "all steps paged"}` : "no policy"),
      h("td", {}, paged),
      h("td", { class: "small" }, a.next_escalation ? `step ${a.next_escalation.step} ${ago(a.next_escalation.due)}` : a.state === "acknowledged" ? `acked by ${a.acked_by}` : "—"),
      h("td", {}, h("div", { class: "row" },
        h("button", { class: "ack", disabled: a.state !== "firing", onclick: act("ack", a.id) }, "Ack"),
        h("button", { class: "resolve secondary", onclick: act("resolve", a.id) }, "Resolve"))));
  });
  const recent = resolved.slice(-20).reverse().map((a) => h("tr", { "data-alert": a.id },
    h("td", {}, statusBadge("resolved")), h("td", {}, h("a", { href: "#/alert/" + a.id }, `#${a.id}`), ` ${a.probe} `, h("span", { class: "muted small" }, a.reason)),
    h("td", { class: "small" }, a.resolved_by ? `by ${a.resolved_by}` : "recovered"), h("td", { class: "num small" }, ago(a.resolved_at))));
  const silenceRows = silences.map((x) => h("tr", { "data-silence": x.id },
    h("td", { class: "mono small" }, x.id),
    h("td", {}, labelsOf(x.matchers)),
    h("td", { class: "small" }, x.window.once ? `${fmtTime(x.window.once.starts)} → ${fmtTime(x.window.once.ends)}` : x.window.weekly ? `weekly ${x.window.weekly.days.map((d) => ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d]).join(",")} ${fmtDuration(x.window.weekly.duration)} (${x.window.weekly.timezone})` : ""),
    h("td", {}, x.active ? "active" : "inactive"),
    h("td", { class: "small" }, x.comment, x.created_by ? h("span", { class: "muted" }, ` — ${x.created_by}`) : null),
    h("td", {}, x.source === "api"
      ? h("button", { class: "danger", onclick: async () => { try { await write("DELETE", "/silences/" + encodeURIComponent(x.id)); } catch (e) { toast(e.message); } route(); } }, "Remove")
      : h("span", { class: "muted small" }, "from file"))));
  const form = h("form", { id: "silence-form", class: "row" },
    h("input", { name: "match", placeholder: "probe=checkout-api, team=shop", required: true, size: 28, "aria-label": "matchers" }),
    h("input", { name: "duration", placeholder: "2h", value: "2h", size: 5, "aria-label": "duration" }),
    h("input", { name: "comment", placeholder: "why", size: 24, "aria-label": "comment" }),
    h("input", { name: "by", placeholder: "your name", size: 12, "aria-label": "created by" }),
    h("button", { type: "submit" }, "Add silence"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    const matchers = {};
    for (const part of String(f.get("match")).split(",")) {
      const [k, ...rest] = part.split("=");
      if (k.trim() && rest.length) matchers[k.trim()] = rest.join("=").trim();
    }
    const seconds = parseDuration(String(f.get("duration") || "2h"));
    if (!Object.keys(matchers).length || !seconds) {
      toast("write matchers as key=value and a duration such as 2h");
      return;
    }
    const now = Date.now();
    try {
      await write("POST", "/silences", {
        match: matchers, starts: new Date(now).toISOString(), ends: new Date(now + seconds * 1000).toISOString(),
        comment: String(f.get("comment") || ""), created_by: String(f.get("by") || "status page"),
      });
      toast("silence added");
    } catch (e) {
      toast(e.message);
    }
    route();
  });
  setView(
    h("div", { class: "card" }, h("h2", {}, `Active alerts (${active.length})`),
      active.length ? h("div", { class: "table-wrap" }, h("table", { id: "active-alerts" },
        h("thead", {}, h("tr", {}, ["State", "Alert", "Severity", "Message", "Since", "Escalation", "Paged", "Next", ""].map((c) => h("th", {}, c)))),
        h("tbody", {}, activeRows))) : h("p", { class: "muted", id: "no-alerts" }, "Nothing is firing.")),
    h("div", { class: "card" }, h("h2", {}, "Silences"),
      silences.length ? h("div", { class: "table-wrap" }, h("table", { id: "silences" }, h("tbody", {}, silenceRows))) : h("p", { class: "muted" }, "No silences."),
      h("h2", { class: "small" }, "New silence (starts now)"), form),
    recent.length ? h("div", { class: "card" }, h("h2", {}, "Recently resolved"), h("table", {}, h("tbody", {}, recent))) : null);
}

function parseDuration(text) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  let total = 0, m, used = "";
  while ((m = re.exec(text)) !== null) { total += parseFloat(m[1]) * mult[m[2]]; used += m[0]; }
  return used === text.trim() ? total : 0;
}

// ---- incident timeline -----------------------------------------------------------------------

function incident(a) {
  const events = [];
  events.push({ t: a.since, kind: "seen", what: `first degradation seen: ${a.reason}` });
  events.push({ t: a.firing_at, kind: "firing", what: `firing (${a.severity}): ${a.summary}` });
  for (const e of a.timeline || []) {
    const lower = e.what.toLowerCase();
    const kind = lower.startsWith("acknowledged") ? "ack" : lower.startsWith("resolved") || lower.startsWith("recovered") ? "resolve" : "note";
    // The engine's own firing, ack and resolve entries are shown once, from the alert's times.
    if (lower.startsWith("firing")) continue;
    if (kind === "ack" && a.acked_at && Math.abs(e.t - a.acked_at) < 1) continue;
    if (kind === "resolve" && a.resolved_at && Math.abs(e.t - a.resolved_at) < 1) continue;
    events.push({ t: e.t, kind, what: e.what });
  }
  for (const r of a.notifications || []) {
    const what = r.event === "trigger" ? `paged ${r.notifier}` : `${r.event} sent to ${r.notifier}`;
    events.push({ t: r.at, kind: r.event === "trigger" ? "page" : "note", what: `${what}: ${r.state}${r.attempts > 1 ? ` after ${r.attempts} attempts` : ""}${r.error ? ` (${r.error})` : ""}` });
  }
  if (a.acked_at) events.push({ t: a.acked_at, kind: "ack", what: `acknowledged by ${a.acked_by}` });
  if (a.resolved_at) events.push({ t: a.resolved_at, kind: "resolve", what: a.resolved_by ? `resolved by ${a.resolved_by}` : "resolved: recovered" });
  events.sort((x, y) => x.t - y.t);
  const stats = {
    detect: a.firing_at - a.since,
    lead: a.eta_seconds,
    ack: a.acked_at ? a.acked_at - a.firing_at : null,
    resolve: a.resolved_at ? a.resolved_at - a.firing_at : null,
  };
  return { events, stats };
}

function markdown(a, inc) {
  const lines = [
    `## Incident #${a.id}: ${a.probe} — ${a.reason}`,
    "",
    `- **Summary:** ${a.summary}`,
    `- **Severity:** ${a.severity} · **state:** ${a.state}`,
    `- **Target:** ${a.target}`,
    a.runbook ? `- **Runbook:** ${a.runbook}` : null,
    `- **Time to detect** (first degradation → firing): ${fmtDuration(inc.stats.detect)}`,
    inc.stats.lead !== null && inc.stats.lead !== undefined ? `- **Detection lead time** (predicted time to the limit when it fired): ${fmtDuration(inc.stats.lead)}` : null,
    `- **Time to acknowledge:** ${fmtDuration(inc.stats.ack)}`,
    `- **Time to resolve:** ${fmtDuration(inc.stats.resolve)}`,
    "",
    "### Timeline (UTC)",
    "",
    "| time | event |",
    "|---|---|",
    ...inc.events.map((e) => `| ${fmtIso(e.t)} | ${e.what.replace(/\|/g, "\\|")} |`),
    "",
  ];
  return lines.filter((l) => l !== null).join("\n");
}

async function renderIncident(id, seq) {
  const a = await get("/alerts/" + encodeURIComponent(id));
  if (seq !== renderSeq) return;
  const inc = incident(a);
  const out = h("textarea", { id: "markdown", readonly: true, hidden: true, "aria-label": "Markdown export" });
  const exportButton = h("button", { id: "export-markdown", onclick: async () => {
    out.value = markdown(a, inc);
    out.hidden = false;
    out.select();
    try {
      await navigator.clipboard.writeText(out.value);
      toast("Markdown copied");
    } catch (_) {
      /* The text stays selected in the box for a manual copy. */
    }
  } }, "Export as Markdown");
  setView(
    h("p", {}, h("a", { href: "#/alerts" }, "‹ alerts")),
    h("div", { class: "card" },
      h("div", { class: "row" }, statusBadge(a.state), h("h1", {}, `#${a.id} ${a.probe}: ${a.reason}`)),
      h("p", {}, a.summary),
      h("p", { class: "muted small" }, a.message),
      a.runbook ? h("p", {}, "Runbook: ", /^https?:\/\//.test(a.runbook) ? h("a", { href: a.runbook, rel: "noopener" }, a.runbook) : a.runbook) : null,
      h("div", { class: "stats", id: "incident-stats" },
        h("div", {}, "Time to detect", h("b", {}, fmtDuration(inc.stats.detect))),
        h("div", {}, "Detection lead time", h("b", {}, inc.stats.lead !== null && inc.stats.lead !== undefined ? fmtDuration(inc.stats.lead) : "—")),
        h("div", {}, "Time to acknowledge", h("b", {}, fmtDuration(inc.stats.ack))),
        h("div", {}, "Time to resolve", h("b", {}, fmtDuration(inc.stats.resolve))))),
    h("div", { class: "card" }, h("h2", {}, "Timeline"),
      h("ol", { class: "timeline", id: "timeline" }, inc.events.map((e) =>
        h("li", { class: "k-" + e.kind }, h("span", { class: "when", title: fmtIso(e.t) }, fmtTime(e.t)), e.what)))),
    h("div", { class: "card" }, h("div", { class: "row" }, exportButton, h("span", { class: "muted small" }, "a post-incident snippet with the timeline and the times above")), out));
}

// ---- routing ---------------------------------------------------------------------------------

async function route() {
  const seq = ++renderSeq;
  clearTimeout(refreshTimer);
  const { parts, params } = parseHash();
  const section = parts[0] || "overview";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === (section === "alert" ? "alerts" : section === "probe" ? "overview" : section));
  }
  try {
    if (section === "probe" && parts[1]) {
      document.title = parts[1] + " · slowburn";
      await renderProbe(parts[1], params, seq);
    } else if (section === "alerts") {
      document.title = "Alerts · slowburn";
      await renderAlerts(seq);
    } else if (section === "alert" && parts[1]) {
      document.title = "Alert #" + parts[1] + " · slowburn";
      await renderIncident(parts[1], seq);
    } else {
      document.title = "slowburn";
      await renderOverview(params, seq);
    }
    if (seq === renderSeq) stamp();
  } catch (e) {
    if (seq === renderSeq) setView(errorBox(e));
  }
  updateAlertBadge();
  // Views refresh themselves, except an incident (it is read, and exported, as it stands) or
  // while the token dialog or a form field is in use.
  if (seq === renderSeq && section !== "alert") {
    refreshTimer = setTimeout(() => {
      const busy = !document.getElementById("token-dialog").hidden ||
        (document.activeElement && ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName) && document.activeElement.id !== "search");
      if (busy) refreshTimer = setTimeout(route, REFRESH_MS);
      else route();
    }, REFRESH_MS);
  }
}

async function updateAlertBadge() {
  try {
    const active = await get("/alerts?state=firing");
    const badge = document.getElementById("alert-badge");
    badge.hidden = active.length === 0;
    badge.textContent = String(active.length);
  } catch (_) {
    /* The badge is a hint; the alerts page shows errors. */
  }
}

window.addEventListener("hashchange", route);
route();
