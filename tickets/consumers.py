"""The desk's websocket (`/ws/desk/`): signed-in, active staff only.

Events from `cxdesk.realtime.broadcast_on_commit` arrive here per group; the consumer
renders the SAME partial templates the pages use and sends them as htmx out-of-band HTML
(`{"event": ..., "html": "<... hx-swap-oob=...>"}`), which the page swaps in with
`htmx.swap`. What the browser may send:

    {"subscribe_ticket": id}     join ticket.<id>, announce "viewing"
    {"unsubscribe_ticket": id}
    {"typing": id}               announce "replying" on a subscribed ticket
    {"inbox": {view, filters…}}  the inbox view this page shows (rows and counts follow it;
                                 the first one is answered {"event": "inbox.following"})
    {"ping": true}               keep presence alive (every ~20 s)

Limits (a socket is one agent's; nothing it sends may hurt the others):
- a frame over MAX_FRAME_BYTES closes this socket (1009); a frame that is not a JSON
  object, or holds NUL bytes, gets an {"error": …} frame and is otherwise ignored;
  nothing a frame holds raises out of the consumer;
- at most RATE_FRAMES frames per RATE_SECONDS per socket (more are dropped with one error
  frame; a flood well past it closes the socket, 1008); "typing" is coalesced: at most one
  presence broadcast per ticket per TYPING_EVERY seconds however fast keys arrive;
- the socket closes (4401) when its user signs out, is deactivated, loses staff rights or
  changes password: pushed by tickets.apps signal receivers, and checked again (the session
  auth hash) on every frame received, for changes made without signals.

See docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from accounts import twofactor
from accounts.roles import forget_role, role_groups, role_remember, user_role
from cxdesk.i18n import agent_language_for_scope
from cxdesk.middleware import MalformedInput, check_json
from cxdesk.sockets import DispatchWithoutHop, database_sync_to_async, in_pool

from . import presence

if TYPE_CHECKING:
    from .selectors import LiveRow

log = logging.getLogger(__name__)

COLLISION_WINDOW = 60  # seconds after the last keystroke in which someone else's reply warns
MAX_FRAME_BYTES = 64 * 1024
RATE_FRAMES, RATE_SECONDS = 30, 10.0  # per socket
FLOOD_FRAMES = 300  # dropped frames in one window that close the socket
TYPING_EVERY = 3.0  # seconds between two "is replying" broadcasts for one ticket
INBOX_SOON = 0.05  # seconds: changes this close together are rendered together
INBOX_EVERY = 0.5  # seconds: inbox rows re-rendered at most this often per socket (bench README, tenth pass)
COUNTS_EVERY = 5.0  # seconds: the inbox's view counts re-counted at most this often per socket
COUNTS_SPREAD = 0.5  # each socket's period is COUNTS_EVERY × 1 to 1 + this, drawn at random
# The inbox renders (rows and counts) run on one thread of their own: off the thread that
# renders the messages an agent is reading, and not on several threads, which in one Python
# process only fight for its lock. 200 agents on their inboxes at 20 changes a second: p95
# of a message reaching the agent's open ticket 126–142 ms with one thread, 134–175 with two,
# 214–275 with the event loop's pool of six (bench/README.md, tenth pass).
INBOX_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbox-render")


class DeskConsumer(DispatchWithoutHop, AsyncJsonWebsocketConsumer):
    hub: InboxHub | None = None  # the process's inbox hub, once the page follows the inbox

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff or not user.is_active:
            await self.close(code=4403)
            return
        if not await database_sync_to_async(twofactor.scope_ok)(self.scope):
            await self.close(code=4403)  # signed in with a password, second step not done
            return
        self.user = user
        self.name = user.get_full_name() or user.username
        self.groups_joined: set[str] = set()
        self.tickets: set[int] = set()
        self.typed: dict[int, float] = {}
        self.inbox_filters: dict[str, str] | None = None
        self.following_inbox = False
        self.saved_active: int | None = None
        self.auth_hash = await database_sync_to_async(user.get_session_auth_hash)()
        # Live fragments render in the agent's desk language, else the handshake's (cookie,
        # Accept-Language), like the page they land in.
        self.language = await database_sync_to_async(agent_language_for_scope)(user.pk, self.scope)
        self.window_start, self.window_frames, self.dropped = time.monotonic(), 0, 0
        self.typing_sent: dict[int, float] = {}
        self.inbox_dirty: dict[int, str] = {}  # ticket id → first event name, until the next render
        self.inbox_flush: asyncio.Future | None = None
        self.rows_at = float("-inf")  # when this socket's changed rows were last rendered
        self.counts_at = float("-inf")  # when this socket's view counts were last counted
        self.counts_later: asyncio.Future | None = None
        self.counts_stale = False  # rows shown since the counts were last counted
        # Sockets whose counts were counted together (a change on a busy desk) would count
        # together every COUNTS_EVERY, 200 at once: each socket's own period drifts them apart.
        self.counts_every = COUNTS_EVERY * (1 + random.random() * COUNTS_SPREAD)  # noqa: S311 - not a secret
        for group in ("desk", f"agent.{user.pk}"):
            await self._join(group)
        await self.accept()

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def _leave(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.discard(group)

    async def disconnect(self, code: int) -> None:
        for pending in (getattr(self, "inbox_flush", None), getattr(self, "counts_later", None)):
            if pending is not None:
                pending.cancel()
        if getattr(self, "following_inbox", False):
            self.following_inbox = False
            await inbox_hub(self.channel_layer).unfollow(self)
        for ticket_id in list(getattr(self, "tickets", ())):
            await self._unsubscribe(ticket_id)
        for group in list(getattr(self, "groups_joined", ())):
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- from the browser -------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Size, rate and shape checks before anything else; never raises into the worker."""
        if not hasattr(self, "user"):
            return
        size = len(text_data.encode("utf-8", "surrogatepass")) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES:
            log.info("desk socket of user %s: %s-byte frame; closing", self.user.pk, size)
            await self.close(code=1009)
            return
        if not self._within_rate():
            if self.dropped == 1:
                await self.send_json({"error": "too many messages; slow down"})
            if self.dropped > FLOOD_FRAMES:
                await self.close(code=1008)
            return
        if text_data is None:
            await self.send_json({"error": "binary frames are not accepted"})
            return
        try:
            content = json.loads(text_data)
            if not isinstance(content, dict):
                raise ValueError("a frame must be a JSON object")
            check_json(content)
        except (ValueError, RecursionError, MalformedInput) as exc:
            await self.send_json({"error": f"malformed frame: {str(exc)[:100]}"})
            return
        try:
            await self.receive_json(content)
        except Exception:  # one agent's odd frame must not take the worker or other sockets down
            log.exception("desk socket of user %s: frame failed", self.user.pk)
            await self.send_json({"error": "that frame could not be handled"})

    def _within_rate(self) -> bool:
        now = time.monotonic()
        if now - self.window_start > RATE_SECONDS:
            self.window_start, self.window_frames, self.dropped = now, 0, 0
        self.window_frames += 1
        if self.window_frames > RATE_FRAMES:
            self.dropped += 1
            return False
        return True

    async def receive_json(self, content, **kwargs) -> None:
        # Channels fixes the user at connect time; access can change while connected.
        forget_role(self.user)
        state = await self._access_state()
        if state != "ok":
            await self.close(code=4401 if state == "signed_out" else 4403)
            return
        ticket_id = content.get("subscribe_ticket")
        if isinstance(ticket_id, int) and ticket_id not in self.tickets and await self._can_see(ticket_id):
            await self._join(f"ticket.{ticket_id}")
            self.tickets.add(ticket_id)
            await self._announce(ticket_id)
            # Web chat read receipt: an agent has the conversation open (no content, ids only).
            await self.channel_layer.group_send(
                f"webchat.ticket.{ticket_id}", {"type": "desk.event", "event": "agent.read", "ticket_id": ticket_id}
            )
        ticket_id = content.get("unsubscribe_ticket")
        if isinstance(ticket_id, int) and ticket_id in self.tickets:
            await self._unsubscribe(ticket_id)
        ticket_id = content.get("typing")
        if isinstance(ticket_id, int) and ticket_id in self.tickets:
            now = time.monotonic()
            self.typed[ticket_id] = now
            # Keystrokes arrive many a second: one "is replying" broadcast per TYPING_EVERY.
            if now - self.typing_sent.get(ticket_id, 0.0) >= TYPING_EVERY:
                self.typing_sent[ticket_id] = now
                await self._announce(ticket_id, typing=True)
                await self.channel_layer.group_send(
                    f"webchat.ticket.{ticket_id}",
                    {"type": "desk.event", "event": "agent.typing", "ticket_id": ticket_id},
                )
        if isinstance(content.get("inbox"), dict):
            from .selectors import inbox_filters_clean

            self.inbox_filters = inbox_filters_clean(content["inbox"])
            if not self.following_inbox:
                # Ticket activity reaches only the sockets of pages that list tickets: an
                # agent on a ticket page is not woken by every change on the desk. The
                # process receives it once for all of them (`inbox_hub`).
                self.following_inbox = True
                self.hub = inbox_hub(self.channel_layer)
                await self.hub.follow(self)
                await self.send_json({"event": "inbox.following"})  # from now on, rows arrive live
            saved = str(content["inbox"].get("saved") or "")
            self.saved_active = int(saved) if saved.isdecimal() else None
        if content.get("ping"):
            for ticket_id in self.tickets:
                await self._touch(ticket_id, typing=False)
                await self._send_presence(ticket_id)

    async def _announce(self, ticket_id: int, typing: bool = False) -> None:
        await self._touch(ticket_id, typing=typing)
        await self.channel_layer.group_send(
            f"ticket.{ticket_id}", {"type": "desk.event", "event": "presence.changed", "ticket_id": ticket_id}
        )

    async def _unsubscribe(self, ticket_id: int) -> None:
        self.tickets.discard(ticket_id)
        self.typed.pop(ticket_id, None)
        await self._leave(f"ticket.{ticket_id}")
        await database_sync_to_async(presence.presence_leave)(ticket_id=ticket_id, channel=self.channel_name)
        await self.channel_layer.group_send(
            f"ticket.{ticket_id}", {"type": "desk.event", "event": "presence.changed", "ticket_id": ticket_id}
        )

    async def _touch(self, ticket_id: int, typing: bool) -> None:
        await database_sync_to_async(presence.presence_touch)(
            ticket_id=ticket_id, channel=self.channel_name, user_id=self.user.pk, name=self.name, typing=typing
        )

    async def _send_presence(self, ticket_id: int) -> None:
        html = await database_sync_to_async(self._localized)(self._render_presence, ticket_id)
        await self.send_json({"event": "presence", "ticket_id": ticket_id, "html": html})

    # --- from the channel layer ---------------------------------------------------------

    async def desk_event(self, event: dict) -> None:
        name, group = event.get("event", ""), event.get("group", "")
        ticket_id = event.get("ticket_id")
        data = {k: v for k, v in event.items() if k not in ("type", "group")}
        if name == "presence.changed":
            if ticket_id in self.tickets:
                await self._send_presence(ticket_id)
            return
        html = ""
        if group == f"ticket.{ticket_id}" and ticket_id in self.tickets:
            html = await database_sync_to_async(self._localized)(self._render_ticket_event, event)
        elif group == "inbox" and self.inbox_filters is not None and isinstance(ticket_id, int):
            if name in ("ticket.activity", "ticket.updated", "ticket.created"):
                self._inbox_later(ticket_id, name)
            return
        elif group == f"agent.{self.user.pk}" or (group == "desk" and name == "webhook.disabled"):
            html = await database_sync_to_async(self._localized)(self._render_personal, event)
        if html:
            data["html"] = html
        elif group == "inbox":
            return  # a ticket change this page shows nothing of: no frame (and no query)
        elif isinstance(ticket_id, int) and not await self._can_see(ticket_id):
            return  # another team's ticket: not even its id and event name
        await self.send_json(data)
        if name == "message.created" and event.get("inbound") and event.get("channel") == "chat" and html:
            # A web-chat visitor's message shown to an agent who has the ticket open: read receipt.
            await self.channel_layer.group_send(
                f"webchat.ticket.{ticket_id}", {"type": "desk.event", "event": "agent.read", "ticket_id": ticket_id}
            )

    def inbox_event(self, event: dict) -> None:
        """A ticket change, from the process's one subscription to the "inbox" group
        (`inbox_hub`): its row is rendered with this socket's next ones."""
        name, ticket_id = event.get("event", ""), event.get("ticket_id")
        if self.inbox_filters is not None and isinstance(ticket_id, int):
            if name in ("ticket.activity", "ticket.updated", "ticket.created"):
                self._inbox_later(ticket_id, name)

    async def desk_batch(self, batch: dict) -> None:
        """Several events of one group published together (one commit's, or a burst's, see
        cxdesk.realtime): each handled as if alone (inbox renders coalesce anyway)."""
        for event in batch.get("events") or ():
            await self.desk_event(event)

    def _inbox_later(self, ticket_id: int, name: str) -> None:
        """A change is rendered INBOX_SOON after it arrives on a quiet desk; on a busy one a
        socket's changed rows are rendered at most every INBOX_EVERY seconds, all together
        (each changed ticket read once for all the process's sockets, `LiveRows`), and its
        view counts at most once a period of COUNTS_EVERY to COUNTS_EVERY × (1 +
        COUNTS_SPREAD) seconds (the last change always counted, by a trailing refresh)."""
        self.inbox_dirty.setdefault(ticket_id, name)
        if self.inbox_flush is None or self.inbox_flush.done():
            self._inbox_flush_next()

    def _inbox_flush_next(self) -> None:
        """The next render of this socket's changed rows: INBOX_SOON from now, or INBOX_EVERY
        after the last one if that is later."""
        delay = max(INBOX_SOON, self.rows_at + INBOX_EVERY - time.monotonic())
        self.inbox_flush = asyncio.ensure_future(self._inbox_flush_later(delay))

    async def _inbox_flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.rows_at = time.monotonic()
        dirty, self.inbox_dirty = self.inbox_dirty, {}
        if not dirty or self.inbox_filters is None:
            return
        count = time.monotonic() - self.counts_at >= self.counts_every
        # In the pool: a busy desk's rows and counts must not hold up the render of a message
        # an agent is reading (on the one shared thread).
        frames, counted = await in_pool(self._localized, INBOX_POOL)(self._render_inbox, list(dirty), count)
        if counted:
            self.counts_at, self.counts_stale = time.monotonic(), False
        elif frames:
            self._counts_soon()
        if frames:  # one websocket message for the lot: a busy desk changes many rows a second
            await self.send_json(
                {
                    "event": "inbox.rows",
                    "frames": [
                        {"event": dirty[ticket_id], "ticket_id": ticket_id, "html": html} for ticket_id, html in frames
                    ],
                }
            )
        if self.inbox_dirty:  # changes that came during this render: their own turn, not the next change's
            self._inbox_flush_next()

    def _counts_soon(self) -> None:
        """Count again once this socket's period has passed since the last count (one pending
        at most; a change shown while it counts makes it count once more)."""
        self.counts_stale = True
        if self.counts_later is None or self.counts_later.done():
            self.counts_later = asyncio.ensure_future(self._counts_later())

    async def _counts_later(self) -> None:
        while self.counts_stale and self.inbox_filters is not None:
            await asyncio.sleep(max(0.0, self.counts_at + self.counts_every - time.monotonic()))
            self.counts_stale = False
            html = await in_pool(self._localized, INBOX_POOL)(self._render_counts)
            self.counts_at = time.monotonic()
            await self.send_json({"event": "inbox.counts", "html": html})

    async def desk_logout(self, event: dict) -> None:
        """The user signed out (or lost access) elsewhere: close this socket too."""
        await self.close(code=4401)

    # --- rendering (in a worker thread: templates and the ORM are synchronous) ------------

    def _localized(self, render, *args):
        self._fresh_role()
        with translation.override(self.language):
            return render(*args)

    def _fresh_role(self) -> None:
        """Roles can change while connected: each event is decided with the user's role as
        it was at most a second ago (`cxdesk.memo.kept`, which forgets at once what this
        process changes; one query a second for all the process's sockets), not with a query
        per socket per event. The live inbox reads teams the same way (`_inbox_rows`); every
        query that scopes reads them itself (`tickets_visible_to`)."""
        from cxdesk.memo import kept

        role_remember(self.user, kept("desk-roles", role_groups).get(self.user.pk))

    def _render_presence(self, ticket_id: int) -> str:
        people = presence.presence_list(ticket_id=ticket_id, exclude_user=self.user.pk)
        return render_to_string("tickets/_presence.html", {"presence": people, "oob": True})

    def _render_ticket_event(self, event: dict) -> str:
        from django.db.models import prefetch_related_objects

        from .models import Message, TicketEvent
        from .selectors import for_role, tickets_visible_to

        name, ticket_id = event["event"], event["ticket_id"]
        if name in ("message.created", "message.status"):
            message = for_role(
                self.user,
                "live-message",
                lambda agent, message_id, ticket_id: Message.objects.filter(
                    pk=message_id, ticket__in=tickets_visible_to(agent=agent).filter(pk=ticket_id)
                ).select_related("author", "identity"),
                message_id=event.get("message_id"),
                ticket_id=ticket_id,
            )
            if message is None:
                return ""
            prefetch_related_objects([message], "attachments")
            if name == "message.status":
                return render_to_string("tickets/_timeline.html#status", {"m": message}).replace(
                    'id="status-', 'hx-swap-oob="true" id="status-', 1
                )
            item = render_to_string("tickets/_timeline.html#message", {"m": message})
            html = f'<ol hx-swap-oob="beforeend:#timeline-items">{item}</ol>'
            typed = self.typed.get(ticket_id)
            if (
                message.direction == Message.Direction.OUTBOUND
                and message.author_id
                and message.author_id != self.user.pk
                and typed is not None
                and time.monotonic() - typed < COLLISION_WINDOW
            ):
                who = message.author.get_full_name() or message.author.username
                html += render_to_string(
                    "tickets/_notice.html",
                    {"text": f"{who} replied while you were typing — read it before you send.", "level": "warn"},
                )
            return html
        if name == "ticket.updated":
            from .selectors import ticket_get_for_agent

            ticket = ticket_get_for_agent(agent=self.user, ticket_id=ticket_id)
            if ticket is None:
                return ""
            return render_to_string("tickets/ticket.html#header", {"ticket": ticket, "oob": True})
        if name == "ticket.event":
            item = for_role(
                self.user,
                "live-event",
                lambda agent, event_id, ticket_id: TicketEvent.objects.filter(
                    pk=event_id, ticket__in=tickets_visible_to(agent=agent).filter(pk=ticket_id)
                ).select_related("actor"),
                event_id=event.get("event_id"),
                ticket_id=ticket_id,
            )
            if item is None:
                return ""
            html = render_to_string("tickets/_timeline.html#event", {"e": item})
            return f'<ol hx-swap-oob="beforeend:#timeline-items">{html}</ol>'
        return ""

    def _render_inbox(self, ticket_ids: list[int], count: bool = True) -> tuple[list[tuple[int, str]], bool]:
        """(ticket id, HTML) for each changed ticket this agent may see: its row placed (top of
        the list, in place, or removed from the view); with `count`, the view counts once,
        with the last. Returns them and whether the counts are in."""
        from .inbox_rows import inbox_rows_html

        filters = self.inbox_filters or {}
        rows, visible = self._inbox_rows(ticket_ids, filters)
        shown = [ticket_id for ticket_id in ticket_ids if ticket_id in rows]
        items = dict(zip(shown, inbox_rows_html([rows[ticket_id] for ticket_id in shown]), strict=True))  # one pass
        frames = []
        for ticket_id in ticket_ids:
            row = rows.get(ticket_id)
            if row is None and ticket_id not in visible:
                continue  # not this agent's to see: not even that something happened
            if row is None:
                html = f'<div id="row-{ticket_id}" hx-swap-oob="delete"></div>'
            elif filters.get("sort") == "activity" and not filters.get("before"):
                # Newest activity first: the row moves to the top.
                item = items[ticket_id]
                html = (
                    f'<div id="row-{ticket_id}" hx-swap-oob="delete"></div>'
                    f'<p id="inbox-empty" hx-swap-oob="delete"></p>'
                    f'<div hx-swap-oob="afterbegin:#inbox-rows">{item}</div>'
                )
            else:
                # Another order or a later page: update the row in place if it is shown.
                html = items[ticket_id].replace('id="row-', 'hx-swap-oob="true" id="row-', 1)
            frames.append((ticket_id, html))
        if not frames or not count:
            return frames, False
        last_id, last_html = frames[-1]
        frames[-1] = (last_id, last_html + self._render_counts())
        return frames, True

    def _inbox_rows(self, ticket_ids: list[int], filters: dict) -> tuple[dict, set[int]]:
        """(the changed tickets in this agent's view and filters as rows by id, the ids of the
        others this agent may still see). The tickets are read once per process for all its
        sockets (`LiveRows`) and decided here in Python; filters Python does not decide (tag,
        search, SLA) take this socket's own scoped queries."""
        from cxdesk.memo import kept

        from .selectors import (
            LiveAgent,
            inbox_live_rows,
            inbox_rows_by_id,
            live_decides,
            live_in_view,
            live_sees,
            team_members,
            tickets_visible_to,
        )

        if not live_decides(filters):
            rows = inbox_rows_by_id(agent=self.user, ticket_ids=ticket_ids, filters=filters)
            missing = [ticket_id for ticket_id in ticket_ids if ticket_id not in rows]
            visible = tickets_visible_to(agent=self.user).filter(pk__in=missing).values_list("pk", flat=True)
            return rows, set(visible) if missing else set()
        live = self.hub.live.rows(ticket_ids) if self.hub is not None else inbox_live_rows(ticket_ids)
        agent = LiveAgent(
            self.user.pk, user_role(self.user), kept("desk-teams", team_members).get(self.user.pk, frozenset())
        )
        rows, visible = {}, set()
        for ticket_id, row in live.items():
            if live_in_view(row, agent, filters):
                rows[ticket_id] = row.row
            elif live_sees(row, agent):
                visible.add(ticket_id)
        return rows, visible

    def _render_counts(self) -> str:
        """The view counts, counted afresh (something changed) and stored for this agent's next page."""
        from .inbox_cache import sidebar, view_counts_html

        side = sidebar(agent=self.user, fresh=True)
        return view_counts_html(
            counts=side.counts,
            saved_views=side.saved_views,
            saved_counts=side.saved_counts,
            view=(self.inbox_filters or {}).get("view", "open"),
            saved_active=self.saved_active,
            oob=True,
        )

    def _render_personal(self, event: dict) -> str:
        from django.urls import reverse

        name = event.get("event")
        if name in ("notification.created", "notification.read"):
            from .notifications import notification_get, notifications_unread_count

            html = render_to_string(
                "tickets/_bell_count.html", {"bell_unread": notifications_unread_count(user=self.user), "oob": True}
            )
            note = notification_get(user=self.user, notification_id=event.get("notification_id") or 0)
            if name == "notification.created" and note is not None:
                url = reverse("desk-notification", args=[note.pk])
                text = f"{note.get_kind_display()} · {note.ticket.reference}: {note.text or note.ticket.subject}"
                level = "warn" if note.kind in ("sla_warning", "sla_breach") else "info"
                html += render_to_string("tickets/_notice.html", {"text": text[:200], "url": url, "level": level})
            return html
        ticket_id = event.get("ticket_id")
        if name in ("call.ringing", "call.answered", "call.ended") and isinstance(ticket_id, int):
            return self._render_call(event)
        if name == "webhook.disabled":
            text = _("A webhook to %(url)s was disabled after repeated failures.") % {"url": event.get("url", "")}
            return render_to_string("tickets/_notice.html", {"text": text, "level": "warn"})
        return ""

    def _render_call(self, event: dict) -> str:
        """The screen-pop of a ringing call (caller, open tickets, last messages on every
        channel, last web pages), then its status line as the call is answered or ends."""
        if event["event"] != "call.ringing":
            return render_to_string("tickets/_screen_pop.html#status", {"call": event, "oob": True})
        from .selectors import screen_pop_context

        context = screen_pop_context(
            agent=self.user, ticket_id=event["ticket_id"], exclude_message_id=event.get("message_id")
        )
        if context is None:
            return ""
        return render_to_string("tickets/_screen_pop.html", {**context, "call": event})

    @database_sync_to_async
    def _can_see(self, ticket_id: int) -> bool:
        from .selectors import ticket_get_for_agent

        self._fresh_role()
        return ticket_get_for_agent(agent=self.user, ticket_id=ticket_id) is not None

    @database_sync_to_async
    def _access_state(self) -> str:
        """ "ok", "signed_out" (password changed: the session's auth hash no longer
        matches) or "no_access" (deactivated, not staff)."""
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(pk=self.user.pk).first()
        if user is None or not user.is_active or not user.is_staff:
            return "no_access"
        if user.get_session_auth_hash() != self.auth_hash:
            return "signed_out"
        return "ok"


# --- the inbox group, once per process ---------------------------------------------------------

INBOX_HUB_REJOIN = 3600.0  # seconds: the group membership is renewed (channels_redis expires it)


class InboxHub:
    """The process's one member of the "inbox" group. Every change to a ticket is published
    there (`cxdesk.realtime`); with each socket a member, channels_redis queued one copy per
    socket, and the process popped and dispatched each from Redis: 200 agents on their
    inboxes at 20 changes a second were 4,000 round trips and handler calls a second, more
    than one process could do. The hub receives each change once and hands it to every
    socket of the process that lists tickets (`DeskConsumer.inbox_event`, no I/O), and
    reads each changed ticket once for all of them (`LiveRows`)."""

    def __init__(self, layer) -> None:
        self.layer = layer
        self.live = LiveRows()
        self.followers: weakref.WeakSet[DeskConsumer] = weakref.WeakSet()  # a socket gone without a word drops out
        self.task: asyncio.Task | None = None
        self.joining = asyncio.Lock()  # two sockets following at once make one member

    async def follow(self, consumer: DeskConsumer) -> None:
        self.followers.add(consumer)
        async with self.joining:
            if self.task is None or self.task.done():
                channel = await self.layer.new_channel()
                await self.layer.group_add("inbox", channel)
                self.task = asyncio.ensure_future(self._run(channel))

    async def unfollow(self, consumer: DeskConsumer) -> None:
        self.followers.discard(consumer)
        if not self.followers and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self, channel: str) -> None:
        loop = asyncio.get_running_loop()
        joined = loop.time()
        try:
            while True:
                try:
                    message = await self.layer.receive(channel)
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - the channel layer went away: try again, keep the hub
                    log.exception("inbox hub: receiving failed; retrying in a second")
                    await asyncio.sleep(1.0)
                    continue
                events = message.get("events") if message.get("type") == "desk.batch" else [message]
                for event in events or ():
                    if isinstance(event.get("ticket_id"), int):
                        self.live.changed(event["ticket_id"])
                for consumer in list(self.followers):
                    for event in events or ():
                        try:
                            consumer.inbox_event(event)
                        except Exception:  # noqa: BLE001 - one socket's trouble is not the others'
                            log.exception("inbox event for user %s", getattr(consumer.user, "pk", None))
                if loop.time() - joined > INBOX_HUB_REJOIN:
                    await self.layer.group_add("inbox", channel)
                    joined = loop.time()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.layer.group_discard("inbox", channel))


class LiveRows:
    """The changed tickets as the live inbox shows them (`selectors.inbox_live_rows`), read
    once per change for every socket of the process: the first socket to render a change
    reads it, the others take what it read. Each socket then decides in Python whether the
    row is in its agent's view (`selectors.live_in_view`).

    A ticket read is kept with the number of the last change to it that the hub had seen
    before the read (`changed`, on the event loop's thread); it is taken only while that is
    still the ticket's last change. A change during a read makes the next socket read again:
    what a socket shows was read after the change that made it render."""

    SIZE = 10_000  # tickets kept; when more have changed, all are forgotten (those in use come back)

    def __init__(self) -> None:
        self.changes: dict[int, int] = {}  # ticket id → number of its last change
        self.read: dict[int, tuple[int, LiveRow | None]] = {}  # ticket id → (that number when read, row)
        self.count = 0
        self.lock = threading.Lock()  # sockets rendering at once: one reads, the others wait and take it

    def changed(self, ticket_id: int) -> None:
        if len(self.changes) >= self.SIZE and ticket_id not in self.changes:
            with self.lock:
                self.changes.clear()
                self.read.clear()
        self.count += 1
        self.changes[ticket_id] = self.count

    def rows(self, ticket_ids: list[int]) -> dict[int, LiveRow]:
        """The tickets among `ticket_ids` that exist, read after their last change (in a thread)."""
        from .selectors import inbox_live_rows

        with self.lock:
            seen = {ticket_id: self.changes.get(ticket_id, 0) for ticket_id in ticket_ids}
            stale = [t for t in ticket_ids if (hit := self.read.get(t)) is None or hit[0] != seen[t]]
            if stale:
                fresh = inbox_live_rows(stale)
                for ticket_id in stale:
                    self.read[ticket_id] = (seen[ticket_id], fresh.get(ticket_id))
            found = {ticket_id: self.read[ticket_id][1] for ticket_id in ticket_ids}
        return {ticket_id: row for ticket_id, row in found.items() if row is not None}


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop → {layer id: hub}


def inbox_hub(layer) -> InboxHub:
    """This event loop's hub for `layer` (a process runs one loop: one hub)."""
    hubs = _hubs.setdefault(asyncio.get_running_loop(), {})
    hub = hubs.get(id(layer))
    if hub is None or hub.layer is not layer:
        hub = hubs[id(layer)] = InboxHub(layer)
    return hub
