"""Reads for the desk's customer-360 (panel and page)."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

from surveys.selectors import customer_satisfaction
from tickets.models import Message, Ticket

from .models import Customer, CustomerMerge, Identity, PageView
from .selectors import CustomerStats, customer_recent_pages, customer_stats


@dataclass
class Panel:
    customer: Customer
    identities: list[Identity]
    tickets: list[Ticket]
    stats: CustomerStats
    merges: list[CustomerMerge]
    satisfaction: dict
    trail: list[TrailItem] = field(default_factory=list)


@dataclass
class TrailItem:
    """One page of the web trail, with the email whose tracked link brought them (if any)."""

    page: PageView
    email: Message | None = None


def web_trail(*, customer: Customer, limit: int = 10) -> list[TrailItem]:
    """The compact "Web trail" block: the last pages, and which email sent them (2 queries)."""
    pages = customer_recent_pages(customer=customer, limit=limit)
    ids = {p.email_message_id for p in pages if p.email_message_id}
    emails = {m.pk: m for m in Message.objects.filter(pk__in=ids).select_related("ticket")} if ids else {}
    return [TrailItem(page=p, email=emails.get(p.email_message_id)) for p in pages]


def customer_panel(*, customer: Customer, current: Ticket | None = None) -> Panel:
    tickets = list(
        Ticket.objects.filter(customer=customer)
        .exclude(pk=current.pk if current else None)
        .order_by("-last_message_at", "-id")[:50]
    )
    tickets.sort(key=lambda t: not t.is_open)
    return Panel(
        customer=customer,
        identities=list(customer.identities.order_by("kind", "address")),
        tickets=tickets,
        stats=customer_stats(customer=customer),
        merges=list(CustomerMerge.objects.filter(kept=customer, undone_at=None).select_related("other")[:10]),
        satisfaction=customer_satisfaction(customer=customer),
        trail=web_trail(customer=customer),
    )


def duplicate_suggestions(*, customer: Customer, limit: int = 5) -> list[Customer]:
    """Other customers likely to be the same person: the same name (in the same or no
    organisation), or an identity that looks like one of theirs — an email address with the
    same local part at another domain, a phone number with the same national digits."""
    qs = Customer.objects.filter(merged_into=None).exclude(pk=customer.pk)
    match = Q(pk__in=[])
    if customer.name:
        same_name = Q(name__iexact=customer.name)
        if customer.organization_id:
            same_name &= Q(organization_id=customer.organization_id) | Q(organization=None)
        match |= same_name
    for identity in customer.identities.all():
        if identity.kind == "email":
            local = identity.address.split("@")[0]
            if len(local) >= 4:
                match |= Q(identities__kind="email", identities__address__istartswith=local + "@")
        elif identity.kind == "phone":
            digits = identity.address.lstrip("+")
            if len(digits) >= 9:
                match |= Q(identities__kind="phone", identities__address__endswith=digits[-9:])
    return list(qs.filter(match).distinct().order_by("pk")[:limit])
