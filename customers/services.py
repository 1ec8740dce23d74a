"""Write paths for customers: identity resolution, creation, merge and its undo."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import services as audit
from cxdesk.compiled import Compiled
from cxdesk.errors import ApplicationError
from cxdesk.memo import kept
from cxdesk.realtime import broadcast_on_commit

from . import signals
from .models import Customer, CustomerMerge, Identity, Organization, PageView
from .normalize import normalize_address


def live_customer(customer: Customer) -> Customer:
    """Follow merge tombstones to the customer that is kept."""
    seen = set()
    while customer.merged_into_id and customer.pk not in seen:
        seen.add(customer.pk)
        customer = customer.merged_into
    return customer


_IDENTITY = Compiled(
    lambda kind, address: Identity.objects.select_related("customer").filter(kind=kind, address=address),
    "kind",
    "address",
)


def identity_with_customer(kind: str, address: str) -> Identity | None:
    """The identity of this normalised (kind, address), its customer read with it, or None.
    One statement, compiled once per process (`cxdesk.compiled`): every new conversation and
    every API create asks it."""
    return _IDENTITY.first(kind=kind, address=address)


def identity_resolve(
    *,
    kind: str,
    address: str,
    display_name: str = "",
    region: str | None = None,
    seen_at=None,
    caller_retries: bool = False,
) -> tuple[Identity, bool]:
    """The identity for (kind, address), creating it and a new customer if unknown (seen at
    `seen_at`). Returns (identity, created). Safe under concurrency: the unique (kind,
    address) constraint decides the race — here (a savepoint, and theirs is returned), or,
    with `caller_retries`, by the IntegrityError reaching a caller that runs its whole
    transaction again (inbound ingest: one savepoint less per new customer)."""
    address = normalize_address(kind, address, region)
    batch = _batch.get()  # a batch's senders, read ahead (`senders_batch`)
    identity = batch.known.get((kind, address), _UNREAD) if batch else _UNREAD
    if identity is _UNREAD:
        identity = identity_with_customer(kind, address)
    if identity is not None:
        if batch and (kind, address) in batch.fresh:
            batch.fresh.discard((kind, address))  # created ahead for this batch: new the first time
            return identity, True
        return identity, False
    try:
        with transaction.atomic() if not caller_retries else contextlib.nullcontext():
            customer = Customer.objects.create(
                name=display_name[:200] or "", organization=_organization_for(kind, address)
            )
            identity = Identity.objects.create(
                customer=customer, kind=kind, address=address, display_name=display_name[:200], last_seen_at=seen_at
            )
            if batch:  # this transaction's own: the rest of the batch finds them here
                batch.known[(kind, address)] = identity
                batch.locked[customer.pk] = customer
            return identity, True
    except IntegrityError:
        if caller_retries:
            raise
        # Someone created it in the meantime: use theirs.
        return Identity.objects.select_related("customer").get(kind=kind, address=address), False


@dataclass
class _Batch:
    known: dict[tuple[str, str], Identity | None] = field(default_factory=dict)
    locked: dict[int, Customer] = field(default_factory=dict)
    fresh: set[tuple[str, str]] = field(default_factory=set)  # created ahead, not yet asked for
    organizations: dict[str, Organization | None] = field(default_factory=dict)  # email domain → its organisation
    touched: dict[int, tuple[Identity, set[str]]] = field(default_factory=dict)  # written as the batch ends


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar("customers_batch", default=None)
_UNREAD = object()


@contextlib.contextmanager
def senders_batch(
    senders: Iterable[tuple[str, str, str | None] | tuple[str, str, str | None, str]], *, create: bool = False
) -> Iterator[None]:
    """Inside ONE transaction that is all or nothing (a drainer's batch): read the
    identities of these (kind, address, region, display name) senders in one statement and
    lock their customers in one more, in id order — so `identity_resolve` and
    `customer_lock` ask nothing more of them in the block, and two batches lock common
    customers in the same order. `create`: the batch first takes its turn on each of its
    senders (`senders_take_turns`: a batch sharing one waits for this one), then the senders
    nobody knows get their customer and identity now, two INSERTs for the batch (the caller
    stores a message of every sender, or rolls the batch back); `identity_resolve` calls them
    new the first time it is asked.
    An address that does not parse is left to `identity_resolve`, which says why."""
    batch = _Batch()
    token = _batch.set(batch)
    try:
        names: dict[tuple[str, str], str] = {}
        for kind, address, region, *display_name in senders:
            with contextlib.suppress(ApplicationError):
                pair = (kind, normalize_address(kind, address, region))
                names[pair] = names.get(pair) or (display_name[0] if display_name else "")
        if names and create:
            senders_take_turns(names)
        if names:
            by_kind: dict[str, list[str]] = {}
            for kind, address in sorted(names):
                by_kind.setdefault(kind, []).append(address)
            wanted = Q()
            for kind, addresses in by_kind.items():  # one IN list per kind, not an OR per sender
                wanted |= Q(kind=kind, address__in=addresses)
            found = {(i.kind, i.address): i for i in Identity.objects.filter(wanted)}
            owners = sorted({i.customer_id for i in found.values()})
            if owners:
                rows = Customer.objects.select_for_update(no_key=True).filter(pk__in=owners).order_by("pk")
                batch.locked.update({c.pk: c for c in rows})
            for pair in names:
                identity = found.get(pair)
                if identity is not None and identity.customer_id in batch.locked:
                    identity.customer = batch.locked[identity.customer_id]
                batch.known[pair] = identity
            # The organisations of the new senders' email domains, in one statement more
            # (a new customer joins the organisation that owns its domain).
            domains = {
                address.rsplit("@", 1)[-1]
                for kind, address in names
                if kind == "email" and not found.get((kind, address))
            }
            if domains:
                batch.organizations = _organizations_for_domains(domains)
            missing = [(pair, name) for pair, name in names.items() if found.get(pair) is None]
            if create and missing:
                _senders_create(batch, missing)
        yield
        _touched_write(batch)
    finally:
        _batch.reset(token)


SENDER_LOCKS = 0x63786964  # "cxid": the advisory-lock namespace of senders' addresses


def sender_lock_key(kind: str, address: str) -> int:
    """A sender's advisory-lock key (a 32-bit hash: two addresses that share one only wait
    for each other)."""
    digest = hashlib.blake2b(f"{kind}:{address}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def senders_take_turns(pairs: Iterable[tuple[str, str]]) -> None:
    """Two batches that share a sender take turns on it: a transaction-scoped advisory lock
    per (kind, address), all taken in one statement in key order before the batch reads or
    locks anything else. The second batch then reads the identity the first one created,
    instead of creating it too and failing its whole batch on the unique address when the
    first commits (a number that writes twice within a moment, each message in another
    drainer's batch). Writers that create one customer at a time (the API, the desk) do not
    take these locks: a batch that meets one of theirs is still taken again. PostgreSQL only
    (SQLite has one writer at a time)."""
    if connection.vendor != "postgresql" or not connection.in_atomic_block:
        return
    keys = sorted({sender_lock_key(kind, address) for kind, address in pairs})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, key) FROM (SELECT unnest(%s::int[]) AS key ORDER BY 1) AS keys",
            [SENDER_LOCKS, keys],
        )


def _senders_create(batch: _Batch, missing: list[tuple[tuple[str, str], str]]) -> None:
    """Customers and identities of a batch's first-time senders, as `identity_resolve` would
    make them one by one. Another batch with the same new sender waits for this one's
    commit (`senders_take_turns`); a customer created meanwhile by another writer fails the
    batch on the unique (kind, address) constraint, and it is taken again and finds it."""
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        [Customer(name=name[:200], organization=_organization_for(kind, address)) for (kind, address), name in missing]
    )
    identities = Identity.objects.bulk_create(
        [
            Identity(customer=customer, kind=kind, address=address, display_name=name[:200], last_seen_at=now)
            for customer, ((kind, address), name) in zip(customers, missing, strict=True)
        ]
    )
    for identity, customer in zip(identities, customers, strict=True):
        batch.known[(identity.kind, identity.address)] = identity
        batch.locked[customer.pk] = customer
        batch.fresh.add((identity.kind, identity.address))


def identity_touch(*, identity: Identity, fields: list[str]) -> None:
    """Write these fields of `identity` (its last sighting, opt-out, name): now, or inside
    `senders_batch` as the batch ends — the identities that changed the same fields in one
    UPDATE, each with its own values, instead of one UPDATE per message."""
    batch = _batch.get()
    if batch is None or identity.pk is None:
        identity.save(update_fields=fields)
        return
    _same, changed = batch.touched.get(identity.pk, (identity, set()))
    batch.touched[identity.pk] = (identity, changed | set(fields))


def _touched_write(batch: _Batch) -> None:
    groups: dict[tuple[str, ...], list[Identity]] = {}
    for identity, changed in batch.touched.values():
        groups.setdefault(tuple(sorted(changed)), []).append(identity)
    for fields, identities in groups.items():
        Identity.objects.bulk_update(identities, list(fields))


def senders_new() -> int:
    """How many first-time senders the current `senders_batch(create=True)` created."""
    batch = _batch.get()
    return len(batch.fresh) if batch else 0


def senders_locked() -> set[int]:
    """The ids of the customers the current `senders_batch` holds locked (empty outside one)."""
    batch = _batch.get()
    return set(batch.locked) if batch else set()


def customer_lock(customer_id: int) -> Customer:
    """The customer, row-locked for the rest of the transaction (one ingest per customer at
    a time: threading decisions see what a concurrent message just did)."""
    batch = _batch.get()
    if batch and customer_id in batch.locked:
        return batch.locked[customer_id]
    customer = Customer.objects.select_for_update(no_key=True).get(pk=customer_id)
    if batch:
        batch.locked[customer_id] = customer
    return customer


def _organizations_for_domains(domains: Iterable[str]) -> dict[str, Organization | None]:
    """{domain: the organisation `_organization_for` finds for it} for many domains at once."""
    wanted = Q()
    for domain in domains:
        wanted |= Q(domains__icontains=f'"{domain}"')
    candidates = [
        (org, json.dumps(org.domains, ensure_ascii=False).casefold()) for org in Organization.objects.filter(wanted)
    ]
    return {
        domain: next((org for org, text in candidates if f'"{domain}"'.casefold() in text), None) for domain in domains
    }


def _organization_for(kind: str, address: str) -> Organization | None:
    if kind != "email":
        return None
    domain = address.rsplit("@", 1)[-1]
    batch = _batch.get()
    if batch and domain in batch.organizations:
        return batch.organizations[domain]
    # domains is a JSON list of strings; a text match on the quoted domain works on every backend.
    return kept(
        f"customers.organization.{domain}",
        lambda: Organization.objects.filter(domains__icontains=f'"{domain}"').first(),
    )


@transaction.atomic
def customer_create(
    *,
    name: str = "",
    identities: list[tuple[str, str]],
    organization: Organization | None = None,
    region: str | None = None,
) -> Customer:
    """A new customer with the given identities; an identity already taken is an error."""
    if not identities:
        raise ApplicationError(_("a customer needs at least one identity (email or phone)"), code="identity_required")
    normalized = [(kind, normalize_address(kind, value, region)) for kind, value in identities]
    for kind, address in normalized:
        existing = Identity.objects.filter(kind=kind, address=address).first()
        if existing:
            raise ApplicationError(
                _("%(kind)s %(address)s already belongs to customer %(id)s.")
                % {"kind": kind, "address": address, "id": existing.customer_id},
                code="identity_taken",
                fields={kind: [f"already belongs to customer {existing.customer_id}"]},
                status=409,
            )
    try:
        with transaction.atomic():  # the unique (kind, address) constraint decides a concurrent create
            customer = Customer.objects.create(name=name, organization=organization)
            Identity.objects.bulk_create([Identity(customer=customer, kind=k, address=a) for k, a in normalized])
    except IntegrityError:
        raise ApplicationError(
            _("one of these identities was just created for another customer"),
            code="identity_taken",
            fields={kind: ["already belongs to another customer"] for kind, _ in normalized},
            status=409,
        ) from None
    return customer


@transaction.atomic
def identity_add(*, customer: Customer, kind: str, address: str, actor=None, region: str | None = None) -> Identity:
    from django.conf import settings

    address = normalize_address(kind, address, region or settings.CXDESK_DEFAULT_REGION)
    existing = Identity.objects.filter(kind=kind, address=address).first()
    if existing:
        if existing.customer_id == customer.pk:
            return existing
        raise ApplicationError(
            _("%(kind)s %(address)s belongs to another customer (#%(id)s); merge the customers instead.")
            % {"kind": kind, "address": address, "id": existing.customer_id},
            code="identity_taken",
            status=409,
            fields={"address": [f"already belongs to customer {existing.customer_id}"]},
            extra={"owner": existing.customer_id},
        )
    if kind not in Identity.Kind.values:
        raise ApplicationError(f"unknown identity kind {kind!r}", code="invalid_kind", fields={"kind": ["unknown"]})
    try:
        with transaction.atomic():
            identity = Identity.objects.create(customer=customer, kind=kind, address=address)
    except IntegrityError:
        raise ApplicationError(
            _("%(kind)s %(address)s was just added to another customer; merge the customers instead.")
            % {"kind": kind, "address": address},
            code="identity_taken",
            status=409,
            extra={
                "owner": Identity.objects.filter(kind=kind, address=address)
                .values_list("customer_id", flat=True)
                .first()
            },
        ) from None
    broadcast_on_commit(f"customer.{customer.pk}", "customer.updated", customer_id=customer.pk)
    return identity


@transaction.atomic
def identity_remove(*, identity: Identity, actor=None) -> None:
    if identity.customer.identities.count() <= 1:
        raise ApplicationError(_("a customer keeps at least one identity"), code="last_identity")
    customer_id = identity.customer_id
    identity.delete()
    broadcast_on_commit(f"customer.{customer_id}", "customer.updated", customer_id=customer_id)


def _snapshot(customer: Customer) -> dict:
    return {"name": customer.name, "organization_id": customer.organization_id, "attributes": customer.attributes}


@transaction.atomic
def merge_customers(*, keep: Customer, other: Customer, actor=None) -> CustomerMerge:
    """Move `other`'s identities and tickets to `keep`; `other` stays as a tombstone.
    Recorded in a CustomerMerge so `unmerge_customers` can undo exactly this."""
    from tickets import events
    from tickets.models import Ticket, TicketEvent

    if keep.pk == other.pk:
        raise ApplicationError(_("cannot merge a customer into itself"), code="merge_self")
    # Lock both rows in a stable order so concurrent merges cannot cross.
    locked = {c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=[keep.pk, other.pk]).order_by("pk")}
    keep, other = locked[keep.pk], locked[other.pk]
    if keep.merged_into_id or other.merged_into_id:
        raise ApplicationError(_("one of these customers was already merged away"), code="already_merged", status=409)

    identity_ids = list(other.identities.values_list("pk", flat=True))
    ticket_ids = list(Ticket.objects.filter(customer=other).values_list("pk", flat=True))
    page_view_ids = list(PageView.objects.filter(customer=other).values_list("pk", flat=True))
    merge = CustomerMerge.objects.create(
        kept=keep,
        other=other,
        identity_ids=identity_ids,
        ticket_ids=ticket_ids,
        page_view_ids=page_view_ids,
        other_snapshot=_snapshot(other),
        kept_snapshot=_snapshot(keep),
        actor=actor,
    )
    Identity.objects.filter(pk__in=identity_ids).update(customer=keep)
    Ticket.objects.filter(pk__in=ticket_ids).update(customer=keep, updated_at=timezone.now())
    PageView.objects.filter(pk__in=page_view_ids).update(customer=keep)
    changed = False
    if not keep.name and other.name:
        keep.name, changed = other.name, True
    if not keep.organization_id and other.organization_id:
        keep.organization_id, changed = other.organization_id, True
    merged_attrs = {**other.attributes, **keep.attributes}
    if merged_attrs != keep.attributes:
        keep.attributes, changed = merged_attrs, True
    if changed:
        keep.save()
    other.merged_into = keep
    other.save(update_fields=["merged_into", "updated_at"])
    for ticket in Ticket.objects.filter(pk__in=ticket_ids):
        events.record(
            ticket, TicketEvent.Kind.CUSTOMER_MERGED, actor=actor, kept=keep.pk, other=other.pk, merge_id=merge.pk
        )
    audit.customer_merged(merge=merge, actor=actor)
    broadcast_on_commit(f"customer.{keep.pk}", "customer.merged", customer_id=keep.pk, other_id=other.pk)
    signals.customer_merged.send(sender=Customer, merge=merge)
    return merge


@transaction.atomic
def unmerge_customers(*, merge: CustomerMerge, actor=None) -> Customer:
    """Undo a merge: the identities and tickets it moved go back, the tombstone lives again."""
    from tickets import events
    from tickets.models import Ticket, TicketEvent

    merge = CustomerMerge.objects.select_for_update().get(pk=merge.pk)
    if merge.undone_at:
        raise ApplicationError(_("this merge was already undone"), code="already_undone", status=409)
    keep, other = merge.kept, merge.other
    Identity.objects.filter(pk__in=merge.identity_ids, customer=keep).update(customer=other)
    Ticket.objects.filter(pk__in=merge.ticket_ids, customer=keep).update(customer=other, updated_at=timezone.now())
    # Exactly the page views the merge moved (those since deleted by retention are gone).
    PageView.objects.filter(pk__in=merge.page_view_ids, customer=keep).update(customer=other)
    snap = merge.kept_snapshot
    keep.name, keep.organization_id, keep.attributes = snap["name"], snap["organization_id"], snap["attributes"]
    keep.save()
    other.merged_into = None
    other.save(update_fields=["merged_into", "updated_at"])
    merge.undone_at = timezone.now()
    merge.undone_by = actor
    merge.save(update_fields=["undone_at", "undone_by"])
    for ticket in Ticket.objects.filter(pk__in=merge.ticket_ids):
        events.record(
            ticket, TicketEvent.Kind.CUSTOMER_UNMERGED, actor=actor, kept=keep.pk, other=other.pk, merge_id=merge.pk
        )
    audit.customer_unmerged(merge=merge, actor=actor)
    broadcast_on_commit(f"customer.{keep.pk}", "customer.updated", customer_id=keep.pk)
    return other


def page_view_record(
    *,
    url: str,
    title: str = "",
    referrer: str = "",
    customer: Customer | None = None,
    visitor_id: str = "",
    email_message_id: int | None = None,
) -> PageView:
    """Store one page of the visitor trail (values cut to the column sizes)."""
    return PageView.objects.create(
        customer=customer,
        visitor_id=visitor_id[:64],
        url=url[:2000],
        title=title[:300],
        referrer=referrer[:2000],
        email_message_id=email_message_id,
    )


@transaction.atomic
def customer_update(
    *,
    customer: Customer,
    actor=None,
    name: str | None = None,
    organization_name: str | None = None,
    attributes: dict | None = None,
) -> Customer:
    """An agent edits a customer: name, organisation (by name; created if new), attributes."""
    fields = []
    if name is not None and name.strip()[:200] != customer.name:
        customer.name = name.strip()[:200]
        fields.append("name")
    if organization_name is not None:
        org_name = organization_name.strip()[:200]
        org = Organization.objects.get_or_create(name=org_name)[0] if org_name else None
        if (org.pk if org else None) != customer.organization_id:
            customer.organization = org
            fields.append("organization")
    if attributes is not None and attributes != customer.attributes:
        customer.attributes = attributes
        fields.append("attributes")
    if fields:
        customer.save(update_fields=[*fields, "updated_at"])
        broadcast_on_commit(f"customer.{customer.pk}", "customer.updated", customer_id=customer.pk)
    return customer


def page_views_link(*, visitor_id: str, customer: Customer) -> int:
    """A visitor was identified: their earlier anonymous pages become the customer's."""
    if not visitor_id:
        return 0
    return PageView.objects.filter(visitor_id=visitor_id, customer=None).update(customer=customer)


def page_views_expire(*, days: int) -> int:
    """Delete trail rows older than `days` (the retention setting); returns how many."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = PageView.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def customer_language_set(*, customer: Customer, language: str, actor=None, only_if_unset: bool = False) -> Customer:
    """The language automatic messages go out in: set by an agent, the portal switcher, or
    the channel's locale (`only_if_unset`: a channel's hint never overrides a choice).
    Unknown languages fall back (pt-br → pt → nothing stored)."""
    from cxdesk.i18n import clean_language

    code = clean_language(language)
    if language and not code and actor is not None:
        raise ApplicationError(_("That language is not available."), code="invalid_language")
    if only_if_unset and (customer.language or not code):
        return customer
    if code != customer.language:
        Customer.objects.filter(pk=customer.pk).update(language=code, updated_at=timezone.now())
        customer.language = code
        broadcast_on_commit(f"customer.{customer.pk}", "customer.updated", customer_id=customer.pk)
    return customer
