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
  let attempts = 0; // failed connects since the last stable connection (backoff)
  let connectedAt = 0;

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
    sessionStorage.setItem("cxdesk.inboxQuery", location.search.replace(/^\?/, ""));
  }

  // The ticket page's split view lists the inbox view the agent came from (set before htmx
  // reads the attribute: this script runs before DOMContentLoaded).
  const splitRows = document.getElementById("split-rows");
  if (splitRows) {
    const query = sessionStorage.getItem("cxdesk.inboxQuery") || "";
    splitRows.setAttribute("hx-get", `${splitRows.getAttribute("hx-get")}&${query}`);
  }

  function swap(html) {
    if (!window.htmx) return;
    // Live rows are re-rendered: keep the agent's bulk selection across the swap.
    const ticked = new Set(Array.from(document.querySelectorAll("#inbox-rows input[name=ids]:checked")).map((b) => b.value));
    window.htmx.swap(document.body, html, { swapStyle: "none", swapDelay: 0, settleDelay: 0 });
    if (ticked.size) {
      document.querySelectorAll("#inbox-rows input[name=ids]").forEach((b) => { if (ticked.has(b.value)) b.checked = true; });
      document.dispatchEvent(new CustomEvent("desk:selection"));
    }
  }

  // A late message (sent earlier by the customer than what is already shown, e.g. WhatsApp
  // messages overtaking each other) moves up to where its provider time puts it.
  function placeInTime(item) {
    const at = item && item.querySelector("time[datetime]");
    if (!at) return;
    const when = Date.parse(at.getAttribute("datetime"));
    let before = item;
    for (let prev = item.previousElementSibling; prev; prev = prev.previousElementSibling) {
      const t = prev.querySelector("time[datetime]");
      if (!t || Date.parse(t.getAttribute("datetime")) <= when) break;
      before = prev;
    }
    if (before !== item) item.parentNode.insertBefore(item, before);
  }

  // A message that arrived between the page being rendered and this socket joining the
  // ticket's group was broadcast to nobody here. The first presence frame for the ticket
  // says we have joined: fetch the timeline once then; later items arrive live (an item
  // already on the page is not added twice).
  let joined = false;

  function showLive() {
    if (status) { status.classList.add("on"); status.title = status.dataset.on; }
  }

  function onEvent(data) {
    // A socket's changed inbox rows come together, one frame for the lot.
    if (data.event === "inbox.rows" && Array.isArray(data.frames)) { data.frames.forEach(onEvent); return; }
    if (data.event === "inbox.following") showLive();
    if (!joined && ticketId && data.event === "presence" && data.ticket_id === ticketId) {
      joined = true;
      const tl = document.getElementById("timeline");
      if (tl && window.htmx) window.htmx.trigger(tl, "refresh");
    }
    if (data.html) {
      // The reply you just sent may already be on the page (it reloaded after posting).
      const exists = data.event === "message.created" && document.getElementById(`message-${data.message_id}`);
      if (!exists) swap(data.html);
      if (!exists && data.event === "message.created") placeInTime(document.getElementById(`message-${data.message_id}`));
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
      // An inbox is live once the server follows it (its "inbox.following" answer); other pages now.
      if (page !== "inbox") showLive();
      connectedAt = Date.now();
      subscribe();
      const tl = document.getElementById("timeline");
      if (reconnects++ > 0) {
        // Events sent while we were away are not replayed: fetch the current state.
        if (tl && window.htmx) window.htmx.trigger(tl, "refresh");
        const form = document.getElementById("inbox-filter-form");
        if (form && window.htmx) window.htmx.trigger(form, "change");
      }
    };
    socket.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    socket.onclose = (ev) => {
      if (status) { status.classList.remove("on"); status.title = status.dataset.off; }
      if (ev.code === 4401 || ev.code === 4403) {
        // Signed out or no longer allowed: stop, and let the next page load decide.
        if (ev.code === 4401) location.reload();
        return;
      }
      // Exponential backoff with full jitter, so that a restarted server is not hit by every
      // desk at the same instant; a connection that stayed up a minute starts over at 1 s.
      if (connectedAt && Date.now() - connectedAt > 60000) attempts = 0;
      connectedAt = 0;
      const ceiling = Math.min(10000, 1000 * 2 ** Math.min(attempts++, 4));
      setTimeout(connect, 500 + Math.random() * ceiling);
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

  // A call's screen-pop stays until dismissed.
  document.addEventListener("click", (ev) => {
    const dismiss = ev.target.closest(".screen-pop [data-dismiss]");
    if (dismiss) dismiss.closest(".screen-pop").remove();
  });

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
    reply.placeholder = on ? reply.dataset.notePlaceholder : reply.dataset.replyPlaceholder;
  }
  if (internal) internal.addEventListener("change", () => noteMode(internal.checked));

  // A row opens its ticket (its checkbox selects it instead).
  document.addEventListener("click", (ev) => {
    const row = ev.target.closest("#inbox-rows .row, #split-rows .row");
    if (row && !ev.target.closest("a, input, label")) location.href = row.dataset.href;
  });

  // Selects that apply at once (my status): no inline handlers, the CSP forbids them.
  document.querySelectorAll("select[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form.submit());
  });

  // --- bulk selection: click, shift-click for a range, "select all on this page" -------
  const bulkbar = document.getElementById("bulkbar");
  let lastChecked = null;
  function boxes() { return Array.from(document.querySelectorAll("#inbox-rows input[name=ids]")); }
  function bulkRefresh() {
    if (!bulkbar) return;
    const checked = boxes().filter((b) => b.checked);
    boxes().forEach((b) => b.closest(".row").classList.toggle("checked", b.checked));
    document.getElementById("bulk-count").textContent = String(checked.length);
    bulkbar.hidden = checked.length === 0;
    const all = document.getElementById("select-page");
    if (all) {
      all.checked = checked.length > 0 && checked.length === boxes().length;
      all.indeterminate = checked.length > 0 && checked.length < boxes().length;
    }
  }
  document.addEventListener("click", (ev) => {
    const box = ev.target.closest("#inbox-rows input[name=ids]");
    if (!box) return;
    // By ticket id, not element: live updates may have re-rendered the rows in between.
    const list = boxes();
    const from = list.findIndex((b) => b.value === lastChecked);
    if (ev.shiftKey && from >= 0 && lastChecked !== box.value) {
      const [a, b] = [from, list.indexOf(box)].sort((x, y) => x - y);
      list.slice(a, b + 1).forEach((other) => { other.checked = box.checked; });
    }
    lastChecked = box.value;
    bulkRefresh();
  });
  document.addEventListener("change", (ev) => {
    if (ev.target.id === "select-page") {
      boxes().forEach((b) => { b.checked = ev.target.checked; });
      bulkRefresh();
    }
  });
  document.addEventListener("desk:selection", bulkRefresh);
  const bulkClear = document.getElementById("bulk-clear");
  if (bulkClear) bulkClear.addEventListener("click", () => { boxes().forEach((b) => { b.checked = false; }); bulkRefresh(); });

  // --- the bell ---------------------------------------------------------------------
  const bell = document.getElementById("bell");
  const panel = document.getElementById("notif-panel");
  if (bell && panel) {
    bell.addEventListener("click", () => {
      const open = panel.hidden;
      panel.hidden = !open;
      bell.setAttribute("aria-expanded", String(open));
    });
    document.addEventListener("click", (ev) => {
      if (!panel.hidden && !ev.target.closest("#notif-panel, #bell")) { panel.hidden = true; bell.setAttribute("aria-expanded", "false"); }
    });
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !panel.hidden) { panel.hidden = true; bell.focus(); } });
  }

  // --- @mentions in notes: autocomplete agents' usernames ----------------------------
  if (reply && reply.dataset.agents) {
    const agents = reply.dataset.agents.split(";").map((a) => { const [u, n] = a.split("|"); return { u, n }; }).filter((a) => a.u);
    const list = document.createElement("ul");
    list.className = "mention-list";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    reply.parentNode.insertBefore(list, reply.nextSibling);
    let matches = [];
    let active = 0;
    function word() {
      const upto = reply.value.slice(0, reply.selectionStart);
      const m = upto.match(/(^|\s)@([\w.+-]*)$/);
      return m ? m[2] : null;
    }
    function render() {
      list.replaceChildren(...matches.map((a, i) => {
        const li = document.createElement("li");
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", String(i === active));
        li.textContent = a.n ? `${a.n} (@${a.u})` : `@${a.u}`;
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); choose(a); });
        return li;
      }));
      list.hidden = matches.length === 0;
    }
    function choose(a) {
      const pos = reply.selectionStart;
      const before = reply.value.slice(0, pos).replace(/@([\w.+-]*)$/, `@${a.u} `);
      reply.value = before + reply.value.slice(pos);
      reply.setSelectionRange(before.length, before.length);
      matches = [];
      render();
      reply.focus();
    }
    reply.addEventListener("input", () => {
      const w = internal && internal.checked ? word() : null;
      matches = w === null ? [] : agents.filter((a) => a.u.toLowerCase().startsWith(w.toLowerCase()) || (a.n || "").toLowerCase().includes(w.toLowerCase())).slice(0, 6);
      active = 0;
      render();
    });
    reply.addEventListener("keydown", (ev) => {
      if (list.hidden) return;
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        active = (active + (ev.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length;
        render();
      } else if (ev.key === "Enter" || ev.key === "Tab") {
        ev.preventDefault();
        choose(matches[active]);
      } else if (ev.key === "Escape") {
        matches = [];
        render();
      }
    });
  }

  // --- a knowledge-base article link into the reply ----------------------------------
  const kb = document.getElementById("kb-search");
  if (kb && reply) {
    const results = document.getElementById("kb-results");
    let found = [];
    let timer = null;
    kb.addEventListener("input", () => {
      const hit = found.find((r) => r.title === kb.value);
      if (hit) {
        reply.value = (reply.value ? reply.value.replace(/\s*$/, "") + "\n\n" : "") + `${hit.title}: ${hit.url}`;
        kb.value = "";
        reply.focus();
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(async () => {
        if (kb.value.trim().length < 2) return;
        const res = await fetch(`${kb.dataset.url}?q=${encodeURIComponent(kb.value)}&lang=${encodeURIComponent(kb.dataset.lang || "")}`, { credentials: "same-origin" });
        if (!res.ok) return;
        found = (await res.json()).results || [];
        results.replaceChildren(...found.map((r) => { const o = document.createElement("option"); o.value = r.title; return o; }));
      }, 200);
    });
  }

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
    if (key === "/") {
      const q = document.querySelector("input[name=q]");
      if (q) { ev.preventDefault(); q.focus(); }
      return;
    }
    if (key === "x" && rows[selected]) {
      const box = rows[selected].querySelector("input[name=ids]");
      if (box) { box.checked = !box.checked; lastChecked = box.value; bulkRefresh(); }
      return;
    }
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

  // <select data-autosubmit>: submit its form on change (no inline on* handlers: CSP);
  // their "apply" buttons are for browsers without script.
  document.documentElement.classList.add("js");
  document.addEventListener("change", (ev) => {
    if (ev.target.matches("[data-autosubmit]") && ev.target.form) ev.target.form.submit();
  });

  // Remote images in mail are not loaded until an agent asks (tracking pixels): the
  // sanitiser moved their address to data-remote-src; "Load images" restores it for one message.
  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("[data-load-images]");
    if (!button) return;
    const scope = document.getElementById(button.dataset.loadImages);
    if (!scope) return;
    scope.querySelectorAll("img[data-remote-src]").forEach((img) => {
      // Through our server: the sender sees the desk's address, not the agent's.
      img.src = `${button.dataset.proxy}?u=${encodeURIComponent(img.dataset.remoteSrc)}`;
      img.removeAttribute("data-remote-src");
    });
    button.parentElement.remove();
  });
})();
