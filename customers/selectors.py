"""Reads for customers, scoped to what the caller may see, and the 360 summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Min, Prefetch, Q, QuerySet

from tickets.models import Message, Ticket

from .models import Customer, Identity, PageView
from .normalize import normalize_address


def customers_visible_to(*, agent) -> QuerySet[Customer]:
    if agent is None or not agent.is_active or not agent.is_staff:
        return Customer.objects.none()
    return Customer.objects.all()


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


def customer_stats(*, customer: Customer) -> CustomerStats:
    agg = Ticket.objects.filter(customer=customer).aggregate(
        tickets=Count("id"),
        open_tickets=Count("id", filter=Q(status__in=Ticket.OPEN_STATUSES)),
        first_seen=Min("created_at"),
        last_contact=Max("last_customer_message_at"),
    )
    channels = sorted(
        set(
            Message.objects.filter(ticket__customer=customer, direction=Message.Direction.INBOUND)
            .values_list("channel", flat=True)
            .distinct()
        )
    )
    return CustomerStats(channels=channels, **agg)


def customer_360(*, agent, customer_id: int) -> Customer | None:
    return (
        customers_visible_to(agent=agent)
        .select_related("organization", "merged_into")
        .prefetch_related(
            Prefetch("identities", queryset=Identity.objects.order_by("kind", "address")),
            Prefetch("tickets", queryset=Ticket.objects.order_by("-last_message_at", "-id")),
        )
        .filter(pk=customer_id)
        .first()
    )


def customer_timeline(*, customer: Customer, include_notes: bool = True) -> QuerySet[Message]:
    qs = Message.objects.filter(ticket__customer=customer).select_related("identity", "author")
    if not include_notes:
        qs = qs.exclude(direction=Message.Direction.NOTE)
    return qs.order_by("created_at", "id")


def customer_recent_pages(*, customer: Customer, limit: int = 5) -> list[PageView]:
    """The customer's last web pages, newest first (the visitor trail; one query)."""
    return list(PageView.objects.filter(customer=customer).order_by("-created_at", "-id")[:limit])


def customer_activity(*, customer: Customer) -> QuerySet[PageView]:
    """The whole web trail of a customer (scope the customer with customer_360 first)."""
    return PageView.objects.filter(customer=customer).order_by("-created_at", "-id")
