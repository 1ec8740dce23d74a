"""The widget's websocket (`/ws/chat/?inbox=<id>`): anonymous visitors of foreign sites.

Not behind the desk's AllowedHostsOriginValidator/session auth: the Origin header must be
one of the inbox's `allowed_origins` (checked before accepting), the visitor is named by
the signed token of its first `start` frame. Every frame goes to `webchat.dispatch`
(which validates and never raises); frames over CXDESK_WEBCHAT_MAX_FRAME bytes or over
CXDESK_WEBCHAT_RATE per 10 s get an error frame. Groups joined: the visitor's own
(`webchat.visitor.<id>`: agent messages, by id) and their ticket's chat group (typing and
read receipts from the desk). Internal notes are never sent to either.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from cxdesk.sockets import DispatchWithoutHop, database_sync_to_async, in_pool

from .adapters.webchat import origin_allowed, ticket_chat_group, visitor_gone, visitor_group, visitor_seen
from .models import Inbox
from .webchat import Session, dispatch, error_frame, visitor_message, visitor_ticket

log = logging.getLogger(__name__)


# A visitor's frames run in the thread pool (`in_pool`): one slow ingest must not queue every
# other visitor of this process behind it.
class WebchatConsumer(DispatchWithoutHop, AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.session: Session | None = None
        self.groups_joined: set[str] = set()
        self.window: list[float] = []
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        inbox_id = (query.get("inbox") or [""])[0]
        origin = dict(self.scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        inbox = await database_sync_to_async(_webchat_inbox)(inbox_id)
        if inbox is None or not origin_allowed(inbox, origin):
            await self.close(code=4403)
            return
        self.session = Session(inbox=inbox)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        visitor = self.session.visitor if self.session else None
        if visitor is not None:
            await in_pool(visitor_gone)(visitor.visitor_id)
        for group in list(self.groups_joined):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _send(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame))

    async def receive(self, text_data=None, bytes_data=None) -> None:
        if self.session is None:
            return
        if bytes_data is not None or text_data is None:
            await self._send(error_frame("invalid", "send JSON text frames"))
            return
        if len(text_data.encode()) > settings.CXDESK_WEBCHAT_MAX_FRAME:
            await self._send(error_frame("too_large", f"frames are at most {settings.CXDESK_WEBCHAT_MAX_FRAME} bytes"))
            return
        now = time.monotonic()
        self.window = [t for t in self.window if now - t < 10][-settings.CXDESK_WEBCHAT_RATE :]
        if len(self.window) >= settings.CXDESK_WEBCHAT_RATE:
            await self._send(error_frame("rate_limited", "too many messages; slow down"))
            return
        self.window.append(now)
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._send(error_frame("invalid", "not JSON"))
            return
        try:
            replies = await in_pool(dispatch)(self.session, frame)
        except Exception:  # a database hiccup answers this frame, it does not drop the visitor
            log.exception("web chat frame failed")
            replies = [error_frame("server_error", "something went wrong; send it again")]
        if isinstance(frame, dict) and frame.get("type") in ("start", "message", "verify"):
            await self._follow_groups()  # the visitor (or their ticket) may have changed
        for reply in replies:
            await self._send(reply)

    async def _follow_groups(self) -> None:
        visitor = self.session.visitor if self.session else None
        if visitor is None:
            return
        await in_pool(visitor_seen)(visitor.visitor_id)
        wanted = {visitor_group(visitor.visitor_id)}
        ticket = await in_pool(visitor_ticket)(visitor)
        if ticket is not None:
            wanted.add(ticket_chat_group(ticket.pk))
        for group in wanted - self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        for group in self.groups_joined - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = wanted

    # --- from the channel layer (realtime.group_send uses type desk.event) ---------------

    async def desk_batch(self, batch: dict) -> None:
        for event in batch.get("events") or ():  # several events published together (cxdesk.realtime)
            await self.desk_event(event)

    async def desk_event(self, event: dict) -> None:
        name = event.get("event")
        visitor = self.session.visitor if self.session else None
        if visitor is None:
            return
        if name == "chat.message":
            frame = await in_pool(visitor_message)(visitor=visitor, message_id=event.get("message_id"))
            if frame is not None:
                await self._send(frame)
        elif name == "agent.typing":
            await self._send({"type": "typing"})
        elif name == "agent.read":
            await self._send({"type": "read", "upto": event.get("message_id")})


def _webchat_inbox(inbox_id: str) -> Inbox | None:
    if not inbox_id.isdecimal():
        return None
    return Inbox.objects.filter(pk=int(inbox_id), kind="webchat", is_active=True).first()
