// Rafting's dashboard. Plain JavaScript, no build step, no dependency.
//
// Rules this file keeps (server/ui's doc.go says why):
// - Everything the servers send is put in the page as text: elements are
//   made with createElement and filled with text nodes, never with
//   innerHTML, insertAdjacentHTML or document.write.
// - The token lives in this tab's sessionStorage and goes only into an
//   Authorization header; never into a URL.
"use strict";

(function () {
  const TOKEN_KEY = "rafting.token";
  const $ = (id) => document.getElementById(id);

  const state = {
    token: "",
    kind: "",           // admin | read-only | tenant
    tenant: "",         // whose services the feed follows
    chosen: "",         // the admin's choice in the tenant menu
    cluster: null,
    tenants: [],
    list: null,         // the tenant's service list
    services: new Map(), // name -> GET .../services/{s} answer
    sessions: null,     // GET .../sessions's answer: the first page
    tab: "",
    feed: null,         // AbortController of the feed
    retry: 0,
  };

  // el makes an element; children that are strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "onclick") e.addEventListener("click", v);
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else if (k === "title" || k === "value" || k === "max" || k === "min" || k === "type") e.setAttribute(k, String(v));
      else if (k === "hidden" || k === "disabled") e[k] = Boolean(v);
    }
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  // patch makes parent's children exactly nodes, in order, removing and
  // inserting only those that differ: an element that did not change stays
  // in the page, so a click on it is never lost to a re-render.
  function patch(parent, nodes) {
    const keep = new Set(nodes);
    for (const c of [...parent.children]) if (!keep.has(c)) c.remove();
    nodes.forEach((n, i) => { if (parent.children[i] !== n) parent.insertBefore(n, parent.children[i] || null); });
  }

  // memo returns the element built for (scope, id) while its key is the
  // same, else builds it anew; sweep forgets the ids no longer shown.
  const memos = new Map();
  function memo(scope, id, key, build) {
    if (!memos.has(scope)) memos.set(scope, new Map());
    const m = memos.get(scope).get(id);
    if (m && m.key === key) return m.node;
    const node = build();
    memos.get(scope).set(id, { key, node });
    return node;
  }
  function sweep(scope, ids) {
    const m = memos.get(scope);
    if (!m) return;
    const live = new Set(ids);
    for (const id of [...m.keys()]) if (!live.has(id)) m.delete(id);
  }

  function table(id, head, rows) {
    const t = $(id);
    const headKey = head.join("\u0000");
    let thead = t.tHead, tbody = t.tBodies[0];
    if (!thead || thead.dataset.key !== headKey) thead = el("thead", { "data-key": headKey }, el("tr", {}, ...head.map((h) => el("th", {}, h))));
    if (!tbody) tbody = el("tbody", {});
    patch(tbody, rows.length > 0 ? rows : [el("tr", {}, el("td", { class: "muted" }, "none"))]);
    patch(t, [thead, tbody]);
  }

  function when(s) {
    if (!s) return "";
    const d = new Date(s);
    if (isNaN(d)) return String(s);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function setProblem(msg) { $("problem").textContent = msg || ""; }

  // ---- login and the feed --------------------------------------------

  function showLogin(msg) {
    stopFeed();
    state.token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("who").textContent = "";
    $("login-error").textContent = msg || "";
    setLive(false, "offline");
  }

  function startApp(token) {
    state.token = token;
    state.kind = "";
    state.tab = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    startFeed();
  }

  function setLive(on, text) {
    const b = $("live");
    b.textContent = text;
    b.classList.toggle("off", !on);
  }

  function stopFeed() {
    if (state.feed) state.feed.abort();
    state.feed = null;
  }

  async function startFeed() {
    stopFeed();
    const ctl = new AbortController();
    state.feed = ctl;
    state.services = new Map();
    state.list = null;
    state.sessions = null;
    let path = "/ui/events";
    if (state.chosen) path += "?tenant=" + encodeURIComponent(state.chosen);
    let resp;
    try {
      resp = await fetch(path, { headers: { Authorization: "Bearer " + state.token }, signal: ctl.signal, cache: "no-store" });
    } catch (e) {
      if (ctl.signal.aborted) return;
      return retryFeed(ctl, "cannot reach the server");
    }
    // Only a 401 means the token is not known: back to the login. A 403
    // is "this token may not", shown and not asked again (the answer
    // would be the same; log out to use another token); anything else (a
    // node mid-upgrade without the feed, one not ready) is asked again.
    if (resp.status === 401) return showLogin("This token is not accepted: wrong, revoked or rotated out.");
    if (!resp.ok) {
      let msg = "HTTP " + resp.status;
      try { msg = (await resp.json()).error.message || msg; } catch (e) { /* keep it */ }
      if (resp.status === 403) {
        setLive(false, "not allowed");
        setProblem("Not allowed for this token: " + msg);
        return;
      }
      return retryFeed(ctl, msg);
    }
    setLive(true, "live");
    state.retry = 0;
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (name && data) dispatch(name, JSON.parse(data));
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    retryFeed(ctl, "the live feed ended");
  }

  function retryFeed(ctl, why) {
    if (state.feed !== ctl || !state.token) return;
    setLive(false, "reconnecting: " + why);
    state.retry = Math.min(state.retry + 1, 5);
    setTimeout(() => { if (state.feed === ctl) startFeed(); }, state.retry * 500);
  }

  function dispatch(name, d) {
    switch (name) {
      case "hello":
        state.kind = d.kind;
        $("who").textContent = d.kind === "tenant" ? "tenant " + d.tenant : d.kind === "read-only" ? "read-only admin" : "admin";
        document.body.dataset.kind = d.kind;
        $("tabs").querySelector('[data-tab="nodes"]').hidden = d.kind === "tenant";
        $("tenant-pick").hidden = d.kind === "tenant";
        if (!state.tab) showTab(d.kind === "tenant" ? "services" : "nodes");
        break;
      case "cluster": state.cluster = d; renderNodes(); break;
      case "tenants": state.tenants = d.tenants || []; renderTenants(); renderServices(); break;
      case "tenant":
        state.tenant = d.name;
        $("services-tenant").textContent = d.name;
        $("sessions-tenant").textContent = d.name;
        renderTenantMenu();
        renderServices();
        break;
      case "services": state.list = d; setProblem(""); renderServices(); break;
      case "service": state.services.set(d.service, d); renderServices(); break;
      case "gone": state.services.delete(d.service); renderServices(); break;
      case "sessions": state.sessions = d; renderSessions(); break;
      case "problem":
        if (d.status === 401) return showLogin("This token is not accepted any more: " + d.error);
        setProblem(d.what + ": " + d.error);
        break;
    }
  }

  // ---- views -----------------------------------------------------------

  function showTab(tab) {
    state.tab = tab;
    for (const b of $("tabs").querySelectorAll("button[data-tab]")) b.classList.toggle("active", b.dataset.tab === tab);
    for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + tab;
  }

  function renderNodes() {
    const c = state.cluster;
    if (!c) return;
    $("cluster-line").textContent = "answered by node " + c.node_id + (c.state_version ? " · cluster state version " + c.state_version : "") +
      (c.replicas ? " · " + c.replicas + " replicas a tenant" : "") + (c.ready ? " · ready" : " · not ready");
    // Placement: the tenant replicas the meta shard places on each node
    // (counted from the shards where the answer does not say).
    const holds = new Map();
    for (const s of c.shards || []) if (s.tenant) for (const n of Object.values(s.replicas || {})) holds.set(n, (holds.get(n) || 0) + 1);
    table("nodes", ["node", "zone", "API address", "Raft address", "health", "build", "tenant replicas", "leads", "lag", "last contact"],
      (c.nodes || []).map((n) => el("tr", { "data-node": n.id },
        el("td", {}, String(n.id), n.id === c.node_id ? " (this node)" : ""),
        el("td", { class: "zone" }, n.zone || ""),
        el("td", { class: "mono" }, n.api_address),
        el("td", { class: "mono" }, n.raft_address),
        el("td", { class: n.health === "ok" || n.health === "ready" ? "health-ok" : "health-bad" }, n.health || "?"),
        el("td", {}, n.build ? n.build.version : "?"),
        el("td", { class: "replicas" }, String(typeof n.replicas === "number" ? n.replicas : holds.get(n.id) || 0)),
        el("td", { class: "leads" }, String(n.leaders || 0)),
        el("td", {}, String(n.lag || 0)),
        el("td", {}, n.last_contact_ms < 0 ? "never" : n.last_contact_ms + " ms ago"))));
    const shards = (c.shards || []).slice().sort((a, b) => a.shard_id - b.shard_id);
    table("shards", ["shard", "tenant", "leader", "term", "applied", "replicas (replica → node)", "move under way"],
      shards.map((s) => {
        const learners = new Set((s.non_voting || []).map(String));
        const mv = s.move;
        return el("tr", { "data-shard": s.shard_id },
          el("td", {}, String(s.shard_id)),
          el("td", {}, s.tenant || "(meta)"),
          el("td", { class: "leader" }, s.leader_node ? "node " + s.leader_node : "none"),
          el("td", {}, String(s.term)),
          el("td", {}, String(s.applied_index)),
          el("td", { class: "mono" }, Object.entries(s.replicas || {}).map(([r, n]) => r + "→" + n + (learners.has(r) ? " (non-voting)" : "")).join(", ")),
          el("td", { class: "move" }, mv ? mv.step + (mv.from_node ? " from node " + mv.from_node : "") + (mv.to_node ? " to node " + mv.to_node : "") +
            (mv.reason ? " (" + mv.reason + ")" : "") + " since " + when(mv.started_at) : ""));
      }));
  }

  const countQuotas = [
    ["services", "max_services"], ["instances", "max_instances"], ["sessions", "max_sessions"],
    ["watchers", "max_watchers"], ["keys", "max_keys"], ["kv_bytes", "max_kv_bytes"],
  ];

  function usageCell(used, max) {
    const u = used || 0;
    const td = el("td", {}, u + (max ? " / " + max : ""));
    if (max) td.append(" ", el("meter", { min: 0, max: max, value: Math.min(u, max) }));
    return td;
  }

  function renderTenants() {
    const admin = state.kind === "admin";
    const head = ["tenant", "shard", "epoch", "created"].concat(countQuotas.map(([u]) => u), ["rates", ""]);
    table("tenants", head, state.tenants.map((t) => memo("tenant", t.name, state.kind + JSON.stringify(t), () => {
      const q = t.quotas || {}, u = t.usage || {};
      const rates = "requests " + (q.requests_per_second || "?") + "/s (burst " + (q.burst || "?") + "), writes " + (q.writes_per_second || "?") + "/s";
      const actions = el("td", {});
      if (admin) actions.append(el("button", { class: "danger", "data-action": "rotate", onclick: () => rotate(t.name) }, "Rotate token"));
      if (t.previous_token_valid_until) actions.append(el("div", { class: "muted" }, "previous token valid until " + when(t.previous_token_valid_until)));
      return el("tr", { "data-tenant": t.name },
        el("td", {}, t.name, t.restoring ? " (restoring)" : ""),
        el("td", {}, String(t.shard_id)),
        el("td", {}, String(t.epoch)),
        el("td", {}, when(t.created_at)),
        ...countQuotas.map(([uk, qk]) => usageCell(u[uk], q[qk])),
        el("td", { class: "muted" }, rates),
        actions);
    })));
    sweep("tenant", state.tenants.map((t) => t.name));
    renderTenantMenu();
    renderSessions();
  }

  function renderTenantMenu() {
    const sel = $("tenant-select");
    const names = state.tenants.map((t) => t.name);
    if (state.tenant && !names.includes(state.tenant)) names.push(state.tenant);
    sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    sel.value = state.tenant;
  }

  function metaText(m) {
    return Object.entries(m || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => k + "=" + v).join("\n");
  }

  function renderServices() {
    const box = $("services");
    const canAct = state.kind === "admin" || state.kind === "tenant";
    const names = ((state.list && state.list.services) || []).map((s) => s.name);
    for (const n of state.services.keys()) if (!names.includes(n)) names.push(n);
    names.sort();
    const cards = names.map((name) => {
      const sum = ((state.list && state.list.services) || []).find((s) => s.name === name);
      const s = state.services.get(name);
      // A followed service's card changes only with its own answer, or its
      // tenant (its buttons act on the tenant it was drawn for).
      const tenant = state.tenant;
      const key = state.kind + tenant + "\n" + (s ? JSON.stringify(s) : "list" + JSON.stringify(sum || null));
      return memo("service", name, key, () => serviceCard(tenant, name, sum, s, canAct));
    });
    sweep("service", names);
    const none = state.list ? "no services" : !state.tenant && state.kind !== "tenant" && state.tenants.length === 0 ? "no tenants yet" : "loading";
    if (cards.length === 0) box.replaceChildren(el("p", { class: "muted" }, none));
    else patch(box, cards);
    renderSessions();
  }

  function serviceCard(tenant, name, sum, s, canAct) {
    const card = el("section", { class: "service", "data-service": name });
    card.append(el("h3", {}, name));
    if (!s) {
      card.append(el("p", { class: "muted" }, sum ? sum.instances + " instances, " + sum.ready + " ready (not followed live)" : "loading"));
      return card;
    }
    const m = s.master;
    const ml = el("p", { class: "master" });
    if (m) {
      ml.append("master ", el("strong", { class: "master-instance" }, m.instance),
        " · fencing token ", el("span", { class: "fencing-token mono" }, String(m.fencing_token)),
        " · since ", el("span", { class: "since" }, when(m.since)),
        " · session ", el("span", { class: "mono" }, m.session_tag || ""),
        m.releasing ? el("span", { class: "releasing state-draining" }, " · releasing") : "");
      if (canAct && !m.releasing) {
        ml.append(" ", el("button", { class: "danger", "data-action": "resign", onclick: () => resign(tenant, name, m) }, "Resign"));
      }
    } else {
      const elects = (s.instances || []).some((i) => i.mode === "master-standby");
      ml.append(el("span", { class: "master-instance muted" }, elects ? "no master" : "a farm: no master to elect"));
    }
    card.append(ml);
    const rows = (s.instances || []).slice().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((i) => {
      const act = el("td", {});
      if (canAct) {
        if (i.state === "draining") act.append(el("button", { "data-action": "undrain", onclick: () => setState(tenant, name, i, "ready") }, "Undrain"));
        else act.append(el("button", { class: "danger", "data-action": "drain", onclick: () => setState(tenant, name, i, "draining") }, "Drain"));
      }
      return el("tr", { "data-instance": i.id },
        el("td", { class: "mono" }, i.id, m && m.instance === i.id ? " ★" : ""),
        el("td", { class: "state state-" + i.state }, i.state),
        el("td", {}, i.mode),
        el("td", { class: "weight" }, String(i.weight)),
        el("td", {}, String(i.priority)),
        el("td", { class: "zone" }, i.zone || ""),
        el("td", { class: "address" }, i.address),
        el("td", { class: "meta" }, metaText(i.meta)),
        el("td", { class: "mono" }, i.session_tag || ""),
        el("td", {}, when(i.registered_at)),
        act);
    });
    const t = el("table", {});
    t.append(el("thead", {}, el("tr", {}, ...["instance", "state", "mode", "weight", "priority", "zone", "address", "meta", "session", "registered", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
    card.append(t);
    return card;
  }

  function dur(ms) {
    if (typeof ms !== "number") return "";
    return ms >= 1000 && ms % 1000 === 0 ? ms / 1000 + " s" : ms + " ms";
  }

  // renderSessions: GET .../sessions's first page, by tag. A session's ID
  // is its holder's secret: the API never sends it, only its tag.
  function renderSessions() {
    const l = state.sessions;
    const list = (l && l.sessions) || [];
    const t = state.tenants.find((x) => x.name === state.tenant);
    const used = t && t.usage ? t.usage.sessions : list.length;
    const max = t && t.quotas ? t.quotas.max_sessions : undefined;
    $("sessions-line").textContent = !l ? "loading" :
      used + " live sessions" + (max ? " of " + max + " allowed" : "") + (l.next ? "; the first " + list.length + " by tag are listed" : "") +
      ". Remaining is the countdown the state machine last recorded (a session kept alive shows its TTL); whether a stream is attached is known only to the tenant's leader (? elsewhere).";
    table("sessions", ["session", "TTL", "lease", "drop grace", "remaining", "attached", "instances", "masterships"],
      list.map((s) => memo("session", s.session_tag, JSON.stringify(s), () => el("tr", { "data-session": s.session_tag },
        el("td", { class: "mono tag" }, s.session_tag),
        el("td", { class: "ttl" }, dur(s.ttl_ms)),
        el("td", { class: "lease" }, s.lease_ms ? dur(s.lease_ms) : "none", s.seeks_master ? " (seeks a mastership)" : ""),
        el("td", {}, dur(s.drop_grace_ms)),
        el("td", { class: "remaining" }, dur(s.remaining_ms)),
        el("td", { class: "attached" }, s.attached === undefined ? "?" : s.attached ? "yes" : "no"),
        el("td", { class: "mono instances" }, (s.instances || []).map((i) => i.service + "/" + i.instance + " (" + i.state + ")").join("\n")),
        el("td", { class: "mono masters" }, (s.masters || []).map((m) => m.service + "/" + m.instance + " token " + m.fencing_token +
          (m.releasing ? " (releasing)" : "")).join("\n"))))));
    sweep("session", list.map((s) => s.session_tag));
  }

  // ---- actions -----------------------------------------------------------

  function confirmAction(text, detail, okText) {
    return new Promise((resolve) => {
      const d = $("confirm");
      $("confirm-text").textContent = text;
      $("confirm-detail").textContent = detail || "";
      $("confirm-ok").textContent = okText || "Confirm";
      $("confirm-cancel").hidden = false;
      const done = (v) => {
        $("confirm-ok").onclick = null;
        $("confirm-cancel").onclick = null;
        d.close();
        resolve(v);
      };
      $("confirm-ok").onclick = () => done(true);
      $("confirm-cancel").onclick = () => done(false);
      d.oncancel = () => resolve(false);
      d.showModal();
    });
  }

  function tell(text, detail) {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-detail").textContent = detail || "";
    $("confirm-ok").textContent = "Close";
    $("confirm-cancel").hidden = true;
    $("confirm-ok").onclick = () => d.close();
    // What was shown once (a new token) does not stay in the page after
    // the dialog closes, by its button or by Escape.
    d.addEventListener("close", () => { $("confirm-detail").textContent = ""; }, { once: true });
    d.showModal();
  }

  async function call(method, path, body) {
    const resp = await fetch(path, {
      method, cache: "no-store",
      headers: { Authorization: "Bearer " + state.token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { /* 204 */ }
    if (!resp.ok) throw new Error((data && data.error && data.error.message) || "HTTP " + resp.status);
    return data;
  }

  const tpath = (...parts) => "/v1/tenants/" + parts.map(encodeURIComponent).join("/");

  // The actions take the tenant their card was drawn for, never the one
  // followed when clicked: the feed may have moved to another meanwhile.
  async function setState(tenant, service, i, to) {
    const verb = to === "draining" ? "Drain" : "Undrain";
    const what = to === "draining" ?
      "Balancers stop picking it; a master it holds is released once its promise lapses." :
      "It becomes ready: balancers pick it again and it may be elected.";
    if (!await confirmAction(verb + " instance " + i.id + " of service " + service + " (tenant " + tenant + ")?", what, verb)) return;
    // The instance as it is, with the new state; its session is kept.
    const body = { address: i.address, mode: i.mode, state: to, weight: i.weight, priority: i.priority, zone: i.zone, meta: i.meta || {} };
    try {
      await call("PUT", tpath(tenant, "services", service, "instances", i.id), body);
      setProblem("");
    } catch (e) { setProblem(verb + " " + i.id + ": " + e.message); }
  }

  async function resign(tenant, service, m) {
    if (!await confirmAction("Resign the master of " + service + " (" + m.instance + ", tenant " + tenant + ")?",
      "The next candidate is granted once the holder's promise lapses, or at once if the holder hands over itself. Fencing token " + m.fencing_token + ".", "Resign")) return;
    try {
      await call("POST", tpath(tenant, "services", service, "master", "resign"), { instance: m.instance, fencing_token: m.fencing_token });
      setProblem("");
    } catch (e) { setProblem("resign " + service + ": " + e.message); }
  }

  async function rotate(tenant) {
    if (!await confirmAction("Rotate the token of tenant " + tenant + "?",
      "A new token is made and shown once. The current one keeps working for an hour, then ends.", "Rotate")) return;
    try {
      const t = await call("POST", tpath(tenant, "token"), {});
      tell("The new token of " + tenant + ", shown once: give it to the tenant's services now.", t.token);
    } catch (e) { setProblem("rotate " + tenant + ": " + e.message); }
  }

  // ---- wiring ------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const tok = $("token").value.trim();
      $("token").value = "";
      if (!tok) { $("login-error").textContent = "Paste a token."; return; }
      $("login-error").textContent = "";
      startApp(tok);
    });
    $("logout").addEventListener("click", () => showLogin(""));
    for (const b of $("tabs").querySelectorAll("button[data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
    $("tenant-select").addEventListener("change", (ev) => {
      state.chosen = ev.target.value;
      state.tenant = "";
      startFeed();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) startApp(saved); else showLogin("");
  });
})();
