// Sluice admin page. Plain browser JavaScript, no dependencies: it reads
// the admin API with the token the user gave and renders it. Every value
// from the API is inserted as text (textContent), never as markup.
"use strict";

(function () {
  const API = "/admin/v1";
  const TOKEN_KEY = "sluice.admin.token";
  const REFRESH_MS = 10000;
  const USAGE_REFRESH_MS = 30000;
  const COLORS = ["#0969da", "#1f883d", "#b76e00", "#8250df", "#cf222e", "#1b7c83", "#9a6700", "#57606a"];

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let usageTimer = null;

  // ---- token -------------------------------------------------------------

  // A token in the fragment (#token=...) is for scripted use: keep it in
  // sessionStorage and take it out of the address bar and history.
  function takeFragmentToken() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return;
    let tok = m[1];
    try { tok = decodeURIComponent(tok); } catch (e) { /* keep it raw */ }
    sessionStorage.setItem(TOKEN_KEY, tok);
    history.replaceState(null, "", location.pathname + location.search);
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function forget(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stop();
    showLogin(message);
  }

  // ---- API ---------------------------------------------------------------

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, params) {
    let url = API + path;
    if (params) url += "?" + new URLSearchParams(params).toString();
    const resp = await fetch(url, {
      headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) msg = body.error.message;
      } catch (e) { /* not JSON */ }
      throw new APIError(resp.status, msg);
    }
    return resp.json();
  }

  // listAll follows the list endpoints' pagination.
  async function listAll(kind) {
    const out = [];
    let after = "";
    for (let i = 0; i < 100; i++) {
      const params = { limit: "1000" };
      if (after) params.after = after;
      const page = await api("/" + kind, params);
      out.push(...(page.items || []));
      if (!page.next) break;
      after = page.next;
    }
    return out;
  }

  // ---- DOM helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "title") e.title = v;
      else e.dataset[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function td(value, cls) { return el("td", cls ? { class: cls } : null, value); }

  function fillTable(id, rows, emptyText, columns) {
    const body = $(id).tBodies[0];
    body.replaceChildren();
    if (rows.length === 0) {
      const cell = el("td", null, emptyText);
      cell.colSpan = columns;
      body.append(el("tr", { class: "empty" }, cell));
      return;
    }
    for (const r of rows) body.append(r);
  }

  function pill(text, kind) { return el("span", { class: "pill " + kind }, text); }

  function fmtNum(n) {
    if (n === undefined || n === null) return "";
    if (n < 0) return "∞";
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return String(Math.round(n));
  }

  function fmtTime(s) {
    if (!s) return "";
    const d = new Date(s);
    return isNaN(d) ? String(s) : d.toLocaleString();
  }

  function fmtLimits(l) {
    if (!l) return "none";
    const parts = [];
    if (l.rpm) parts.push(fmtNum(l.rpm) + " rpm");
    if (l.tpm) parts.push(fmtNum(l.tpm) + " tpm");
    if (l.tokens_per_hour) parts.push(fmtNum(l.tokens_per_hour) + " tok/h");
    if (l.tokens_per_day) parts.push(fmtNum(l.tokens_per_day) + " tok/day");
    if (l.max_concurrent) parts.push(l.max_concurrent + " concurrent");
    return parts.length ? parts.join(", ") : "none";
  }

  // share renders used/capacity of one window as a bar and numbers.
  function share(used, cap, windowSeconds) {
    const cell = el("td");
    if (cap < 0) {
      cell.append(el("span", { class: "muted" }, "unlimited"));
      if (used > 0) cell.append(" (" + fmtNum(used) + " used)");
      return cell;
    }
    const frac = cap > 0 ? Math.min(used / cap, 1) : (used > 0 ? 1 : 0);
    const fill = el("span", { class: frac >= 1 ? "full" : frac >= 0.8 ? "hot" : "" });
    fill.style.width = (frac * 100).toFixed(0) + "%";
    cell.append(el("span", { class: "bar" }, fill), fmtNum(used) + " / " + fmtNum(cap) + " per " + windowSeconds + "s");
    return cell;
  }

  // ---- views -------------------------------------------------------------

  function renderCluster(info) {
    const st = info.status || {};
    $("node-label").textContent = "node " + (st.id || "?");
    const facts = [
      ["This node", st.id], ["Raft state", st.raft_state], ["Leader", st.leader_id || "none"],
      ["Term", st.term], ["Commit index", st.commit_index], ["Applied index", st.applied_index],
      ["Config version", info.config_version], ["Voters", st.voters],
    ];
    const dl = $("raft");
    dl.replaceChildren();
    for (const [k, v] of facts) dl.append(el("div", null, el("dt", null, k), el("dd", null, v === undefined ? "" : v)));

    const raft = new Map((st.servers || []).map((s) => [s.id, s]));
    const members = (info.members || []).slice().sort((a, b) => a.id.localeCompare(b.id));
    const rows = members.map((m) => {
      const rs = raft.get(m.id);
      let role = rs ? rs.suffrage : "not in raft";
      if (m.id === st.leader_id) role = "leader";
      const stateKind = m.state === "alive" ? "ok" : m.state === "suspect" ? "warn" : "bad";
      return el("tr", { member: m.id },
        td(m.id), td(m.name || ""), el("td", null, pill(m.state, stateKind)), td(role),
        td(m.region || ""), td(m.zone || ""), td(m.api_addr || ""), td(m.admin_addr || ""),
        td(m.version || ""), td(fmtTime(m.since)));
    });
    fillTable("members", rows, "no members", 10);
  }

  const stateKinds = { healthy: "ok", cooling: "warn", probing: "warn", circuit_open: "bad", unusable: "bad" };

  function renderDeployments(res) {
    const rows = [];
    const failed = [];
    for (const n of res.nodes || []) {
      if (n.error) failed.push(n.node + ": " + n.error);
      for (const d of n.deployments || []) {
        let state = d.state.replace("_", " ");
        if (d.state === "cooling") state += " " + d.cooling_seconds.toFixed(1) + "s";
        rows.push(el("tr", { deployment: d.name, node: n.node },
          td(n.node), td(d.name), td(d.provider + " (" + d.provider_kind + ")"), td(d.region || ""),
          el("td", { title: "circuit " + d.circuit }, pill(state, stateKinds[d.state] || "info")),
          td(d.latency_ms > 0 ? d.latency_ms.toFixed(0) + " ms" : "–", "num"),
          td(d.in_flight, "num"), td(d.rpm ? fmtNum(d.rpm) : "∞", "num"), td(d.tpm ? fmtNum(d.tpm) : "∞", "num"),
          share(d.used_requests, d.share_requests, d.request_window_seconds),
          share(d.used_tokens, d.share_tokens, d.token_window_seconds)));
      }
    }
    fillTable("deployment-table", rows, "no deployments", 11);
    const note = $("deployments-note");
    note.hidden = failed.length === 0;
    note.textContent = failed.length ? "Not answered: " + failed.join("; ") : "";
  }

  function renderModels(models) {
    const rows = models.map((m) => el("tr", { model: m.name },
      td(m.name), td(m.kind || "chat"), td((m.deployments || []).join(", ")), td((m.fallbacks || []).join(", "))));
    fillTable("model-table", rows, "no models", 4);
  }

  function renderTenants(tenants, keys) {
    const perTenant = new Map();
    for (const k of keys) perTenant.set(k.tenant, (perTenant.get(k.tenant) || 0) + 1);
    const rows = tenants.map((t) => el("tr", { tenant: t.name },
      td(t.name), td(t.class || "interactive"), td(t.policy || "default"), td(fmtLimits(t.limits)),
      td(perTenant.get(t.name) || 0, "num")));
    fillTable("tenant-table", rows, "no tenants", 5);
    // Keys show their id, owner, scope and state only: never a secret and
    // never a hash (not even the prefix the API returns).
    const now = Date.now();
    const krows = keys.map((k) => {
      const expired = k.expires_at && Date.parse(k.expires_at) < now;
      const status = k.disabled ? pill("disabled", "bad") : expired ? pill("expired", "warn") : pill("active", "ok");
      return el("tr", { key: k.id },
        td(k.id), td(k.tenant), td((k.models || []).join(", ") || "all"), td(fmtLimits(k.limits)),
        td(k.expires_at ? fmtTime(k.expires_at) : "never"), el("td", null, status));
    });
    fillTable("key-table", krows, "no keys", 6);
  }

  // ---- usage -------------------------------------------------------------

  // The usage endpoint answers {rows: [{bucket, <group_by field>,
  // requests, prompt_tokens, completion_tokens, ...}], total}. Rows are read
  // tolerantly, so that a renamed field degrades the chart rather than
  // breaking the page: a row is a bucket start (bucket, start, time, ts or
  // from; RFC 3339 or Unix seconds or milliseconds), a group (the group_by
  // field itself, or group, or key) and counts (prompt_tokens plus
  // completion_tokens, or total_tokens or tokens; requests or count).
  function usageRows(data, groupBy) {
    let rows = Array.isArray(data) ? data : null;
    if (!rows && data) {
      for (const k of ["buckets", "rows", "items", "data", "usage", "series", "results"]) {
        if (Array.isArray(data[k])) { rows = data[k]; break; }
      }
    }
    if (!rows) return [];
    const out = [];
    for (const r of rows) {
      if (r && Array.isArray(r.points || r.buckets)) {
        // A series per group: {group, points: [...]}.
        const g = groupOf(r, groupBy);
        for (const p of r.points || r.buckets) {
          const x = usageRow(p, groupBy);
          if (x) { if (!x.groupSet) x.group = g; out.push(x); }
        }
        continue;
      }
      const x = usageRow(r, groupBy);
      if (x) out.push(x);
    }
    return out;
  }

  function groupOf(r, groupBy) {
    let g = r[groupBy] ?? r.group ?? r.key;
    if (g === undefined && r.groups && typeof r.groups === "object") g = r.groups[groupBy];
    return g === undefined || g === null || g === "" ? "(all)" : String(g);
  }

  function usageRow(r, groupBy) {
    if (!r || typeof r !== "object") return null;
    const tv = r.bucket ?? r.start ?? r.time ?? r.ts ?? r.from ?? r.t;
    let t = NaN;
    if (typeof tv === "number") t = tv > 1e12 ? tv : tv * 1000;
    else if (typeof tv === "string") t = /^\d+$/.test(tv) ? Number(tv) * (tv.length > 12 ? 1 : 1000) : Date.parse(tv);
    if (isNaN(t)) return null;
    let tokens = r.total_tokens ?? r.tokens;
    if (tokens === undefined) tokens = (r.prompt_tokens || 0) + (r.completion_tokens || 0);
    const requests = r.requests ?? r.count ?? 0;
    const hasGroup = r.group !== undefined || r.key !== undefined || r[groupBy] !== undefined || (r.groups && r.groups[groupBy] !== undefined);
    return { t, group: groupOf(r, groupBy), groupSet: hasGroup, tokens: Number(tokens) || 0, requests: Number(requests) || 0 };
  }

  async function loadUsage() {
    const range = $("usage-range").value;
    const groupBy = $("usage-group").value;
    const metric = $("usage-metric").value;
    const step = range === "day" ? 3600e3 : 60e3;
    const n = range === "day" ? 24 : 60;
    const to = Math.ceil(Date.now() / step) * step;
    const from = to - n * step;
    let data;
    try {
      data = await api("/usage", {
        from: new Date(from).toISOString(), to: new Date(to).toISOString(),
        group_by: groupBy, bucket: range === "day" ? "hour" : "minute", format: "json",
      });
    } catch (e) {
      if (e instanceof APIError && (e.status === 404 || e.status === 501)) {
        drawUsage([], from, step, n, metric);
        return;
      }
      throw e;
    }
    drawUsage(usageRows(data, groupBy), from, step, n, metric);
  }

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // drawUsage draws stacked bars, one per bucket, one colour per group
  // (the largest seven groups, the rest as "other").
  function drawUsage(rows, from, step, n, metric) {
    const chart = $("usage-chart");
    const legend = $("usage-legend");
    chart.replaceChildren();
    legend.replaceChildren();
    const totals = new Map();
    for (const r of rows) totals.set(r.group, (totals.get(r.group) || 0) + r[metric]);
    const sum = [...totals.values()].reduce((a, b) => a + b, 0);
    $("usage-empty").textContent = "no usage data";
    $("usage-empty").hidden = sum > 0;
    if (sum === 0) return;
    const groups = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
    const shown = groups.slice(0, 7);
    const other = groups.length > 7;
    if (other) shown.push("other");
    const idx = new Map(shown.map((g, i) => [g, i]));
    const buckets = Array.from({ length: n }, () => new Array(shown.length).fill(0));
    for (const r of rows) {
      const b = Math.floor((r.t - from) / step);
      if (b < 0 || b >= n) continue;
      const gi = idx.has(r.group) ? idx.get(r.group) : idx.get("other");
      buckets[b][gi] += r[metric];
    }
    const maxV = Math.max(1, ...buckets.map((b) => b.reduce((a, c) => a + c, 0)));
    const W = 900, H = 260, L = 56, R = 10, T = 10, B = 26;
    const pw = W - L - R, ph = H - T - B, bw = pw / n;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": "usage by " + $("usage-group").value });
    for (let i = 0; i <= 4; i++) {
      const y = T + ph - (ph * i) / 4;
      root.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "axis" }));
      root.append(svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmtNum((maxV * i) / 4)));
    }
    buckets.forEach((vals, b) => {
      let y = T + ph;
      vals.forEach((v, gi) => {
        if (v <= 0) return;
        const h = (v / maxV) * ph;
        y -= h;
        const rect = svg("rect", { x: L + b * bw + 1, y, width: Math.max(bw - 2, 1), height: h, fill: COLORS[gi % COLORS.length] });
        rect.append(svg("title", null, `${shown[gi]}: ${fmtNum(v)} ${metric} at ${new Date(from + b * step).toLocaleString()}`));
        root.append(rect);
      });
    });
    const ticks = 6;
    for (let i = 0; i <= ticks; i++) {
      const t = from + (n * step * i) / ticks;
      const d = new Date(t);
      const label = step >= 3600e3 ? d.getHours() + ":00" : d.toTimeString().slice(0, 5);
      const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
      root.append(svg("text", { x: L + (pw * i) / ticks, y: H - 8, "text-anchor": anchor }, label));
    }
    chart.append(root);
    const named = groups.slice(0, 7).reduce((a, g) => a + totals.get(g), 0);
    shown.forEach((g, gi) => {
      const sw = svg("svg", { viewBox: "0 0 12 12" });
      sw.append(svg("rect", { width: 12, height: 12, fill: COLORS[gi % COLORS.length] }));
      const total = other && gi === shown.length - 1 ? sum - named : totals.get(g);
      legend.append(el("li", { group: g }, sw, g + " (" + fmtNum(total) + ")"));
    });
  }

  // ---- lifecycle ---------------------------------------------------------

  function showError(msg) {
    const e = $("error");
    e.hidden = !msg;
    e.textContent = msg || "";
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("nav").hidden = true;
    $("logout").hidden = true;
    $("refresh").hidden = true;
    $("login").hidden = false;
    showError(message || "");
    $("token").focus();
  }

  function stop() {
    clearTimeout(timer);
    clearTimeout(usageTimer);
    timer = usageTimer = null;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const all = $("all-nodes").checked;
      const [info, deps, models, tenants, keys] = await Promise.all([
        api("/cluster"),
        api("/deployments/status", all ? { all: "1" } : null).catch((e) => {
          if (e instanceof APIError && e.status === 501) return { nodes: [] };
          throw e;
        }),
        listAll("models"), listAll("tenants"), listAll("keys"),
      ]);
      renderCluster(info);
      renderDeployments(deps);
      renderModels(models);
      renderTenants(tenants, keys);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      showError("");
      document.body.dataset.loaded = "true";
    } catch (e) {
      if (e instanceof APIError && e.status === 401) { forget("The token was refused: " + e.message); return; }
      showError("Could not load: " + e.message);
    }
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function refreshUsage() {
    clearTimeout(usageTimer);
    try {
      await loadUsage();
      document.body.dataset.usageLoaded = "true";
    } catch (e) {
      if (e instanceof APIError && e.status === 401) { forget("The token was refused: " + e.message); return; }
      $("usage-empty").hidden = false;
      $("usage-empty").textContent = "no usage data (" + e.message + ")";
    }
    usageTimer = setTimeout(refreshUsage, USAGE_REFRESH_MS);
  }

  function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("nav").hidden = false;
    $("logout").hidden = false;
    $("refresh").hidden = false;
    refresh();
    refreshUsage();
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeFragmentToken();
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token").value.trim();
      if (!v) return;
      sessionStorage.setItem(TOKEN_KEY, v);
      $("token").value = "";
      start();
    });
    $("logout").addEventListener("click", () => forget(""));
    $("refresh").addEventListener("click", () => { refresh(); refreshUsage(); });
    $("all-nodes").addEventListener("change", refresh);
    for (const id of ["usage-range", "usage-group", "usage-metric"]) $(id).addEventListener("change", refreshUsage);
    if (token()) start(); else showLogin("");
  });
})();
