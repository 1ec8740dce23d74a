// cxdesk web-chat widget. Embed on any site with one tag:
//   <script src="https://desk.example.com/static/cxdesk/widget.js" data-inbox="3" async></script>
// No framework, no CDN, no inline styles: the UI lives in a shadow root styled by
// widget.css from the same server. Strings, direction (RTL), pre-chat mode and
// invitation rules come from the server (/chat/<inbox>/config/). The visitor's signed
// token is kept in localStorage, so the conversation resumes after a reload or on
// another page. Transport: websocket /ws/chat/, or HTTP (POST frames, GET poll) when
// websockets are blocked. Page views send URL, title and referrer only. See docs/webchat.md.
(function () {
  "use strict";
  const script = document.currentScript || document.querySelector("script[data-inbox][src*='widget.js']");
  if (!script || window.__cxdeskWidget) return;
  window.__cxdeskWidget = true;
  const inbox = script.dataset.inbox;
  const server = (script.dataset.server || new URL(script.src).origin).replace(/\/$/, "");
  const storeKey = `cxdesk.chat.${server}.${inbox}`;
  const langKey = `${storeKey}.lang`;
  // The visitor's own choice (the switcher in the header) sticks; else the page's or browser's.
  let lang = localStorage.getItem(langKey) ||
    (script.dataset.lang || document.documentElement.lang || navigator.language || "en").slice(0, 2);
  const params = new URLSearchParams(location.search);
  const linkToken = params.get("cx_t") || "";

  let cfg = null;
  let S = {};
  let token = localStorage.getItem(storeKey) || "";
  let ws = null;
  let httpMode = false;
  let pollTimer = null;
  let lastId = 0;
  let started = false;
  let identified = false;
  let opened = false;
  let offlineTimer = null;
  let offlineMode = false;
  let typingSentAt = 0;
  let invitationId = null;
  let pendingOutcome = null;
  let pending = [];
  let wsFailures = 0;
  const seen = new Set();

  // --- DOM --------------------------------------------------------------------------
  const host = document.createElement("div");
  host.id = "cxdesk-chat";
  const root = host.attachShadow({ mode: "open" });
  const el = (tag, attrs, text) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text) n.textContent = text;
    return n;
  };
  const css = el("link", { rel: "stylesheet", href: `${server}/static/cxdesk/widget.css` });
  const launcher = el("button", { class: "launcher", type: "button", "aria-expanded": "false", "aria-controls": "panel" });
  launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true" width="26" height="26"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
  const panel = el("section", { class: "panel", id: "panel", role: "dialog", "aria-modal": "false", hidden: "" });
  const head = el("header", { class: "head" });
  const title = el("h2", { id: "cx-title" });
  const closeBtn = el("button", { class: "close", type: "button" });
  closeBtn.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true" width="18" height="18"><path fill="currentColor" d="M6 6l12 12M18 6L6 18" stroke="currentColor" stroke-width="2"/></svg>';
  const langPick = el("select", { class: "lang", id: "cx-lang" });
  head.append(title, langPick, closeBtn);
  const log = el("ol", { class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0" });
  const status = el("p", { class: "status", "aria-live": "polite" });
  const invite = el("div", { class: "invite", role: "alertdialog", hidden: "" });
  const inviteText = el("p");
  const inviteYes = el("button", { type: "button", class: "primary" });
  const inviteNo = el("button", { type: "button" });
  invite.append(inviteText, inviteYes, inviteNo);

  const prechat = el("form", { class: "form prechat", hidden: "" });
  const nameInput = el("input", { name: "name", autocomplete: "name", id: "cx-name" });
  const addrInput = el("input", { name: "address", autocomplete: "email", id: "cx-address", inputmode: "email" });
  const nameLabel = el("label", { for: "cx-name" });
  const addrLabel = el("label", { for: "cx-address" });
  const prechatGo = el("button", { type: "submit", class: "primary" });
  const prechatSkip = el("button", { type: "button", class: "link" });
  prechat.append(nameLabel, nameInput, addrLabel, addrInput, prechatGo, prechatSkip);

  const codeForm = el("form", { class: "form code", hidden: "" });
  const codeLabel = el("label", { for: "cx-code" });
  const codeInput = el("input", { id: "cx-code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "6" });
  const codeGo = el("button", { type: "submit", class: "primary" });
  codeForm.append(codeLabel, codeInput, codeGo);

  const compose = el("form", { class: "compose" });
  const textLabel = el("label", { for: "cx-text", class: "sr" });
  const text = el("textarea", { id: "cx-text", rows: "2", dir: "auto" });
  const fileLabel = el("label", { class: "attach", for: "cx-file" });
  fileLabel.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true" width="20" height="20"><path fill="none" stroke="currentColor" stroke-width="2" d="M21 12l-8.5 8.5a5 5 0 0 1-7-7L14 5a3.5 3.5 0 0 1 5 5l-8.5 8.5a2 2 0 0 1-3-3L15 8"/></svg><span class="sr"></span>';
  const file = el("input", { id: "cx-file", type: "file", class: "sr" });
  const sendBtn = el("button", { type: "submit", class: "primary" });
  compose.append(textLabel, text, fileLabel, file, sendBtn);
  const typingLine = el("p", { class: "typing", hidden: "" });
  panel.append(head, invite, log, typingLine, status, prechat, codeForm, compose);
  root.append(css, launcher, panel);

  // --- transport --------------------------------------------------------------------
  function send(frame) {
    if (!httpMode && ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return; }
    if (httpMode) { postFrames([frame]); return; }
    pending.push(frame);
  }

  let httpChain = Promise.resolve();
  function postFrames(frames) {
    // One request at a time, so a frame always carries the token the start frame returned.
    httpChain = httpChain.then(() => fetch(`${server}/chat/${inbox}/frames/`, {
      method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ token, frames }),
    }).then((r) => r.json()).then((data) => {
      if (data.error) { showStatus(data.error.message); return; }
      (data.frames || []).forEach(onFrame);
    })).catch(() => showStatus(S.error));
  }

  function poll() {
    clearTimeout(pollTimer);
    if (!token) { pollTimer = setTimeout(poll, 3000); return; }
    fetch(`${server}/chat/${inbox}/poll/?token=${encodeURIComponent(token)}&after=${lastId}`, { mode: "cors", credentials: "omit" })
      .then((r) => r.json()).then((data) => { (data.frames || []).forEach(onFrame); })
      .catch(() => {}).finally(() => { pollTimer = setTimeout(poll, opened ? 3000 : 10000); });
  }

  let startLang = lang;  // the language the last start frame carried
  function startFrame() { startLang = lang; return { type: "start", token, link: linkToken, lang }; }

  function connect() {
    const wsUrl = server.replace(/^http/, "ws") + `/ws/chat/?inbox=${encodeURIComponent(inbox)}`;
    let openedOnce = false;
    try { ws = new WebSocket(wsUrl); } catch (e) { return fallback(); }
    ws.onopen = () => {
      openedOnce = true; wsFailures = 0;
      ws.send(JSON.stringify(startFrame()));
      const queued = pending; pending = [];
      queued.forEach((f) => ws.send(JSON.stringify(f)));
      clearInterval(ws._ping);
      ws._ping = setInterval(() => send({ type: "ping" }), 30000);  // keeps "online" for the desk
    };
    ws.onmessage = (ev) => { try { onFrame(JSON.parse(ev.data)); } catch (e) { /* ignore */ } };
    ws.onclose = () => {
      clearInterval(ws._ping);
      ws = null;
      if (!openedOnce && ++wsFailures >= 2) return fallback();
      setTimeout(connect, Math.min(30000, 1000 * 2 ** wsFailures++));
    };
  }

  function fallback() {
    // Websockets blocked (proxy, firewall): the same frames over HTTP, replies by polling.
    httpMode = true;
    const queued = pending; pending = [];
    postFrames([startFrame(), ...queued]);
    poll();
  }

  // --- frames from the server ---------------------------------------------------------
  function onFrame(f) {
    if (!f || !f.type) return;
    if (f.type === "session") {
      token = f.token; localStorage.setItem(storeKey, token);
      started = true;
      // The language was switched while the session was being set up: tell the server now.
      if (lang !== startLang) send({ type: "language", lang });
      identified = !!f.identified;
      (f.messages || []).forEach(addMessage);
      if (f.pending) showCode();
      if (f.came_from_email) maybeInvite("email_link");
      trackPage();
      updateForms();
    } else if (f.type === "message") {
      addMessage(f);
      if (f.from === "agent") { clearTimeout(offlineTimer); typingLine.hidden = true; }
    } else if (f.type === "history") {
      (f.messages || []).forEach(addMessage);
    } else if (f.type === "typing") {
      typingLine.hidden = false;
      clearTimeout(typingLine._t);
      typingLine._t = setTimeout(() => { typingLine.hidden = true; }, 6000);
    } else if (f.type === "read") {
      root.querySelectorAll(".visitor .receipt").forEach((n) => { n.textContent = S.read; });
    } else if (f.type === "identify") {
      if (f.status === "code_sent") showCode();
      else { codeForm.hidden = true; identified = true; showStatus(f.status === "verified" ? S.verified : (offlineMode ? S.offline_sent : S.linked)); updateForms(); }
    } else if (f.type === "page") {
      checkRules(f.visits || 1);
    } else if (f.type === "invitation") {
      if (pendingOutcome !== null) {  // answered before the server told its id
        send({ type: "invitation_outcome", id: f.id, accepted: pendingOutcome });
        pendingOutcome = null;
      } else {
        invitationId = f.id;
      }
    } else if (f.type === "error") {
      showStatus(f.message);
    }
  }

  function addMessage(m) {
    if (!m.id || seen.has(m.id)) return;
    seen.add(m.id);
    lastId = Math.max(lastId, m.id);
    const li = el("li", { class: m.from === "agent" ? "agent" : "visitor", id: `m${m.id}` });
    const who = el("span", { class: "who" }, m.from === "agent" ? (m.author || S.agent) : S.you);
    const body = el("p", { class: "body", dir: "auto" }, m.text);
    li.append(who, body);
    (m.attachments || []).forEach((a) => {
      li.append(a.url ? el("a", { class: "file", href: a.url, rel: "noopener", target: "_blank" }, a.name) : el("span", { class: "file" }, a.name));
    });
    if (m.from === "visitor") li.append(el("span", { class: "receipt" }));
    log.append(li);
    log.scrollTop = log.scrollHeight;
    if (m.from === "agent") {
      if (opened && document.visibilityState === "visible") send({ type: "read", id: m.id });
      else launcher.classList.add("unread");
    }
  }

  // --- UI ------------------------------------------------------------------------------
  function showStatus(message) { status.textContent = message || ""; }
  function showCode() { codeForm.hidden = false; prechat.hidden = true; showStatus(S.code_sent); codeInput.focus(); }

  function updateForms() {
    const needPrechat = cfg && cfg.prechat !== "none" && !identified && !sessionStorage.getItem(`${storeKey}.skip`) && lastId === 0;
    prechat.hidden = !needPrechat;
    prechatSkip.hidden = cfg && cfg.prechat === "required";
    compose.hidden = needPrechat && cfg.prechat === "required";
  }

  function open(focus) {
    opened = true;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.classList.remove("unread");
    updateForms();
    const last = log.lastElementChild;
    if (last && last.classList.contains("agent")) send({ type: "read", id: lastId });
    if (focus !== false) (prechat.hidden ? text : nameInput).focus();
  }

  function close() {
    opened = false;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", () => (opened ? close() : open()));
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });

  prechat.addEventListener("submit", (e) => {
    e.preventDefault();
    if (cfg.prechat === "required" && !addrInput.value.trim()) { addrInput.focus(); showStatus(S.email); return; }
    send({ type: "identify", name: nameInput.value, address: addrInput.value });
    sessionStorage.setItem(`${storeKey}.skip`, "1");
    prechat.hidden = true; compose.hidden = false; text.focus();
  });
  prechatSkip.addEventListener("click", () => {
    sessionStorage.setItem(`${storeKey}.skip`, "1");
    prechat.hidden = true; text.focus();
  });
  codeForm.addEventListener("submit", (e) => {
    e.preventDefault();
    send({ type: "verify", code: codeInput.value });
    codeInput.value = "";
  });

  compose.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = text.value.trim();
    const chosen = file.files && file.files[0];
    if (chosen) { upload(chosen, value); text.value = ""; return; }
    if (!value) return;
    send({ type: "message", text: value, client_id: `${Date.now()}-${Math.random().toString(36).slice(2, 10)}` });
    text.value = "";
    decided(true);
    armOffline();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); compose.requestSubmit(); }
  });
  text.addEventListener("input", () => {
    const now = Date.now();
    if (now - typingSentAt > 3000) { typingSentAt = now; send({ type: "typing" }); }
  });

  function upload(chosen, value) {
    if (cfg && chosen.size > cfg.max_attachment_bytes) { showStatus(S.error); return; }
    const form = new FormData();
    form.append("token", token);
    form.append("client_id", `f${Date.now()}`);
    form.append("text", value);
    form.append("file", chosen);
    fetch(`${server}/chat/${inbox}/upload/`, { method: "POST", mode: "cors", credentials: "omit", body: form })
      .then((r) => r.json()).then((data) => {
        if (data.error) showStatus(data.error.message); else (data.frames || []).forEach(onFrame);
      }).catch(() => showStatus(S.error));
    file.value = "";
    armOffline();
  }

  function armOffline() {
    // No agent answer within N minutes: say so and ask for an email (unless we have one).
    clearTimeout(offlineTimer);
    const minutes = (cfg && cfg.offline_after_minutes) || 5;
    offlineTimer = setTimeout(() => {
      showStatus(S.offline);
      offlineMode = true;
      if (!identified) { prechat.hidden = false; prechatSkip.hidden = true; addrInput.focus(); }
    }, minutes * 60000 * (window.__cxdeskTimeScale || 1));
  }

  // --- trail and invitations -----------------------------------------------------------
  function trackPage() {
    // URL (without our link token), title and referrer. Never keystrokes or form contents.
    const url = new URL(location.href);
    send({ type: "page", url: url.href, title: document.title.slice(0, 300), referrer: document.referrer.slice(0, 2000) });
  }

  function matches(rule) {
    const pattern = rule.url || "*";
    const re = new RegExp("^" + pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
    return re.test(location.pathname) || re.test(location.href);
  }

  let invited = false;
  function maybeInvite(kind, visits) {
    if (!cfg || invited || opened) return;
    cfg.invitations.forEach((rule, index) => {
      if (invited || rule.rule !== kind || !matches(rule)) return;
      if (kind === "returning" && (visits || 0) < (rule.visits || 3)) return;
      showInvitation(rule, index);
    });
  }

  function checkRules(visits) {
    maybeInvite("returning", visits);
    (cfg ? cfg.invitations : []).forEach((rule, index) => {
      if (rule.rule === "time_on_page" && matches(rule)) {
        setTimeout(() => { if (!invited && !opened) showInvitation(rule, index); }, (rule.seconds || 30) * 1000 * (window.__cxdeskTimeScale || 1));
      }
    });
  }

  function showInvitation(rule, index) {
    invited = true;
    send({ type: "invitation", rule: index, url: location.href });
    inviteText.textContent = rule.message || S.invitation;
    panel.hidden = false;
    invite.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    inviteYes.focus();
  }

  function decided(accepted) {
    if (invite.hidden && invitationId === null) return;
    invite.hidden = true;
    if (invitationId !== null) send({ type: "invitation_outcome", id: invitationId, accepted });
    else pendingOutcome = accepted;  // the invitation's id is still on its way: sent when it comes
    invitationId = null;
  }
  inviteYes.addEventListener("click", () => { decided(true); open(); });
  inviteNo.addEventListener("click", () => { decided(false); close(); });

  // --- start ---------------------------------------------------------------------------
  let hello = null;
  function applyConfig(data) {
    cfg = data; S = data.strings;
    langPick.replaceChildren(...(data.languages || []).map(([code, name]) => {
      const o = el("option", { value: code, lang: code }, name);
      if (code === data.lang) o.selected = true;
      return o;
    }));
    langPick.setAttribute("aria-label", S.language);
    panel.setAttribute("dir", data.dir); panel.setAttribute("lang", data.lang);
    invite.setAttribute("dir", data.dir);
    panel.setAttribute("aria-labelledby", "cx-title");
    title.textContent = S.title;
    launcher.setAttribute("aria-label", S.open);
    closeBtn.setAttribute("aria-label", S.close);
    log.setAttribute("aria-label", S.title);
    nameLabel.textContent = S.name; addrLabel.textContent = S.email;
    prechatGo.textContent = S.start; prechatSkip.textContent = S.anonymous;
    codeLabel.textContent = S.code; codeGo.textContent = S.verify;
    textLabel.textContent = S.placeholder; text.setAttribute("placeholder", S.placeholder);
    text.setAttribute("maxlength", String(data.max_text));
    fileLabel.querySelector(".sr").textContent = S.attach;
    file.setAttribute("accept", data.attachment_types.join(","));
    sendBtn.textContent = S.send;
    typingLine.textContent = S.typing;
    inviteYes.textContent = S.accept; inviteNo.textContent = S.dismiss;
    if (!hello) {
      hello = el("li", { class: "agent greeting" });
      hello.append(el("p", { class: "body", dir: "auto" }));
      log.append(hello);
    }
    hello.querySelector("p").textContent = S.greeting;
    updateForms();
  }

  function loadConfig() {
    return fetch(`${server}/chat/${inbox}/config/?lang=${encodeURIComponent(lang)}`, { mode: "cors", credentials: "omit" })
      .then((r) => r.json());
  }

  langPick.addEventListener("change", () => {
    lang = langPick.value;
    localStorage.setItem(langKey, lang);
    loadConfig().then((data) => { if (!data.error) applyConfig(data); });
    if (started) send({ type: "language", lang });
  });

  function boot() {
    document.body.append(host);
    loadConfig().then((data) => {
      if (data.error) return;
      applyConfig(data);
      if (window.WebSocket && !script.hasAttribute("data-http")) connect(); else fallback();
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot); else boot();
})();
