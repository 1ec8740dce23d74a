"""The desk's websocket: signed-in staff only; events from cxdesk.realtime arrive here
and are forwarded to the browser as JSON."""

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
        ticket_id = content.get("subscribe_ticket")
        if isinstance(ticket_id, int) and await self._can_see(ticket_id):
            await self._join(f"ticket.{ticket_id}")

    @database_sync_to_async
    def _can_see(self, ticket_id: int) -> bool:
        from .selectors import ticket_get_for_agent

        return ticket_get_for_agent(agent=self.user, ticket_id=ticket_id) is not None

    async def desk_event(self, event: dict) -> None:
        await self.send_json({k: v for k, v in event.items() if k != "type"})
