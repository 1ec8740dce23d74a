// cxdesk desk: live updates over /ws/desk/ (htmx out-of-band HTML rendered by the server
// from the page's own partials), presence, keyboard shortcuts. See docs/realtime.md.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page;
  const ticketId = body.dataset.ticket ? parseInt(body.dataset.ticket, 10) : null;
  const status = document.getElementById("live-status");
  const reply = document.getElementById("reply-body");
  let socket = null;
  let typingSent = 0;
  let reconnects = 0;

  function send(obj) {
    if (socket && socket.readyState === 1) socket.send(JSON.stringify(obj));
  }

  function inboxFilters() {
    const el = document.getElementById("inbox-filters");
    return el ? JSON.parse(el.textContent) : null;
  }

  function rememberInboxOrder() {
    const ids = Array.from(document.querySelectorAll("#inbox-rows .row")).map((r) => r.dataset.ticket);
    if (ids.length) sessionStorage.setItem("cxdesk.inbox", JSON.stringify(ids));
  }

  function swap(html) {
    if (window.htmx) window.htmx.swap(document.body, html, { swapStyle: "none", swapDelay: 0, settleDelay: 0 });
  }

  function onEvent(data) {
    if (data.html) {
      // The reply you just sent may already be on the page (it reloaded after posting).
      const exists = data.event === "message.created" && document.getElementById(`message-${data.message_id}`);
      if (!exists) swap(data.html);
      if (page === "inbox") rememberInboxOrder();
    }
    if (data.event === "visitor.typing" && data.ticket_id === ticketId) showVisitorTyping();
    body.dispatchEvent(new CustomEvent("desk:event", { detail: data }));
  }

  let visitorTypingTimer = null;
  function showVisitorTyping() {
    // A web-chat visitor is typing (sent at most every 3 s): show it for 6 s.
    const el = document.getElementById("visitor-typing");
    if (!el) return;
    el.hidden = false;
    clearTimeout(visitorTypingTimer);
    visitorTypingTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  function subscribe() {
    if (ticketId) send({ subscribe_ticket: ticketId });
    const filters = inboxFilters();
    if (page === "inbox" && filters) send({ inbox: filters });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/desk/`);
    socket.onopen = () => {
      if (status) { status.classList.add("on"); status.title = "Live updates: connected"; }
      subscribe();
      if (reconnects++ > 0) {
        // Events sent while we were away are not replayed: fetch the current state.
        const tl = document.getElementById("timeline");
        if (tl && window.htmx) window.htmx.trigger(tl, "refresh");
        const form = document.getElementById("inbox-filter-form");
        if (form && window.htmx) window.htmx.trigger(form, "change");
      }
    };
    socket.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    socket.onclose = (ev) => {
      if (status) { status.classList.remove("on"); status.title = "Live updates: disconnected"; }
      if (ev.code === 4401 || ev.code === 4403) {
        // Signed out or no longer allowed: stop, and let the next page load decide.
        if (ev.code === 4401) location.reload();
        return;
      }
      setTimeout(connect, Math.min(30000, 1000 * 2 ** Math.min(reconnects, 5)));
    };
  }
  if (body.dataset.user) connect();
  setInterval(() => send({ ping: true }), 20000);

  // Notices (assignment, mentions, collisions) fade out by themselves.
  const notices = document.getElementById("notices");
  if (notices) {
    new MutationObserver(() => {
      notices.querySelectorAll(".notice:not([data-timer])").forEach((p) => {
        p.dataset.timer = "1";
        setTimeout(() => p.remove(), 12000);
      });
    }).observe(notices, { childList: true });
  }

  // The inbox list was re-fetched with other filters: follow them live.
  document.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.detail.target && ev.detail.target.id === "inbox-list") {
      const filters = inboxFilters();
      if (filters) send({ inbox: filters });
      rememberInboxOrder();
    }
  });
  if (page === "inbox") rememberInboxOrder();

  if (reply && ticketId) {
    reply.addEventListener("input", () => {
      if (Date.now() - typingSent > 4000) {
        typingSent = Date.now();
        send({ typing: ticketId });
      }
    });
  }

  const canned = document.getElementById("canned");
  if (canned && reply) {
    canned.addEventListener("change", () => {
      const option = canned.selectedOptions[0];
      if (option && option.dataset.text) {
        reply.value = (reply.value ? reply.value + "\n\n" : "") + option.dataset.text;
        reply.focus();
      }
      canned.value = "";
    });
  }

  const internal = document.getElementById("reply-internal");
  function noteMode(on) {
    if (!internal) return;
    internal.checked = on;
    document.getElementById("reply-form").classList.toggle("note-mode", on);
    reply.placeholder = on ? "Internal note — @username notifies a colleague (n)" : "Write a reply… (r)";
  }
  if (internal) internal.addEventListener("change", () => noteMode(internal.checked));

  // A row opens its ticket.
  document.addEventListener("click", (ev) => {
    const row = ev.target.closest("#inbox-rows .row");
    if (row && !ev.target.closest("a")) location.href = row.dataset.href;
  });

  // Keyboard shortcuts (shown on "?").
  let selected = -1;
  let lastKey = "";
  function neighbour(step) {
    const ids = JSON.parse(sessionStorage.getItem("cxdesk.inbox") || "[]");
    const i = ids.indexOf(String(ticketId));
    return i >= 0 ? ids[i + step] : undefined;
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.target.matches("input, textarea, select") || ev.metaKey || ev.ctrlKey || ev.altKey) return;
    const rows = Array.from(document.querySelectorAll("#inbox-rows .row"));
    const key = ev.key;
    if (key === "?") { document.getElementById("help").showModal(); return; }
    if (lastKey === "g" && key === "i") { location.href = "/desk/"; return; }
    lastKey = key;
    if ((key === "j" || key === "k") && rows.length) {
      selected = Math.max(0, Math.min(rows.length - 1, selected + (key === "j" ? 1 : -1)));
      rows.forEach((r, i) => r.classList.toggle("selected", i === selected));
      rows[selected].scrollIntoView({ block: "nearest" });
    } else if ((key === "j" || key === "k") && ticketId) {
      const next = neighbour(key === "j" ? 1 : -1);
      if (next) location.href = `/desk/tickets/${next}/`;
    } else if ((key === "Enter" || key === "o") && rows[selected]) {
      location.href = rows[selected].dataset.href;
    } else if (key === "r" && reply) {
      ev.preventDefault(); noteMode(false); reply.focus();
    } else if (key === "n" && reply) {
      ev.preventDefault(); noteMode(true); reply.focus();
    } else if (key === "s" && document.getElementById("solve-form")) {
      document.getElementById("solve-form").submit();
    }
  });
})();
