"""The desk's websocket: signed-in staff only. Events from cxdesk.realtime reach the
browser as JSON; presence ("viewing", "replying") is relayed to a ticket's group."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer


class DeskConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff or not user.is_active:
            await self.close(code=4403)
            return
        self.user = user
        self.name = user.get_full_name() or user.username
        self.groups_joined: set[str] = set()
        for group in ("desk", f"agent.{user.pk}"):
            await self._join(group)
        await self.accept()

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined.add(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs) -> None:
        # Access can change while connected: re-check on every message.
        if not await self._still_staff():
            await self.close(code=4403)
            return
        ticket_id = content.get("subscribe_ticket")
        if isinstance(ticket_id, int) and await self._can_see(ticket_id):
            await self._join(f"ticket.{ticket_id}")
            await self._presence(ticket_id, "viewing")
        typing = content.get("typing")
        if isinstance(typing, int) and f"ticket.{typing}" in self.groups_joined:
            await self._presence(typing, "replying")

    async def _presence(self, ticket_id: int, state: str) -> None:
        await self.channel_layer.group_send(
            f"ticket.{ticket_id}",
            {"type": "desk.event", "event": "presence", "ticket_id": ticket_id, "user": self.name, "state": state},
        )

    @database_sync_to_async
    def _can_see(self, ticket_id: int) -> bool:
        from .selectors import ticket_get_for_agent

        return ticket_get_for_agent(agent=self.user, ticket_id=ticket_id) is not None

    @database_sync_to_async
    def _still_staff(self) -> bool:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(pk=self.user.pk, is_active=True, is_staff=True).exists()

    async def desk_event(self, event: dict) -> None:
        await self.send_json({k: v for k, v in event.items() if k != "type"})

    async def desk_logout(self, event: dict) -> None:
        """The user signed out (or lost access) elsewhere: close this socket too."""
        await self.close(code=4401)
