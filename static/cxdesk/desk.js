// cxdesk desk: live updates over /ws/desk/, presence, keyboard shortcuts.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page;
  const ticketId = body.dataset.ticket ? parseInt(body.dataset.ticket, 10) : null;
  const status = document.getElementById("live-status");
  const presence = {};
  let socket = null;
  let typingSent = 0;

  function notice(text) {
    const box = document.getElementById("notices");
    if (!box) return;
    const p = document.createElement("p");
    p.className = "notice";
    p.textContent = text;
    box.appendChild(p);
    setTimeout(() => p.remove(), 8000);
  }

  function renderPresence() {
    const el = document.getElementById("presence");
    if (!el) return;
    const now = Date.now();
    const parts = [];
    for (const [name, info] of Object.entries(presence)) {
      if (now - info.at > 15000) { delete presence[name]; continue; }
      parts.push(`${name} is ${info.state}`);
    }
    el.textContent = parts.join(" · ");
  }
  setInterval(renderPresence, 3000);

  function refresh(selector) {
    const el = document.querySelector(selector);
    if (el && window.htmx) window.htmx.trigger(el, "refresh");
  }

  function onEvent(data) {
    const e = data.event;
    if (ticketId && data.ticket_id === ticketId) {
      if (e === "message.created" || e === "message.status" || e === "ticket.event") refresh("#timeline");
      if (e === "presence" && data.user !== body.dataset.user) {
        presence[data.user] = { state: data.state, at: Date.now() };
        renderPresence();
      }
      if (e === "message.created" && data.author && data.author !== body.dataset.user && presence[data.author] === undefined) {
        const typing = document.getElementById("reply-body");
        if (typing && typing.value.trim()) notice(`${data.author} just replied while you were typing.`);
      }
    }
    if (page === "inbox" && (e === "ticket.activity" || e === "ticket.created" || e === "ticket.updated")) {
      refresh("#inbox-list");
    }
    if (e === "ticket.assigned") notice(`Ticket CX-${data.ticket_id} was assigned to you.`);
    if (e === "webhook.disabled") notice(`A webhook to ${data.url} was disabled after repeated failures.`);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/desk/`);
    socket.onopen = () => {
      if (status) status.classList.add("on");
      if (ticketId) socket.send(JSON.stringify({ subscribe_ticket: ticketId }));
    };
    socket.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    socket.onclose = (ev) => {
      if (status) status.classList.remove("on");
      if (ev.code !== 4403) setTimeout(connect, 3000);
    };
  }
  if (body.dataset.user) connect();

  const reply = document.getElementById("reply-body");
  if (reply && ticketId) {
    reply.addEventListener("input", () => {
      if (socket && socket.readyState === 1 && Date.now() - typingSent > 4000) {
        typingSent = Date.now();
        socket.send(JSON.stringify({ typing: ticketId }));
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

  // Live-refreshed inbox list: a row opens its ticket.
  document.addEventListener("click", (ev) => {
    const row = ev.target.closest("tr.row");
    if (row && !ev.target.closest("a")) location.href = row.dataset.href;
  });

  // Keyboard shortcuts
  let selected = -1;
  let lastKey = "";
  document.addEventListener("keydown", (ev) => {
    if (ev.target.matches("input, textarea, select") || ev.metaKey || ev.ctrlKey || ev.altKey) return;
    const rows = Array.from(document.querySelectorAll("tr.row"));
    const key = ev.key;
    if (key === "?") { document.getElementById("help").showModal(); return; }
    if (lastKey === "g" && key === "i") { location.href = "/desk/"; return; }
    lastKey = key;
    if ((key === "j" || key === "k") && rows.length) {
      selected = Math.max(0, Math.min(rows.length - 1, selected + (key === "j" ? 1 : -1)));
      rows.forEach((r, i) => r.classList.toggle("selected", i === selected));
      rows[selected].scrollIntoView({ block: "nearest" });
    } else if (key === "Enter" && rows[selected]) {
      location.href = rows[selected].dataset.href;
    } else if (key === "r" && reply) {
      ev.preventDefault(); document.getElementById("reply-internal").checked = false; reply.focus();
    } else if (key === "n" && reply) {
      ev.preventDefault(); document.getElementById("reply-internal").checked = true; reply.focus();
    } else if (key === "s" && document.getElementById("solve-form")) {
      document.getElementById("solve-form").submit();
    }
  });
})();
