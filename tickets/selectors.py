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


def tickets_for_api(*, agent, params) -> QuerySet[Ticket]:
    """The API's ticket list with its filters (status, channel, assignee, customer, tag,
    updated_since). `updated_since` is inclusive (>=): a row updated in the same second
    as the client's last sync is sent again rather than missed; clients dedupe by id."""
    from django.utils.dateparse import parse_datetime

    from cxdesk.errors import ApplicationError

    qs = tickets_visible_to(agent=agent).select_related("customer", "customer__organization").prefetch_related("tags")
    if params.get("status"):
        qs = qs.filter(status__in=params["status"].split(","))
    if params.get("channel"):
        qs = qs.filter(channel__in=params["channel"].split(","))
    if params.get("assignee"):
        value = params["assignee"]
        if value == "none":
            qs = qs.filter(assignee=None)
        elif value == "me":
            qs = qs.filter(assignee=agent)
        elif value.isdigit():
            qs = qs.filter(assignee_id=int(value))
        else:
            raise ApplicationError(
                "assignee is an id, 'me' or 'none'", code="invalid_filter", fields={"assignee": ["invalid"]}
            )
    if params.get("customer"):
        if not params["customer"].isdigit():
            raise ApplicationError("customer is an id", code="invalid_filter", fields={"customer": ["invalid"]})
        qs = qs.filter(customer_id=int(params["customer"]))
    if params.get("tag"):
        qs = qs.filter(tags__name=params["tag"])
    if params.get("updated_since"):
        since = parse_datetime(params["updated_since"])
        if since is None or since.tzinfo is None:
            raise ApplicationError(
                "updated_since is an ISO 8601 datetime with a time zone",
                code="invalid_filter",
                fields={"updated_since": ["invalid"]},
            )
        qs = qs.filter(updated_at__gte=since)
    return qs


def ticket_messages_qs(*, ticket: Ticket) -> QuerySet[Message]:
    return ticket.messages.select_related("identity").prefetch_related("attachments")
