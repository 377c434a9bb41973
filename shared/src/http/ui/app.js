// The dashboard: plain JavaScript over the HTTP API. The token lives in sessionStorage only.
"use strict";

(() => {
  const TOKEN_KEY = "etp.token";
  const POLL_MS = 3000;
  const PAGE = 20;

  const $ = (id) => document.getElementById(id);
  const state = {
    triggers: [],
    eventState: "active",
    cursors: [null], // cursor of each page seen so far; the last is the current page
    nextCursor: null,
    lastEvents: "",
    lastTriggers: "",
    lastStats: "",
    lastMetrics: "",
    editing: null,
    firing: null,
    timer: null,
    me: null, // GET /api-keys/me: what the signed-in key may do
    lastKeys: "",
  };

  // ---- API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && problem.detail) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  async function api(method, path, { body, headers = {} } = {}) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const init = { method, headers: { ...headers, Authorization: `Bearer ${token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    let res;
    try {
      // Relative to the page, so the dashboard also works below a path prefix.
      res = await fetch(path.replace(/^\//, ""), init);
    } catch (e) {
      throw new ApiError(0, { detail: "The server cannot be reached." });
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = { detail: text }; }
    }
    if (res.status === 401) {
      signOut("The token was not accepted. Paste it again.");
      throw new ApiError(401, data);
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return { data, headers: res.headers };
  }

  // ---- formatting --------------------------------------------------------------------------

  const pad = (n) => String(n).padStart(2, "0");

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const secs = d.getUTCSeconds() ? `:${pad(d.getUTCSeconds())}` : "";
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${secs} UTC`;
  }

  function fmtDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  /** Seconds as the largest whole unit: 300 -> "5 min". */
  function fmtEvery(seconds) {
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
      if (seconds % size === 0) return `${seconds / size} ${unit}`;
    }
    return `${seconds} s`;
  }

  function relative(iso) {
    const diff = (new Date(iso) - Date.now()) / 1000;
    return diff >= 0 ? `in ${fmtDuration(diff)}` : `${fmtDuration(-diff)} ago`;
  }

  function scheduleWords(t) {
    const s = t.schedule;
    if (t.kind === "api") return "fired through the API";
    if (!s) return "—";
    const until = s.end_at ? ` until ${fmtTime(s.end_at)}` : "";
    switch (s.type) {
      case "at": return `at ${fmtTime(s.at)}`;
      case "interval":
        return s.recurring === false
          ? `once, ${fmtEvery(s.every_seconds)} after ${fmtTime(s.start_at)}`
          : `every ${fmtEvery(s.every_seconds)}${until}`;
      case "cron": return `cron ${s.expression} ${s.timezone}${until}`;
      default: return JSON.stringify(s);
    }
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  function toast(message) {
    const t = $("toast");
    t.textContent = message;
    t.classList.add("show");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("show"), 5000);
  }

  /** Re-renders keep keyboard focus on the same control. */
  function keepFocus(render) {
    const key = document.activeElement && document.activeElement.dataset.focusKey;
    render();
    if (key) {
      const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  // ---- sign-in -----------------------------------------------------------------------------

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    clearInterval(state.timer);
    state.timer = null;
    for (const d of document.querySelectorAll("dialog[open]")) d.close();
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("token-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
    state.me = null;
    state.lastKeys = "";
    $("key-value").textContent = "";
    $("key-notice").hidden = true;
  }

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      // Any key may read itself: its scopes decide what the page offers.
      ({ data: state.me } = await api("GET", "/api-keys/me"));
    } catch (e) {
      if (e.status !== 401) $("token-error").textContent = e.message;
      return;
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    applyScopes();
    state.lastEvents = state.lastTriggers = state.lastStats = state.lastKeys = "";
    await refreshAll();
    state.timer = setInterval(() => { if (!document.hidden) refreshAll(); }, POLL_MS);
  }

  // ---- triggers ----------------------------------------------------------------------------

  async function loadTriggers() {
    const all = [];
    let cursor = null;
    do {
      const q = new URLSearchParams({ limit: "200" });
      if (cursor) q.set("cursor", cursor);
      const { data } = await api("GET", `/triggers?${q}`);
      all.push(...data.items);
      cursor = data.next_cursor;
    } while (cursor && all.length < 2000);
    return all;
  }

  function actionButton(label, trigger, handler, cls) {
    return el("button", {
      type: "button", class: cls, text: label,
      "aria-label": `${label} ${trigger.name}`,
      "data-focus-key": `${label}:${trigger.id}`,
      onclick: () => handler(trigger),
    });
  }

  function renderTriggers() {
    const rows = $("trigger-rows");
    rows.replaceChildren(...state.triggers.map((t) => {
      const write = can("triggers:write");
      const actions = el("div", { class: "actions-cell" },
        write ? actionButton("Edit", t, openEdit) : null,
        !write ? null : t.status === "paused"
          ? actionButton("Resume", t, (x) => setPaused(x, false))
          : t.status === "active" ? actionButton("Pause", t, (x) => setPaused(x, true)) : null,
        t.kind === "api" && t.status === "active" && mayFire(t) ? actionButton("Fire", t, (x) => openFire(x, false)) : null,
        t.kind === "scheduled" ? actionButton("Occurrences", t, openOccurrences) : null,
        t.delivery_paused_at && write ? actionButton("Resume delivery", t, resumeDelivery) : null,
        write ? actionButton("Test", t, testFire) : null,
        write ? actionButton("Delete", t, confirmDelete, "danger") : null);
      const next = t.next_fire_at
        ? el("span", {}, el("time", { datetime: t.next_fire_at, text: fmtTime(t.next_fire_at) }),
          el("span", { class: "muted small block", text: relative(t.next_fire_at) }))
        : "—";
      return el("tr", { "data-id": t.id },
        el("th", { scope: "row", "data-label": "Name", text: t.name }),
        el("td", { "data-label": "Kind" }, el("span", { class: `badge kind-${t.kind}`, text: t.kind })),
        el("td", { "data-label": "Schedule", text: scheduleWords(t) }),
        el("td", { "data-label": "Status" }, el("span", { class: `badge status-${t.status}`, text: t.status }),
          t.paused_until ? el("span", { class: "muted small block", text: `until ${fmtTime(t.paused_until)}` }) : null,
          t.delivery_paused_at ? el("span", { class: "badge delivery-paused", text: "delivery paused",
            title: `Delivery paused since ${fmtTime(t.delivery_paused_at)}` }) : null),
        el("td", { "data-label": "Next fire" }, next),
        el("td", { "data-label": "Actions" }, actions));
    }));
    $("trigger-empty").hidden = state.triggers.length > 0;
    $("trigger-table").hidden = state.triggers.length === 0;

    const select = $("filter-trigger");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "All triggers" }),
      ...state.triggers.map((t) => el("option", { value: t.id, text: t.name })));
    if (chosen && !state.triggers.some((t) => t.id === chosen)) {
      select.append(el("option", { value: chosen, text: "(deleted trigger)" }));
    }
    select.value = chosen;
  }

  async function refreshTriggers() {
    const triggers = await loadTriggers();
    const key = JSON.stringify(triggers) + Math.floor(Date.now() / 30000);
    state.triggers = triggers;
    if (key !== state.lastTriggers) {
      state.lastTriggers = key;
      keepFocus(renderTriggers);
    }
  }

  async function setPaused(t, paused) {
    try {
      await api("POST", `/triggers/${encodeURIComponent(t.id)}/${paused ? "pause" : "resume"}`);
      toast(`${t.name} ${paused ? "paused" : "resumed"}.`);
      await refreshTriggers();
    } catch (e) { toast(e.message); }
  }

  async function resumeDelivery(t) {
    try {
      await api("POST", `/triggers/${encodeURIComponent(t.id)}/resume-delivery`);
      toast(`Delivery resumed for ${t.name}.`);
      await refreshTriggers();
    } catch (e) { toast(e.message); }
  }

  async function redeliver(e) {
    try {
      await api("POST", `/events/${encodeURIComponent(e.id)}/redeliver`);
      toast(`Redelivery of the ${e.trigger_name} event queued.`);
      await refreshEvents();
    } catch (err) { toast(err.message); }
  }

  async function testFire(t) {
    if (t.kind === "api") return openFire(t, true);
    try {
      const { data } = await api("POST", `/triggers/${encodeURIComponent(t.id)}/test`);
      toast(`Test event fired for ${t.name}.`);
      await refreshEvents();
      return data;
    } catch (e) { toast(e.message); }
  }

  async function confirmDelete(t) {
    const dialog = $("confirm-dialog");
    $("confirm-text").textContent = `Delete “${t.name}”? Its schedule stops; its past events stay.`;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "ok") return;
      try {
        await api("DELETE", `/triggers/${encodeURIComponent(t.id)}`);
        toast(`${t.name} deleted.`);
        await refreshTriggers();
      } catch (e) { toast(e.message); }
    }, { once: true });
  }

  // ---- trigger form ------------------------------------------------------------------------

  const form = $("trigger-form");

  function kindValue() { return form.querySelector("input[name=kind]:checked").value; }

  function syncForm() {
    const api = kindValue() === "api";
    $("scheduled-fields").hidden = api;
    $("api-fields").hidden = !api;
    const type = $("f-type").value;
    for (const node of form.querySelectorAll("[data-types]")) {
      node.hidden = !node.dataset.types.split(" ").includes(type);
    }
    $("f-every-label").textContent = type === "delay" ? "After" : "Every";
    checkSchema();
  }

  /** Immediate feedback while typing: is it JSON, and could it be a schema? */
  function checkSchema() {
    const out = $("f-schema-check");
    const text = $("f-schema").value.trim();
    out.className = "hint";
    if (!text) { out.textContent = "Required for api triggers."; return; }
    try {
      const v = JSON.parse(text);
      if (typeof v !== "object" && typeof v !== "boolean" || v === null || Array.isArray(v)) {
        out.textContent = "A JSON Schema is an object (or true/false).";
        out.className = "hint bad";
      } else {
        out.textContent = "Valid JSON. The server checks that it is a valid JSON Schema.";
        out.className = "hint good";
      }
    } catch (e) {
      out.textContent = `Not valid JSON: ${e.message}`;
      out.className = "hint bad";
    }
  }

  function clearErrors(f) {
    for (const e of f.querySelectorAll(".field-error")) e.remove();
    for (const e of f.querySelectorAll("[aria-invalid]")) {
      e.removeAttribute("aria-invalid");
      const ids = (e.getAttribute("aria-describedby") || "").split(" ").filter((i) => !i.startsWith("err-"));
      if (ids.length) e.setAttribute("aria-describedby", ids.join(" ")); else e.removeAttribute("aria-describedby");
    }
    const top = f.querySelector(".form-error");
    if (top) top.textContent = "";
  }

  /** The field container an API error names: exact, else its nearest documented parent. */
  function fieldFor(f, name) {
    let n = name;
    while (n) {
      const found = f.querySelector(`[data-field="${CSS.escape(n)}"]`);
      if (found && !found.closest("[hidden]")) return found;
      n = n.includes(".") ? n.slice(0, n.lastIndexOf(".")) : "";
    }
    return null;
  }

  /** Shows the problem's detail on top and each field error next to its field. */
  function showProblem(f, error, mapField = (x) => x) {
    clearErrors(f);
    const problem = error.problem || {};
    f.querySelector(".form-error").textContent = problem.detail || error.message;
    let first = null;
    const seen = new Map();
    for (const { field, message } of problem.errors || []) {
      const container = fieldFor(f, mapField(field));
      if (!container) continue;
      const control = container.querySelector("input, select, textarea");
      let list = seen.get(container);
      if (!list) {
        const id = `err-${Math.random().toString(36).slice(2)}`;
        list = el("ul", { class: "field-error", id });
        container.append(list);
        seen.set(container, list);
        if (control) {
          control.setAttribute("aria-invalid", "true");
          const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
          control.setAttribute("aria-describedby", [...ids, id].join(" "));
          first = first || control;
        }
      }
      const pointer = field.startsWith("/") || field.startsWith("payload/") ? field.replace(/^payload/, "") : null;
      const where = pointer === null ? "" : pointer === "/" || pointer === "" ? "payload: " : `${pointer}: `;
      list.append(el("li", { text: `${where}${message}` }));
    }
    if (first) first.focus();
  }

  const localInput = (iso) => (iso ? iso.replace(/Z$/, "").slice(0, 19) : "");
  const fromInput = (value) => (value ? `${value.length === 16 ? `${value}:00` : value}Z` : undefined);

  function openCreate() {
    state.editing = null;
    form.reset();
    clearErrors(form);
    $("trigger-dialog-title").textContent = "New trigger";
    $("trigger-submit").textContent = "Create";
    for (const r of form.querySelectorAll("input[name=kind]")) r.disabled = false;
    $("f-tz").value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    $("f-schema").value = JSON.stringify({
      type: "object", required: ["order_id"], properties: { order_id: { type: "integer" } },
    }, null, 2);
    syncForm();
    $("trigger-dialog").showModal();
    $("f-name").focus();
  }

  function openEdit(t) {
    state.editing = t;
    form.reset();
    clearErrors(form);
    $("trigger-dialog-title").textContent = `Edit ${t.name}`;
    $("trigger-submit").textContent = "Save";
    $("f-name").value = t.name;
    for (const r of form.querySelectorAll("input[name=kind]")) {
      r.checked = r.value === t.kind;
      r.disabled = true; // the API refuses to change a trigger's kind
    }
    const s = t.schedule || {};
    if (s.type === "interval") {
      $("f-type").value = s.recurring === false ? "delay" : "interval";
      const unit = [86400, 3600, 60, 1].find((u) => s.every_seconds % u === 0);
      $("f-unit").value = String(unit);
      $("f-every").value = String(s.every_seconds / unit);
    } else if (s.type) {
      $("f-type").value = s.type;
    }
    $("f-at").value = localInput(s.at);
    $("f-cron").value = s.expression || "";
    $("f-tz").value = s.timezone || "UTC";
    $("f-start").value = localInput(s.start_at);
    $("f-end").value = localInput(s.end_at);
    $("f-payload").value = t.payload ? JSON.stringify(t.payload, null, 2) : "";
    $("f-schema").value = t.payload_schema !== undefined ? JSON.stringify(t.payload_schema, null, 2) : "";
    $("f-target").value = t.target ? t.target.url : "";
    syncForm();
    $("trigger-dialog").showModal();
    $("f-name").focus();
  }

  /** Reads the form into a definition; JSON typos are reported at their field. */
  function readDefinition() {
    const def = { name: $("f-name").value, kind: kindValue() };
    const errors = [];
    const json = (id, field) => {
      const text = $(id).value.trim();
      if (!text) return undefined;
      try { return JSON.parse(text); } catch (e) {
        errors.push({ field, message: `is not valid JSON: ${e.message}` });
        return undefined;
      }
    };
    if (def.kind === "api") {
      def.payload_schema = json("f-schema", "payload_schema");
    } else {
      const type = $("f-type").value;
      const every = Number($("f-every").value) * Number($("f-unit").value);
      if (type === "interval" || type === "delay") {
        def.schedule = { type: "interval", every_seconds: every, recurring: type === "interval" };
      } else if (type === "at") {
        def.schedule = { type: "at", at: fromInput($("f-at").value) };
        if (!def.schedule.at) errors.push({ field: "schedule.at", message: "is required" });
      } else {
        def.schedule = { type: "cron", expression: $("f-cron").value.trim(), timezone: $("f-tz").value.trim() };
      }
      if (type !== "at") {
        const start = fromInput($("f-start").value);
        const end = fromInput($("f-end").value);
        if (start) def.schedule.start_at = start;
        if (end && type !== "delay") def.schedule.end_at = end;
      }
      const payload = json("f-payload", "payload");
      if (payload !== undefined) def.payload = payload;
    }
    const url = $("f-target").value.trim();
    if (url) {
      // Editing keeps the target's other settings (headers, timeout, retries).
      const kept = (state.editing && state.editing.target) || {};
      def.target = { ...kept, url };
    }
    return { def, errors };
  }

  function showSecret(name, secret) {
    if (!secret) return;
    $("secret-for").textContent = name;
    $("secret-value").textContent = secret;
    $("secret-notice").hidden = false;
  }

  async function submitTrigger(event) {
    event.preventDefault();
    const { def, errors } = readDefinition();
    if (errors.length) {
      showProblem(form, new ApiError(0, { detail: "Fix the marked fields.", errors }));
      return;
    }
    const button = $("trigger-submit");
    button.disabled = true;
    try {
      const editing = state.editing;
      if (editing) {
        await api("PUT", `/triggers/${encodeURIComponent(editing.id)}`,
          { body: def, headers: { "If-Match": `"${editing.version}"` } });
        toast(`${def.name} saved.`);
      } else {
        const { data } = await api("POST", "/triggers", { body: def });
        toast(`${def.name} created.`);
        if (def.target) showSecret(data.name, data.secret);
      }
      $("trigger-dialog").close();
      await refreshTriggers();
    } catch (e) {
      if (e.status === 412) e.problem.detail = "Someone changed this trigger since you opened it. Close and edit again.";
      showProblem(form, e);
    } finally {
      button.disabled = false;
    }
  }

  // ---- fire --------------------------------------------------------------------------------

  function openFire(t, test) {
    state.firing = { trigger: t, test };
    const f = $("fire-form");
    clearErrors(f);
    $("fire-dialog-title").textContent = `${test ? "Test-fire" : "Fire"} ${t.name}`;
    $("fire-submit").textContent = test ? "Test-fire" : "Fire";
    $("fire-schema").textContent = JSON.stringify(t.payload_schema, null, 2);
    $("fire-payload").value = "{}";
    $("fire-key").value = "";
    $("fire-key-field").hidden = test;
    $("fire-dry-run").hidden = test;
    $("fire-preview").hidden = true;
    $("fire-dialog").showModal();
    $("fire-payload").focus();
  }

  async function submitFire(event) {
    event.preventDefault();
    const f = $("fire-form");
    const { trigger, test } = state.firing;
    const text = $("fire-payload").value.trim() || "{}";
    try { JSON.parse(text); } catch (e) {
      showProblem(f, new ApiError(0, { detail: "The payload is not valid JSON.",
        errors: [{ field: "payload", message: e.message }] }));
      return;
    }
    const headers = {};
    const key = $("fire-key").value.trim();
    if (key && !test) headers["Idempotency-Key"] = key;
    const button = $("fire-submit");
    button.disabled = true;
    try {
      const path = `/triggers/${encodeURIComponent(trigger.id)}/${test ? "test" : "fire"}`;
      const { data } = await api("POST", path, { body: text, headers });
      $("fire-dialog").close();
      toast(`${test ? "Test event" : "Event"} ${data.id} recorded for ${trigger.name}.`);
      if (can("events:read")) await refreshEvents();
    } catch (e) {
      // Payload errors name a JSON pointer into the payload; they belong to the payload field.
      showProblem(f, e, (field) => (field.startsWith("/") || field === "body" ? "payload" : field));
    } finally {
      button.disabled = false;
    }
  }

  async function dryRunFire() {
    const f = $("fire-form");
    clearErrors(f);
    const { trigger } = state.firing;
    const text = $("fire-payload").value.trim() || "{}";
    try { JSON.parse(text); } catch (e) {
      showProblem(f, new ApiError(0, { detail: "The payload is not valid JSON.",
        errors: [{ field: "payload", message: e.message }] }));
      return;
    }
    try {
      const { data } = await api("POST", `/triggers/${encodeURIComponent(trigger.id)}/fire?dry_run=true`, { body: text });
      $("fire-preview-event").textContent = JSON.stringify(data, null, 2);
      $("fire-preview").hidden = false;
    } catch (e) {
      $("fire-preview").hidden = true;
      showProblem(f, e, (field) => (field.startsWith("/") || field === "body" ? "payload" : field));
    }
  }

  // ---- occurrences -------------------------------------------------------------------------

  const REASONS = {
    paused: "paused", outside_window: "outside the schedule's window",
    missed_beyond_grace: "missed beyond the catch-up grace", coalesced: "folded into a catch-up",
    completed: "the trigger had completed", skipped_by_user: "skipped by hand",
  };

  function occurrenceDetail(o) {
    if (o.status === "fired") return `event ${o.event_id}, ${o.lateness_seconds} s late`;
    if (o.status === "skipped") return REASONS[o.reason] || o.reason;
    if (o.status === "expired") return "past the event log's retention";
    return "";
  }

  async function loadOccurrences() {
    const t = state.occurrences;
    const now = Date.now();
    const q = new URLSearchParams({
      from: new Date(now - 86400000).toISOString().replace(/\.\d+Z$/, "Z"),
      to: new Date(now + 86400000).toISOString().replace(/\.\d+Z$/, "Z"),
      limit: "200",
    });
    const { data } = await api("GET", `/triggers/${encodeURIComponent(t.id)}/occurrences?${q}`);
    $("occurrence-rows").replaceChildren(...data.occurrences.map((o) => el("tr", { "data-at": o.scheduled_for },
      el("th", { scope: "row", "data-label": "Scheduled for" },
        el("time", { datetime: o.scheduled_for, text: fmtTime(o.scheduled_for) })),
      el("td", { "data-label": "Status" }, el("span", { class: `badge occurrence-${o.status}`, text: o.status })),
      el("td", { "data-label": "Detail", text: occurrenceDetail(o) }),
      el("td", { "data-label": "Actions" }, o.status === "upcoming" && can("triggers:write") && Date.parse(o.scheduled_for) > Date.now()
        ? el("button", { type: "button", text: "Skip", "aria-label": `Skip ${fmtTime(o.scheduled_for)}`,
          onclick: () => skipOccurrence(o.scheduled_for) })
        : null))));
    $("occurrences-more").hidden = !data.truncated;
  }

  async function openOccurrences(t) {
    state.occurrences = t;
    clearErrors($("occurrences-form"));
    $("occurrences-title").textContent = `Occurrences of ${t.name}`;
    $("pause-until").value = "";
    document.querySelector("#occurrences-form .pause-until").hidden = !can("triggers:write");
    try { await loadOccurrences(); } catch (e) { toast(e.message); return; }
    $("occurrences-dialog").showModal();
  }

  async function skipOccurrence(at) {
    const t = state.occurrences;
    try {
      await api("POST", `/triggers/${encodeURIComponent(t.id)}/skip`, { body: JSON.stringify({ scheduled_for: at }) });
      toast(`The occurrence at ${fmtTime(at)} will be skipped.`);
      await Promise.all([loadOccurrences(), refreshTriggers()]);
    } catch (e) { showProblem($("occurrences-form"), e); }
  }

  async function pauseUntil() {
    const f = $("occurrences-form");
    clearErrors(f);
    const t = state.occurrences;
    const local = $("pause-until").value;
    if (!local) {
      showProblem(f, new ApiError(0, { detail: "Choose when it resumes.", errors: [{ field: "until", message: "is required" }] }));
      return;
    }
    try {
      const until = new Date(local).toISOString();
      await api("POST", `/triggers/${encodeURIComponent(t.id)}/pause`, { body: JSON.stringify({ until }) });
      toast(`${t.name} paused until ${fmtTime(until)}.`);
      await Promise.all([loadOccurrences(), refreshTriggers()]);
    } catch (e) { showProblem(f, e); }
  }

  // ---- events ------------------------------------------------------------------------------

  function lifecycleMarker(e) {
    const now = Date.now();
    const fired = new Date(e.fired_at).getTime();
    const archives = new Date(e.archives_at).getTime();
    const expires = new Date(e.expires_at).getTime();
    const [from, to, verb] = e.state === "active"
      ? [fired, archives, "archived"] : [archives, expires, "deleted"];
    const left = Math.max(0, to - now);
    const text = `${verb} in ${fmtDuration(left / 1000)}`;
    return el("span", { class: "lifecycle" },
      el("meter", { min: "0", max: "1", low: "0.25", optimum: "1",
        value: String(Math.min(1, left / Math.max(1, to - from))), "aria-label": text, title: text }),
      el("span", { class: "small", text }));
  }

  function renderEvents(items) {
    $("event-rows").replaceChildren(...items.map((e) => el("tr", { "data-id": e.id },
      el("td", { "data-label": "Fired" }, el("time", { datetime: e.fired_at, text: fmtTime(e.fired_at) })),
      el("th", { scope: "row", "data-label": "Trigger", text: e.trigger_name }),
      el("td", { "data-label": "Source" }, e.source,
        e.is_test ? el("span", { class: "badge test", text: "test" }) : null),
      el("td", { "data-label": "Status" }, el("span", { class: `badge ev-${e.status}`, text: e.status })),
      el("td", { "data-label": "Time left" }, lifecycleMarker(e)),
      el("td", { "data-label": "Details" }, el("div", { class: "event-actions" }, el("button", {
        type: "button", text: "Details", "aria-label": `Details of ${e.trigger_name} at ${fmtTime(e.fired_at)}`,
        "data-focus-key": `event:${e.id}`, onclick: () => openEvent(e.id),
      }), e.status === "failure" && e.trigger_id && can("triggers:write") ? el("button", {
        type: "button", text: "Redeliver", "aria-label": `Redeliver ${e.trigger_name} at ${fmtTime(e.fired_at)}`,
        "data-focus-key": `redeliver:${e.id}`, onclick: () => redeliver(e),
      }) : null)))));
    $("event-empty").hidden = items.length > 0;
    $("event-table").hidden = items.length === 0;
    const page = state.cursors.length;
    $("page-label").textContent = `Page ${page}`;
    $("page-newer").disabled = page <= 1;
    $("page-older").disabled = !state.nextCursor;
  }

  async function refreshEvents() {
    const q = new URLSearchParams({ state: state.eventState, limit: String(PAGE) });
    const trigger = $("filter-trigger").value;
    const source = $("filter-source").value;
    if (trigger) q.set("trigger_id", trigger);
    if (source) q.set("source", source);
    const status = $("filter-status").value;
    if (status) q.set("status", status);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const { data } = await api("GET", `/events?${q}`);
    state.nextCursor = data.next_cursor;
    // Time-left markers move, so re-render at least every 30 s even when nothing else changed.
    const key = JSON.stringify(data) + Math.floor(Date.now() / 30000);
    if (key !== state.lastEvents) {
      state.lastEvents = key;
      keepFocus(() => renderEvents(data.items));
    }
    $("events-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  function resetPaging() {
    state.cursors = [null];
    state.lastEvents = "";
  }

  function selectTab(tab) {
    for (const t of document.querySelectorAll("[role=tab]")) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    $("event-panel").setAttribute("aria-labelledby", tab.id);
    state.eventState = tab.dataset.state;
    resetPaging();
    refreshEvents().catch((e) => toast(e.message));
  }

  async function openEvent(id) {
    let e;
    try {
      ({ data: e } = await api("GET", `/events/${encodeURIComponent(id)}`));
    } catch (err) { toast(err.message); return; }
    $("event-dialog-title").textContent = `Event from ${e.trigger_name}`;
    const rows = [
      ["Id", e.id], ["Trigger", e.trigger_id ? `${e.trigger_name} (${e.trigger_id})` : `${e.trigger_name} (test run)`],
      ["Kind", e.kind], ["Source", e.source + (e.is_test ? " (test)" : "")],
      ["Status", e.status + (e.reason ? ` (${e.reason.replace(/_/g, " ")})` : "")],
      ["Scheduled for", fmtTime(e.scheduled_for)], ["Fired at", fmtTime(e.fired_at)],
      ["State", e.state], ["Archived at", `${fmtTime(e.archives_at)} (${relative(e.archives_at)})`],
      ["Deleted at", `${fmtTime(e.expires_at)} (${relative(e.expires_at)})`],
    ];
    $("event-fields").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    $("event-payload").textContent = JSON.stringify(e.payload, null, 2);
    const attempts = e.attempts || [];
    const box = $("event-attempts");
    box.replaceChildren();
    if (attempts.length || e.next_attempt_at) {
      const describe = (a) => {
        const outcome = a.status_code ? `HTTP ${a.status_code}` : (a.error || "error").replace(/_/g, " ");
        const detail = a.detail ? ` (${a.detail})` : "";
        const series = a.series > 1 ? ` (redelivery ${a.series - 1})` : "";
        return `#${a.number}${series} at ${new Date(a.at).toLocaleString()}: ${outcome}${detail}, ${a.duration_ms} ms`;
      };
      box.append(el("h3", { text: "Delivery attempts" }),
        el("ol", {}, ...attempts.map((a) => el("li", { text: describe(a) }))));
      if (e.next_attempt_at) {
        box.append(el("p", { class: "muted", text: `Next attempt at ${new Date(e.next_attempt_at).toLocaleString()}` }));
      }
    }
    $("event-dialog").showModal();
  }

  // ---- stats -------------------------------------------------------------------------------

  function renderStats(items) {
    const box = $("stats-chart");
    const NS = "http://www.w3.org/2000/svg";
    if (!items.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No events in the retention window." }));
      return;
    }
    const sorted = [...items].sort((a, b) => (b.active + b.archived) - (a.active + a.archived)).slice(0, 20);
    const max = Math.max(1, ...sorted.map((s) => s.active + s.archived));
    const rowH = 26, labelW = 120, barW = 170, countW = 60;
    const width = labelW + barW + countW;
    const svg = document.createElementNS(NS, "svg");
    const summary = sorted.map((s) => `${s.trigger_name}: ${s.active} active, ${s.archived} archived`).join("; ");
    for (const [k, v] of Object.entries({ viewBox: `0 0 ${width} ${sorted.length * rowH}`, role: "img",
      "aria-label": `Events per trigger. ${summary}`, class: "chart" })) svg.setAttribute(k, v);
    const add = (parent, tag, attrs, text) => {
      const n = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
      if (text !== undefined) n.textContent = text;
      parent.append(n);
      return n;
    };
    sorted.forEach((s, i) => {
      const y = i * rowH;
      const g = add(svg, "g", {});
      add(g, "title", {}, `${s.trigger_name}: ${s.active} active, ${s.archived} archived` +
        (s.last_fired_at ? `, last fired ${fmtTime(s.last_fired_at)}` : ""));
      const name = s.trigger_name.length > 18 ? `${s.trigger_name.slice(0, 17)}…` : s.trigger_name;
      add(g, "text", { x: 0, y: y + 17, class: "label" }, name);
      const wa = (s.active / max) * barW;
      const wr = (s.archived / max) * barW;
      add(g, "rect", { x: labelW, y: y + 5, width: Math.max(wa, 0), height: 16, class: "bar-active" });
      add(g, "rect", { x: labelW + wa, y: y + 5, width: Math.max(wr, 0), height: 16, class: "bar-archived" });
      add(g, "text", { x: labelW + wa + wr + 6, y: y + 17, class: "count" }, `${s.active} / ${s.archived}`);
    });
    box.replaceChildren(svg);
  }

  async function refreshStats() {
    const { data } = await api("GET", "/events/stats");
    const key = JSON.stringify(data.items);
    if (key !== state.lastStats) {
      state.lastStats = key;
      renderStats(data.items);
    }
  }

  // ---- metrics -----------------------------------------------------------------------------

  // Prometheus text: "name{a="x",b="y"} value" per line; comments skipped.
  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m) continue;
      const labels = {};
      for (const [, k, v] of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
      samples.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return samples;
  }

  const sum = (samples, name, where = {}) => samples
    .filter((s) => s.name === name && Object.entries(where).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);

  // The q-quantile of a histogram from its cumulative buckets, as Prometheus estimates it
  // (linear within the bucket); null with no observation.
  function quantile(samples, name, q) {
    const buckets = samples.filter((s) => s.name === `${name}_bucket`)
      .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value }))
      .sort((a, b) => a.le - b.le);
    const total = buckets.length ? buckets[buckets.length - 1].n : 0;
    if (!total) return null;
    const rank = q * total;
    let prev = { le: 0, n: 0 };
    for (const b of buckets) {
      if (b.n >= rank) {
        if (b.le === Infinity) return prev.le;
        return prev.le + (b.le - prev.le) * ((rank - prev.n) / Math.max(b.n - prev.n, 1));
      }
      prev = b;
    }
    return prev.le;
  }

  const fmtSeconds = (s) => (s === null ? "–" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`);

  function renderMetrics(samples) {
    const figure = (label, value) => el("div", {}, el("dt", { text: label }), el("dd", { text: String(value) }));
    const fired = (outcome) => sum(samples, "etp_firings_total", { outcome });
    const delivered = (outcome) => sum(samples, "etp_deliveries_total", { outcome });
    $("metrics-view").replaceChildren(
      figure("Firings", fired("success")),
      figure("Firings replayed", fired("duplicate")),
      figure("Firings failed", fired("failure")),
      figure("Occurrences skipped", sum(samples, "etp_occurrences_skipped_total")),
      figure("Deliveries ok", delivered("success")),
      figure("Delivery retries", delivered("retry")),
      figure("Deliveries failed", delivered("failure") + delivered("refused")),
      figure("Deliveries pending", sum(samples, "etp_deliveries_pending")),
      figure("Lateness p50", fmtSeconds(quantile(samples, "etp_fire_lateness_seconds", 0.5))),
      figure("Lateness p99", fmtSeconds(quantile(samples, "etp_fire_lateness_seconds", 0.99))),
    );
  }

  async function refreshMetrics() {
    const res = await fetch("metrics", { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
    // Not served here (on AWS the metrics go to CloudWatch): no section.
    $("metrics").hidden = res.status === 404;
    if (res.status === 404) return;
    if (!res.ok) throw new ApiError(res.status, { detail: `metrics: HTTP ${res.status}` });
    const text = await res.text();
    if (text !== state.lastMetrics) {
      state.lastMetrics = text;
      renderMetrics(parseMetrics(text));
    }
  }

  async function refreshAll() {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    const jobs = [];
    if (can("triggers:read")) jobs.push(refreshTriggers());
    if (can("events:read")) jobs.push(refreshEvents(), refreshStats());
    if (can("admin")) jobs.push(refreshKeys());
    if (can("metrics:read")) jobs.push(refreshMetrics());
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === "rejected" && r.reason.status !== 401);
    if (failed) toast(failed.reason.message);
  }

  // ---- scopes and API keys -----------------------------------------------------------------

  /** Whether the signed-in key has `scope` (`admin` has every scope). */
  function can(scope) {
    const scopes = (state.me && state.me.scopes) || [];
    return scopes.includes("admin") || scopes.includes(scope);
  }

  /** `fire` may be limited to the key's `trigger_ids`. */
  function mayFire(t) {
    const ids = (state.me && state.me.trigger_ids) || [];
    return can("fire") && (can("admin") || !ids.length || ids.includes(t.id));
  }

  /** Shows only what the signed-in key may use; the API refuses the rest anyway (403). */
  function applyScopes() {
    const show = (node, on) => { if (node) node.hidden = !on; };
    const nav = (href) => document.querySelector(`nav a[href="${href}"]`);
    show($("triggers"), can("triggers:read"));
    show(nav("#triggers"), can("triggers:read"));
    show($("new-trigger"), can("triggers:write"));
    for (const id of ["events", "stats"]) {
      show($(id), can("events:read"));
      show(nav(`#${id}`), can("events:read"));
    }
    show($("keys"), can("admin"));
    show($("nav-keys"), can("admin"));
    show($("metrics"), can("metrics:read"));
    show($("nav-metrics"), can("metrics:read"));
    const me = state.me || { name: "?", scopes: [] };
    $("signed-in-as").textContent = `Signed in with “${me.name}”: ${me.scopes.join(", ")}` +
      (me.trigger_ids && me.trigger_ids.length ? ` (fires ${me.trigger_ids.length} trigger(s) only)` : "");
  }

  function renderKeys(items) {
    $("key-rows").replaceChildren(...items.map((k) => el("tr", { "data-id": k.id },
      el("th", { scope: "row", "data-label": "Name", text: k.name }),
      el("td", { "data-label": "Scopes" },
        ...k.scopes.map((s) => el("span", { class: "badge scope", text: s })),
        k.trigger_ids.length ? el("span", { class: "muted small block", text: `fires ${k.trigger_ids.length} trigger(s) only` }) : null),
      el("td", { "data-label": "Key" }, el("code", { text: `${k.prefix}…` })),
      el("td", { "data-label": "Created", text: fmtTime(k.created_at) }),
      el("td", { "data-label": "Expires", text: k.expires_at ? fmtTime(k.expires_at) : "never" }),
      el("td", { "data-label": "Last used", text: k.last_used_at ? fmtTime(k.last_used_at) : "never" }),
      el("td", { "data-label": "Actions" }, el("button", {
        type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke ${k.name}`,
        "data-focus-key": `revoke:${k.id}`, onclick: () => confirmRevoke(k),
      })))));
    $("key-empty").hidden = items.length > 0;
    $("key-table").hidden = items.length === 0;
  }

  async function refreshKeys() {
    const { data } = await api("GET", "/api-keys");
    const key = JSON.stringify(data.items);
    if (key !== state.lastKeys) {
      state.lastKeys = key;
      keepFocus(() => renderKeys(data.items));
    }
  }

  function confirmRevoke(k) {
    const dialog = $("confirm-dialog");
    const [title, ok] = [$("confirm-title").textContent, $("confirm-ok").textContent];
    $("confirm-title").textContent = "Revoke API key?";
    $("confirm-ok").textContent = "Revoke";
    $("confirm-text").textContent = `Revoke “${k.name}” (${k.prefix}…)? Requests with it are refused from now on.`;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.addEventListener("close", async () => {
      $("confirm-title").textContent = title;
      $("confirm-ok").textContent = ok;
      if (dialog.returnValue !== "ok") return;
      try {
        await api("DELETE", `/api-keys/${encodeURIComponent(k.id)}`);
        toast(`${k.name} revoked.`);
        await refreshKeys();
      } catch (e) { toast(e.message); }
    }, { once: true });
  }

  function openKeyCreate() {
    const f = $("key-form");
    f.reset();
    clearErrors(f);
    $("key-dialog").showModal();
    $("k-name").focus();
  }

  async function submitKey(event) {
    event.preventDefault();
    const f = $("key-form");
    const body = {
      name: $("k-name").value.trim(),
      scopes: [...f.querySelectorAll("input[name=scope]:checked")].map((c) => c.value),
    };
    const ids = $("k-triggers").value.split(/[\s,]+/).filter(Boolean);
    if (ids.length) body.trigger_ids = ids;
    const expires = fromInput($("k-expires").value);
    if (expires) body.expires_at = expires;
    const button = $("key-submit");
    button.disabled = true;
    try {
      const { data } = await api("POST", "/api-keys", { body });
      $("key-dialog").close();
      $("key-for").textContent = data.name;
      $("key-value").textContent = data.key;
      $("key-notice").hidden = false;
      await refreshKeys();
    } catch (e) {
      // `scopes[1]` and `trigger_ids[0]` belong to their whole field.
      showProblem(f, e, (field) => field.replace(/\[\d+\]$/, ""));
    } finally {
      button.disabled = false;
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  function init() {
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      if (!token) { $("token-error").textContent = "Paste the token first."; return; }
      $("token-error").textContent = "";
      signIn(token);
    });
    $("sign-out").addEventListener("click", () => signOut("Token forgotten."));
    $("new-trigger").addEventListener("click", openCreate);
    $("secret-dismiss").addEventListener("click", () => {
      $("secret-value").textContent = "";
      $("secret-notice").hidden = true;
    });
    form.addEventListener("submit", submitTrigger);
    $("new-key").addEventListener("click", openKeyCreate);
    $("key-form").addEventListener("submit", submitKey);
    $("key-dismiss").addEventListener("click", () => {
      $("key-value").textContent = "";
      $("key-notice").hidden = true;
    });
    form.addEventListener("change", (e) => { if (e.target.name === "kind" || e.target.id === "f-type") syncForm(); });
    $("f-schema").addEventListener("input", checkSchema);
    // An error goes away once its field is changed; the next submit judges again.
    for (const f of [form, $("fire-form")]) {
      f.addEventListener("input", (e) => {
        const container = e.target.closest(".field");
        if (!container || !e.target.hasAttribute("aria-invalid")) return;
        e.target.removeAttribute("aria-invalid");
        for (const list of container.querySelectorAll(".field-error")) list.remove();
      });
    }
    $("fire-form").addEventListener("submit", submitFire);
    $("fire-dry-run").addEventListener("click", dryRunFire);
    $("pause-until-submit").addEventListener("click", pauseUntil);
    for (const b of document.querySelectorAll("[data-close]")) {
      b.addEventListener("click", () => b.closest("dialog").close());
    }

    const tabs = [...document.querySelectorAll("[role=tab]")];
    for (const tab of tabs) {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", (e) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
        if (!step) return;
        const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
        next.focus();
        selectTab(next);
      });
    }
    for (const id of ["filter-trigger", "filter-source"]) {
      $(id).addEventListener("change", () => { resetPaging(); refreshEvents().catch((e) => toast(e.message)); });
    }
    $("filter-status").addEventListener("change", () => { resetPaging(); refreshEvents().catch((e) => toast(e.message)); });
    $("page-older").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.cursors.push(state.nextCursor);
      state.lastEvents = "";
      refreshEvents().catch((e) => toast(e.message));
    });
    $("page-newer").addEventListener("click", () => {
      if (state.cursors.length > 1) state.cursors.pop();
      state.lastEvents = "";
      refreshEvents().catch((e) => toast(e.message));
    });

    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : ["UTC"];
    $("tz-list").replaceChildren(...["UTC", ...zones].map((z) => el("option", { value: z })));

    if (sessionStorage.getItem(TOKEN_KEY)) signIn(sessionStorage.getItem(TOKEN_KEY));
    else signOut();
  }

  init();
})();
