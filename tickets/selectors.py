"""Reads for the desk, scoped to what the agent may see."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Message, Ticket


def tickets_visible_to(*, agent) -> QuerySet[Ticket]:
    """Staff see every ticket; anyone else sees none here (customers use the portal)."""
    if agent is None or not agent.is_active or not agent.is_staff:
        return Ticket.objects.none()
    return Ticket.objects.all()


def ticket_get_for_agent(*, agent, ticket_id: int) -> Ticket | None:
    return (
        tickets_visible_to(agent=agent)
        .select_related("customer", "assignee", "team", "inbox")
        .filter(pk=ticket_id)
        .first()
    )


def ticket_list_for_agent(*, agent, status: list[str] | None = None, limit: int = 50) -> list[Ticket]:
    qs = tickets_visible_to(agent=agent).select_related("customer", "assignee")
    if status:
        qs = qs.filter(status__in=status)
    return list(qs.order_by("-last_message_at", "-id")[:limit])


def ticket_timeline(*, ticket: Ticket) -> list[Message]:
    return list(
        ticket.messages.select_related("author", "identity", "inbox")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
