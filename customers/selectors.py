"""Reads for customers, scoped to what the caller may see, and the 360 summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, Max, Min, OuterRef, Prefetch, Q, QuerySet

from accounts.roles import is_supervisor, user_role
from tickets.models import Message, Ticket
from tickets.selectors import tickets_visible_to

from .models import Customer, Identity, PageView
from .normalize import normalize_address


def customers_visible_to(*, agent) -> QuerySet[Customer]:
    """The customer-side twin of `tickets.selectors.tickets_visible_to`: supervisors and
    admins see every customer; an agent sees a customer who has a ticket the agent may
    see, or who has no ticket at all yet (a new contact, so a phone agent's screen-pop and
    "new ticket" work). A customer whose every ticket belongs to other teams is a 404."""
    if user_role(agent) is None:
        return Customer.objects.none()
    if is_supervisor(agent):
        return Customer.objects.all()
    any_ticket = Ticket.objects.filter(customer=OuterRef("pk"))
    visible_ticket = tickets_visible_to(agent=agent).filter(customer=OuterRef("pk"))
    return Customer.objects.filter(Exists(visible_ticket) | ~Exists(any_ticket))


def customer_lookup(*, agent, kind: str, value: str, region: str | None = None) -> QuerySet[Customer]:
    """Customers owning the identity (kind, value), normalised exactly as ingest does."""
    address = normalize_address(kind, value, region)
    return customers_visible_to(agent=agent).filter(identities__kind=kind, identities__address=address)


@dataclass
class CustomerStats:
    tickets: int
    open_tickets: int
    channels: list[str]
    first_seen: datetime | None
    last_contact: datetime | None


def customer_stats(*, customer: Customer, agent=None) -> CustomerStats:
    """The customer's figures; with `agent`, over the tickets the agent may see (a team's
    agent is not told of other teams' tickets, not even how many there are)."""
    tickets = Ticket.objects.all() if agent is None else tickets_visible_to(agent=agent)
    messages = Message.objects.filter(ticket__customer=customer, direction=Message.Direction.INBOUND)
    if agent is not None and not is_supervisor(agent):
        messages = messages.filter(ticket__in=tickets)
    agg = tickets.filter(customer=customer).aggregate(
        tickets=Count("id"),
        open_tickets=Count("id", filter=Q(status__in=Ticket.OPEN_STATUSES)),
        first_seen=Min("created_at"),
        last_contact=Max("last_customer_message_at"),
    )
    # order_by() clears Message's default ordering, which DISTINCT would otherwise select
    # too (one row per message instead of one per channel).
    channels = sorted(messages.order_by().values_list("channel", flat=True).distinct())
    return CustomerStats(channels=channels, **agg)


def customer_360(*, agent, customer_id: int) -> Customer | None:
    return (
        customers_visible_to(agent=agent)
        .select_related("organization", "merged_into")
        .prefetch_related(
            Prefetch("identities", queryset=Identity.objects.order_by("kind", "address")),
            Prefetch("tickets", queryset=tickets_visible_to(agent=agent).order_by("-last_message_at", "-id")),
        )
        .filter(pk=customer_id)
        .first()
    )


def customer_timeline(*, customer: Customer, include_notes: bool = True, agent=None) -> QuerySet[Message]:
    """Every message of the customer; with `agent`, only of tickets the agent may see."""
    qs = Message.objects.filter(ticket__customer=customer).select_related("identity", "author")
    if agent is not None:
        qs = qs.filter(ticket__in=tickets_visible_to(agent=agent))
    if not include_notes:
        qs = qs.exclude(direction=Message.Direction.NOTE)
    return qs.order_by("created_at", "id")


def customer_recent_pages(*, customer: Customer, limit: int = 5) -> list[PageView]:
    """The customer's last web pages, newest first (the visitor trail; one query)."""
    return list(PageView.objects.filter(customer=customer).order_by("-created_at", "-id")[:limit])


def customer_activity(*, customer: Customer) -> QuerySet[PageView]:
    """The whole web trail of a customer (scope the customer with customer_360 first)."""
    return PageView.objects.filter(customer=customer).order_by("-created_at", "-id")
