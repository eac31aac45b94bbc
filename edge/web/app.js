// The demo page's script (edge/web.c): a client of the edge's public routes only.
//
// Session: GET /api/v1/session (the access_token cookie); on 401 one POST /api/v1/session/refresh,
// then the sign-in form (GET /auth/google?login_hint=...). Inbox: GET /api/v1/threads?role=inbox,
// a thread: GET /api/v1/threads/:id (bodies are the sanitised documents, shown in a sandboxed
// iframe). Live: EventSource on /api/v1/emails/stream; new_email, email_updated, email_deleted and
// unread_count_updated reload the list (debounced), so what is shown is what the store holds.
// Text from the server is only ever set as textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { user: null, cursor: null, stream: null, reload: null, fresh: new Set(),
  open: null, refreshTimer: null };

function show(id, on) { $(id).hidden = !on; }

function error(text) {
  $("error").textContent = text || "";
  show("error", !!text);
}

async function api(path, options = {}, retried = false) {
  const res = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
  if (res.status === 401 && !retried && path !== "/api/v1/session/refresh") {
    const r = await fetch("/api/v1/session/refresh", { method: "POST", credentials: "same-origin" });
    if (r.ok) return api(path, options, true);
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  return { status: res.status, body };
}

function when(value) {
  if (value === null || value === undefined) return "";
  const ms = typeof value === "number" ? (value < 1e12 ? value * 1000 : value) : Date.parse(value);
  const d = new Date(ms);
  if (isNaN(d)) return String(value);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleDateString();
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

async function start() {
  error("");
  const { status, body } = await api("/api/v1/session");
  if (status !== 200 || !body || !body.data) {
    show("signin", true);
    show("app", false);
    show("signout", false);
    $("who").textContent = status === 401 ? "not signed in" : `session: ${status}`;
    return;
  }
  state.user = body.data.user;
  $("who").textContent = `${state.user.email} (user ${state.user.id})`;
  show("signin", false);
  show("signout", true);
  if (body.data.terms && body.data.terms.required) {
    $("terms-version").textContent = body.data.terms.version;
    show("terms", true);
    return;
  }
  show("terms", false);
  show("app", true);
  show("events-box", true);
  if (location.pathname !== "/") history.replaceState(null, "", "/");
  await loadInbox();
  openStream();
  // Access tokens live AINBOX_ACCESS_TTL_S (15 min by default): renew well before.
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => {
    fetch("/api/v1/session/refresh", { method: "POST", credentials: "same-origin" });
  }, 5 * 60 * 1000);
}

async function loadInbox(more) {
  const q = new URLSearchParams({ role: "inbox", limit: "50" });
  if (more && state.cursor) q.set("cursor", state.cursor);
  const { status, body } = await api(`/api/v1/threads?${q}`);
  if (status !== 200) {
    error(`inbox: ${status} ${body && body.error ? body.error.message || body.error.code : ""}`);
    return;
  }
  error("");
  const data = body.data || {};
  const list = $("threads");
  if (!more) list.replaceChildren();
  for (const t of data.threads || []) list.append(threadRow(t));
  if (!list.children.length) list.append(el("li", "hint", "No mail yet: the first sync may still be running."));
  state.cursor = data.next_cursor || null;
  show("more", !!state.cursor);
  const parts = [];
  if (typeof data.total === "number") parts.push(`${data.total} threads`);
  if (typeof data.unread === "number") parts.push(`${data.unread} unread`);
  $("count").textContent = parts.length ? `(${parts.join(", ")})` : "";
}

function threadRow(t) {
  const li = el("li", t.unread ? "unread" : "");
  li.dataset.id = t.id;
  if (state.fresh.has(t.id)) li.classList.add("fresh");
  li.append(el("span", "from", t.latest_from || t.from || "(unknown sender)"));
  li.append(el("span", "date", when(t.date)));
  const subject = (t.subject || "(no subject)") + (t.count > 1 ? ` (${t.count})` : "");
  li.append(el("span", "subject", subject));
  li.append(el("span", "snippet", t.snippet || ""));
  li.addEventListener("click", () => openThread(t.id));
  return li;
}

async function openThread(id) {
  state.open = id;
  const box = $("thread");
  box.replaceChildren(el("p", "hint", "Loading..."));
  const { status, body } = await api(`/api/v1/threads/${encodeURIComponent(id)}`);
  if (state.open !== id) return;
  if (status !== 200) {
    box.replaceChildren(el("p", "hint", `thread: ${status}`));
    return;
  }
  const data = body.data || {};
  box.replaceChildren(el("h2", "", (data.thread && data.thread.subject) || "(no subject)"));
  for (const m of data.messages || []) {
    const div = el("div", "msg");
    const from = m.from_name ? `${m.from_name} <${m.from_addr || ""}>` : m.from_addr || "";
    div.append(el("div", "meta", `${from}  ${when(m.date)}  to ${m.to || ""}`));
    if (m.safe_html) {
      const frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
      frame.srcdoc = m.safe_html;
      div.append(frame);
    } else {
      div.append(el("pre", "", m.text || m.snippet || ""));
    }
    box.append(div);
  }
}

function logEvent(ev) {
  const li = el("li", "", `${new Date().toLocaleTimeString()} ${ev.type} ` +
    (ev.email ? `${ev.email.subject || ev.email.id || ""}` : "") +
    (ev.type === "unread_count_updated" ? `unread ${ev.unread} of ${ev.total}` : "") +
    (ev.type === "email_deleted" ? `${ev.emailId}` : "") +
    (ev.type === "sync_progress" ? `${ev.phase} ${ev.done}${ev.total ? "/" + ev.total : ""}` : ""));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}

function onEvent(ev) {
  logEvent(ev);
  switch (ev.type) {
    case "unread_count_updated":
      $("unread").textContent = ev.unread;
      show("unread", ev.unread > 0);
      return;
    case "new_email":
      if (ev.email && ev.email.threadId) state.fresh.add(ev.email.threadId);
      break;
    case "email_updated":
    case "email_deleted":
    case "sync_progress":
      break;
    default:
      return;
  }
  clearTimeout(state.reload);
  state.reload = setTimeout(() => loadInbox(false), 300);
}

function openStream() {
  if (state.stream) state.stream.close();
  const es = new EventSource("/api/v1/emails/stream");
  state.stream = es;
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  es.onmessage = (m) => {
    try { onEvent(JSON.parse(m.data)); } catch (e) { /* a comment or a frame we do not know */ }
  };
  es.onerror = async () => {
    $("live").textContent = "reconnecting";
    $("live").className = "live off";
    if (es.readyState === EventSource.CLOSED) {
      // Refused (an expired access token): renew it, then open again.
      await fetch("/api/v1/session/refresh", { method: "POST", credentials: "same-origin" });
      setTimeout(openStream, 1000);
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const hint = $("hint").value.trim();
    location.href = "/auth/google" + (hint ? `?login_hint=${encodeURIComponent(hint)}` : "");
  });
  $("terms-accept").addEventListener("click", async () => {
    const version = $("terms-version").textContent;
    const { status } = await api("/api/v1/terms/accept", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version }) });
    if (status === 200) start(); else error(`terms: ${status}`);
  });
  $("signout").addEventListener("click", async () => {
    await fetch("/auth/logout", { method: "POST", credentials: "same-origin" });
    if (state.stream) state.stream.close();
    location.href = "/";
  });
  $("more").addEventListener("click", () => loadInbox(true));
  start();
});
