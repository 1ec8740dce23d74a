"""The desk's websocket (`/ws/desk/`): signed-in, active staff only.

Events from `cxdesk.realtime.broadcast_on_commit` arrive here per group; the consumer
renders the SAME partial templates the pages use and sends them as htmx out-of-band HTML
(`{"event": ..., "html": "<... hx-swap-oob=...>"}`), which the page swaps in with
`htmx.swap`. What the browser may send:

    {"subscribe_ticket": id}     join ticket.<id>, announce "viewing"
    {"unsubscribe_ticket": id}
    {"typing": id}               announce "replying" on a subscribed ticket
    {"inbox": {view, filters…}}  the inbox view this page shows (rows and counts follow it)
    {"ping": true}               keep presence alive (every ~20 s)

See docs/realtime.md.
"""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.template.loader import render_to_string

from . import presence

COLLISION_WINDOW = 60  # seconds after the last keystroke in which someone else's reply warns


class DeskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff or not user.is_active:
            await self.close(code=4403)
            return
        self.user = user
        self.name = user.get_full_name() or user.username
        self.groups_joined: set[str] = set()
        self.tickets: set[int] = set()
        self.typed: dict[int, float] = {}
        self.inbox_filters: dict[str, str] | None = None
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
        for ticket_id in list(getattr(self, "tickets", ())):
            await self._unsubscribe(ticket_id)
        for group in list(getattr(self, "groups_joined", ())):
            await self.channel_layer.group_discard(group, self.channel_name)

    # --- from the browser -------------------------------------------------------------

    async def receive_json(self, content, **kwargs) -> None:
        # Channels fixes the user at connect time; access can change while connected.
        if not isinstance(content, dict) or not await self._still_staff():
            await self.close(code=4403)
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
            self.typed[ticket_id] = time.monotonic()
            await self._announce(ticket_id, typing=True)
            await self.channel_layer.group_send(
                f"webchat.ticket.{ticket_id}", {"type": "desk.event", "event": "agent.typing", "ticket_id": ticket_id}
            )
        if isinstance(content.get("inbox"), dict):
            from .selectors import inbox_filters_clean

            self.inbox_filters = inbox_filters_clean(content["inbox"])
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
        html = await database_sync_to_async(self._render_presence)(ticket_id)
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
            html = await database_sync_to_async(self._render_ticket_event)(event)
        elif group == "desk" and self.inbox_filters is not None and isinstance(ticket_id, int):
            if name in ("ticket.activity", "ticket.updated", "ticket.created"):
                html = await database_sync_to_async(self._render_inbox)(ticket_id)
        elif group == f"agent.{self.user.pk}" or (group == "desk" and name == "webhook.disabled"):
            html = await database_sync_to_async(self._render_personal)(event)
        if html:
            data["html"] = html
        await self.send_json(data)
        if name == "message.created" and event.get("inbound") and event.get("channel") == "chat" and html:
            # A web-chat visitor's message shown to an agent who has the ticket open: read receipt.
            await self.channel_layer.group_send(
                f"webchat.ticket.{ticket_id}", {"type": "desk.event", "event": "agent.read", "ticket_id": ticket_id}
            )

    async def desk_logout(self, event: dict) -> None:
        """The user signed out (or lost access) elsewhere: close this socket too."""
        await self.close(code=4401)

    # --- rendering (in a worker thread: templates and the ORM are synchronous) ------------

    def _render_presence(self, ticket_id: int) -> str:
        people = presence.presence_list(ticket_id=ticket_id, exclude_user=self.user.pk)
        return render_to_string("tickets/_presence.html", {"presence": people, "oob": True})

    def _render_ticket_event(self, event: dict) -> str:
        from .models import Message, TicketEvent
        from .selectors import tickets_visible_to

        name, ticket_id = event["event"], event["ticket_id"]
        visible = tickets_visible_to(agent=self.user).filter(pk=ticket_id)
        if name in ("message.created", "message.status"):
            message = (
                Message.objects.filter(pk=event.get("message_id"), ticket__in=visible)
                .select_related("author", "identity")
                .prefetch_related("attachments")
                .first()
            )
            if message is None:
                return ""
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
            item = TicketEvent.objects.filter(pk=event.get("event_id"), ticket__in=visible).select_related("actor")
            item = item.first()
            if item is None:
                return ""
            html = render_to_string("tickets/_timeline.html#event", {"e": item})
            return f'<ol hx-swap-oob="beforeend:#timeline-items">{html}</ol>'
        return ""

    def _render_inbox(self, ticket_id: int) -> str:
        from .selectors import INBOX_VIEWS, inbox_counts, inbox_row

        filters = self.inbox_filters or {}
        row = inbox_row(agent=self.user, ticket_id=ticket_id, filters=filters)
        if row is None:
            html = f'<div id="row-{ticket_id}" hx-swap-oob="delete"></div>'
        elif filters.get("sort") == "activity" and not filters.get("before"):
            # Newest activity first: the row moves to the top.
            item = render_to_string("tickets/_inbox_list.html#row", {"t": row})
            html = (
                f'<div id="row-{ticket_id}" hx-swap-oob="delete"></div><p id="inbox-empty" hx-swap-oob="delete"></p>'
                f'<div hx-swap-oob="afterbegin:#inbox-rows">{item}</div>'
            )
        else:
            # Another order or a later page: update the row in place if it is shown.
            html = render_to_string("tickets/_inbox_list.html#row", {"t": row}).replace(
                'id="row-', 'hx-swap-oob="true" id="row-', 1
            )
        counts = inbox_counts(agent=self.user)
        html += render_to_string(
            "tickets/_view_counts.html",
            {"views": INBOX_VIEWS, "counts": counts, "view": filters.get("view", "open"), "oob": True},
        )
        return html

    def _render_personal(self, event: dict) -> str:
        from django.urls import reverse

        name, ticket_id = event.get("event"), event.get("ticket_id")
        if name == "ticket.assigned" and event.get("by") != self.user.pk and isinstance(ticket_id, int):
            from .selectors import ticket_get_for_agent

            ticket = ticket_get_for_agent(agent=self.user, ticket_id=ticket_id)
            if ticket is None:
                return ""
            text = f"{ticket.reference} “{ticket.subject[:80]}” was assigned to you."
            url = reverse("desk-ticket", args=[ticket.pk])
            return render_to_string("tickets/_notice.html", {"text": text, "url": url, "level": "info"})
        if name == "note.mention" and isinstance(ticket_id, int):
            from .selectors import ticket_get_for_agent

            ticket = ticket_get_for_agent(agent=self.user, ticket_id=ticket_id)
            if ticket is None:
                return ""
            text = f"{event.get('author') or 'Someone'} mentioned you in a note on {ticket.reference}."
            url = reverse("desk-ticket", args=[ticket.pk]) + f"#message-{event.get('message_id')}"
            return render_to_string("tickets/_notice.html", {"text": text, "url": url, "level": "info"})
        if name == "sla.breach" and isinstance(ticket_id, int):
            text = f"SLA {event.get('target', '')} target breached on ticket #{ticket_id}."
            url = reverse("desk-ticket", args=[ticket_id])
            return render_to_string("tickets/_notice.html", {"text": text, "url": url, "level": "warn"})
        if name == "webhook.disabled":
            text = f"A webhook to {event.get('url', '')} was disabled after repeated failures."
            return render_to_string("tickets/_notice.html", {"text": text, "level": "warn"})
        return ""

    @database_sync_to_async
    def _can_see(self, ticket_id: int) -> bool:
        from .selectors import ticket_get_for_agent

        return ticket_get_for_agent(agent=self.user, ticket_id=ticket_id) is not None

    @database_sync_to_async
    def _still_staff(self) -> bool:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(pk=self.user.pk, is_active=True, is_staff=True).exists()
