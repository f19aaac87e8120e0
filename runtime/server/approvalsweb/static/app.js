// airlock approvals page. Every value from the executor is attacker-
// influenced (a planner chooses the arguments): it is only ever set with
// textContent, never parsed as HTML.
"use strict";

(function () {
  const CSRF_KEY = "airlock.csrf";
  const POLL_MS = 2000;
  let csrf = sessionStorage.getItem(CSRF_KEY) || "";
  let timer = null;
  let busy = false;

  const $ = (id) => document.getElementById(id);

  function setResult(text, isError) {
    const s = $("result");
    s.textContent = text;
    s.className = isError ? "error" : "";
  }

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.className = isError ? "error" : "muted";
  }

  async function api(method, path, body) {
    const opts = { method: method, headers: { "X-Airlock-CSRF": csrf }, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    let data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    if (!resp.ok) {
      const err = new Error(data.error || ("HTTP " + resp.status));
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  async function exchangeToken() {
    const m = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(location.hash);
    // The token is single-use: drop it from the address bar and history.
    history.replaceState(null, "", location.pathname);
    if (!m) { return; }
    const resp = await fetch("/api/session", {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: m[1] }),
    });
    let data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    if (!resp.ok) { throw new Error(data.error || ("HTTP " + resp.status)); }
    csrf = data.csrf;
    sessionStorage.setItem(CSRF_KEY, csrf);
  }

  function field(dl, name, value, cls) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (cls) { dd.className = cls; }
    dl.append(dt, dd);
    return dd;
  }

  function card(a) {
    const el = document.createElement("article");
    el.className = "approval";
    el.dataset.id = a.id;
    const h = document.createElement("h2");
    h.textContent = a.tool + (a.tool_version ? " " + a.tool_version : "");
    el.append(h);
    const dl = document.createElement("dl");
    field(dl, "risk", a.risk, "risk risk-" + a.risk);
    field(dl, "requested by", a.caller, "caller");
    field(dl, "task", a.task_id || "(none)", "task");
    field(dl, "rules", (a.rules || []).join(", "), "rules");
    field(dl, "message", a.message || "", "message");
    if (a.justification) { field(dl, "justification", a.justification, "justification"); }
    field(dl, "expires", a.expires_at ? new Date(a.expires_at).toLocaleString() + " (" + a.expires_at + ")" : "", "expires");
    field(dl, "approval", a.id, "approval-id");
    field(dl, "arguments sha256", a.arguments_sha256, "sha");
    el.append(dl);
    const pre = document.createElement("pre");
    pre.className = "arguments";
    pre.textContent = a.arguments;
    el.append(pre);

    const actions = document.createElement("div");
    actions.className = "actions";
    const approve = document.createElement("button");
    approve.type = "button";
    approve.className = "approve";
    approve.textContent = "Approve";
    const reason = document.createElement("input");
    reason.type = "text";
    reason.className = "reason";
    reason.placeholder = "reason (required to deny)";
    reason.maxLength = 1024;
    const deny = document.createElement("button");
    deny.type = "button";
    deny.className = "deny";
    deny.textContent = "Deny";
    approve.addEventListener("click", () => decide(a, "approve", reason.value, el));
    deny.addEventListener("click", () => {
      if (!reason.value.trim()) { setResult("give a reason to deny " + a.id, true); reason.focus(); return; }
      decide(a, "deny", reason.value, el);
    });
    actions.append(approve, reason, deny);
    el.append(actions);
    return el;
  }

  async function decide(a, verb, reason, el) {
    busy = true;
    for (const b of el.querySelectorAll("button")) { b.disabled = true; }
    try {
      const r = await api("POST", "/api/approvals/" + encodeURIComponent(a.id) + "/" + verb, { reason: reason });
      setResult((verb === "approve" ? "approved " : "denied ") + r.approval.id + " (" + a.tool + ")", false);
      el.remove();
    } catch (e) {
      setResult("could not " + verb + " " + a.id + ": " + e.message, true);
      for (const b of el.querySelectorAll("button")) { b.disabled = false; }
      if (e.status === 401) { stop(); }
    } finally {
      busy = false;
    }
    refresh();
  }

  function render(list) {
    const box = $("approvals");
    // Keep what the operator is typing: only add and remove cards.
    const want = new Map(list.map((a) => [a.id, a]));
    for (const el of Array.from(box.children)) {
      if (!want.has(el.dataset.id)) { el.remove(); }
    }
    const have = new Set(Array.from(box.children).map((el) => el.dataset.id));
    for (const a of list) {
      if (!have.has(a.id)) { box.append(card(a)); }
    }
  }

  async function refresh() {
    if (busy) { return; }
    try {
      const data = await api("GET", "/api/approvals");
      $("who").textContent = "signed in as " + data.caller;
      render(data.approvals);
      const n = data.approvals.length;
      setStatus(n === 0 ? "no pending approvals" : n + " pending approval" + (n === 1 ? "" : "s"), false);
    } catch (e) {
      setStatus(e.message, true);
      if (e.status === 401) { stop(); }
    }
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    sessionStorage.removeItem(CSRF_KEY);
  }

  async function start() {
    try {
      await exchangeToken();
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
    if (!csrf) {
      setStatus("no session: run `airlock approvals open` and open the link it prints", true);
      return;
    }
    await refresh();
    timer = setInterval(refresh, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
