"""Reads for the desk's customer-360 (panel and page)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from surveys.selectors import customer_satisfaction
from tickets.models import Ticket
from tickets.selectors import tickets_visible_to

from .models import Customer, CustomerMerge, Identity
from .selectors import CustomerStats, customer_stats, customers_visible_to


@dataclass
class Panel:
    customer: Customer
    identities: list[Identity]
    tickets: list[Ticket]
    stats: CustomerStats
    merges: list[CustomerMerge]
    satisfaction: dict


def customer_panel(*, customer: Customer, current: Ticket | None = None, agent=None) -> Panel:
    """With `agent`, the customer's other tickets are those the agent may see."""
    base = Ticket.objects.all() if agent is None else tickets_visible_to(agent=agent)
    tickets = list(
        base.filter(customer=customer)
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
    )


def duplicate_suggestions(*, customer: Customer, limit: int = 5, agent=None) -> list[Customer]:
    """Other customers likely to be the same person: the same name (in the same or no
    organisation), or an identity that looks like one of theirs — an email address with the
    same local part at another domain, a phone number with the same national digits."""
    qs = Customer.objects.filter(merged_into=None).exclude(pk=customer.pk)
    if agent is not None:
        qs = qs.filter(pk__in=customers_visible_to(agent=agent).values("pk"))
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
