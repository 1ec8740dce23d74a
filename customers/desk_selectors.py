"""Reads for the desk's customer-360 (panel and page)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import phonenumbers
from django.conf import settings
from django.db.models import Q
from django.utils.translation import gettext as _

from cxdesk.errors import ApplicationError
from surveys.selectors import customer_satisfaction
from tickets.models import Message, Ticket
from tickets.selectors import tickets_visible_to

from .models import Customer, CustomerMerge, Identity, PageView
from .normalize import normalize_address
from .selectors import CustomerStats, customer_recent_pages, customer_stats, customers_visible_to


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
        stats=customer_stats(customer=customer, agent=agent),
        merges=list(CustomerMerge.objects.filter(kept=customer, undone_at=None).select_related("other")[:10]),
        satisfaction=customer_satisfaction(customer=customer),
        trail=web_trail(customer=customer),
    )


FREEMAIL = {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "live.com", "icloud.com",
            "wp.pl", "o2.pl", "onet.pl", "interia.pl", "gmx.de", "gmx.net", "web.de", "libero.it", "proton.me"}  # fmt: skip
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# How many of the newest customer messages a duplicate search reads for addresses.
RECENT_MESSAGES = 2000


@dataclass
class Suggestion:
    customer: Customer
    reasons: list[str]


def _addresses_in(texts: list[str], region: str) -> set[tuple[str, str]]:
    """Emails and phone numbers written in message bodies or signatures, normalised."""
    found: set[tuple[str, str]] = set()
    for text in texts:
        for email in _EMAIL_IN_TEXT.findall(text or ""):
            found.add(("email", email.lower().rstrip(".")))
        for match in phonenumbers.PhoneNumberMatcher(text or "", region):
            found.add(("phone", phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)))
    return found


def duplicate_suggestions(*, customer: Customer, limit: int = 8, agent=None) -> list[Suggestion]:
    """Other customers likely to be the same person, each with why:
    - one of their addresses is written in this customer's messages (a signature), or one of
      this customer's addresses is written in their recent messages;
    - the same name in the same organisation or at the same (non-freemail) e-mail domain, or
      the same name where either has no organisation;
    - an e-mail address with the same local part at another domain, a phone number with the
      same national digits."""
    region = settings.CXDESK_DEFAULT_REGION
    mine = list(customer.identities.all())
    own = {(i.kind, i.address) for i in mine}
    reasons: dict[int, list[str]] = {}

    def add(pk: int, why: str) -> None:
        if pk != customer.pk and why not in reasons.setdefault(pk, []):
            reasons[pk].append(why)

    # Addresses written in this customer's own messages that belong to someone else.
    texts = list(
        Message.objects.filter(ticket__customer=customer, direction=Message.Direction.INBOUND)
        .order_by("-id")
        .values_list("body_text", flat=True)[:50]
    )
    written = _addresses_in(texts, region) - own
    if written:
        q = Q(pk__in=[])
        for kind, address in written:
            q |= Q(kind=kind, address=address)
        for pk, address in Identity.objects.filter(q).values_list("customer_id", "address"):
            add(pk, _("%(address)s is written in their messages") % {"address": address})
    # This customer's addresses written in other people's recent messages.
    needles = []
    for identity in mine:
        if identity.kind == "email":
            needles.append((identity.address, Q(body_text__icontains=identity.address)))
        elif identity.kind == "phone" and len(identity.address) >= 9:
            needles.append((identity.address, Q(body_text__contains=identity.address[-3:])))
    if needles:
        recent = Message.objects.filter(direction=Message.Direction.INBOUND).order_by("-id")[:RECENT_MESSAGES]
        match = Q(pk__in=[])
        for _address, q in needles:
            match |= q
        rows = (
            Message.objects.filter(pk__in=recent.values("pk"))
            .filter(match)
            .exclude(ticket__customer=customer)
            .values_list("ticket__customer_id", "body_text")[:200]
        )
        for pk, text in rows:
            for _kind, address in _addresses_in([text], region) & own:
                add(pk, _("their message mentions %(address)s") % {"address": address})
    # Same name, sharing an organisation or an e-mail domain.
    if customer.name:
        domains = {i.address.split("@")[1] for i in mine if i.kind == "email" and "@" in i.address} - FREEMAIL
        same = Customer.objects.filter(name__iexact=customer.name, merged_into=None).exclude(pk=customer.pk)
        shared = Q(organization=None) | Q(pk__in=[])
        if customer.organization_id:
            shared |= Q(organization_id=customer.organization_id)
        else:
            shared = Q(pk__gte=0)
        for domain in domains:
            shared |= Q(identities__kind="email", identities__address__iendswith="@" + domain)
        for pk in same.filter(shared).values_list("pk", flat=True).distinct()[:limit]:
            add(pk, _("same name"))
    # Look-alike addresses.
    look = Q(pk__in=[])
    for identity in mine:
        if identity.kind == "email":
            local = identity.address.split("@")[0]
            if len(local) >= 4:
                look |= Q(identities__kind="email", identities__address__istartswith=local + "@")
        elif identity.kind == "phone":
            digits = identity.address.lstrip("+")
            if len(digits) >= 9:
                look |= Q(identities__kind="phone", identities__address__endswith=digits[-9:])
    for pk in Customer.objects.filter(look).exclude(pk=customer.pk).values_list("pk", flat=True).distinct()[:limit]:
        add(pk, _("a similar address"))
    if not reasons:
        return []
    people = Customer.objects.filter(pk__in=list(reasons), merged_into=None).prefetch_related("identities")
    if agent is not None:  # only people the agent may see
        people = people.filter(pk__in=customers_visible_to(agent=agent).values("pk"))
    found = {c.pk: c for c in people}
    out = [Suggestion(found[pk], why) for pk, why in reasons.items() if pk in found]
    out.sort(key=lambda s: (-len(s.reasons), s.customer.pk))
    return out[:limit]


def customer_search(*, agent, q: str, limit: int = 50) -> list[Customer]:
    """Customers by name, any identity (as typed or normalised) or organisation."""
    from .selectors import customers_visible_to

    q = (q or "").strip()[:200]
    qs = customers_visible_to(agent=agent).filter(merged_into=None)
    if q:
        match = Q(name__icontains=q) | Q(organization__name__icontains=q) | Q(identities__address__icontains=q)
        for kind in ("email", "phone"):
            try:
                match |= Q(
                    identities__kind=kind,
                    identities__address=normalize_address(kind, q, settings.CXDESK_DEFAULT_REGION),
                )
            except ApplicationError:
                pass
        qs = qs.filter(pk__in=Customer.objects.filter(match).values("pk"))
    return list(qs.select_related("organization").prefetch_related("identities").order_by("-updated_at", "-id")[:limit])
