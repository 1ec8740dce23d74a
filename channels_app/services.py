"""The ingest pipeline: every inbound message from every channel goes through `ingest()`.

verify (webhook view) → dedupe → resolve identity → thread → store (one transaction)
→ on commit: broadcast, automations, routing, webhooks (receivers of tickets.signals).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _lazy

from customers.models import Customer, Identity
from customers.services import (
    customer_language_set,
    customer_lock,
    identity_resolve,
    identity_touch,
    senders_batch,
    senders_locked,
    senders_new,
)
from cxdesk.errors import ApplicationError
from cxdesk.sanitize import html_to_text, sanitize_html
from outbox.services import Retry, enqueue
from outbox.services import batch as outbox_batch
from tickets import events
from tickets.models import Message, Ticket
from tickets.services import activity_batched, message_receive, message_set_status, rows_batched

from .models import Channel, Inbox, RawInbound
from .types import InboundMessage, StatusUpdate

log = logging.getLogger(__name__)

R = Message.ThreadReason
_REF_RE = re.compile(r"\[" + re.escape(settings.CXDESK_TICKET_PREFIX) + r"-(\d{1,12})\]", re.I)
_REPLY_SUBJECT = re.compile(r"^\s*(re|aw|sv|odp|r|rif|fw|fwd|wg|tr)\s*(\[\d+\])?\s*:", re.I)


@dataclass
class IngestResult:
    ticket: Ticket
    message: Message
    created_ticket: bool
    duplicate: bool
    bounce: bool = False  # a delivery report: `message` is the outbound message it failed

    def as_dict(self) -> dict:
        data = {
            "ticket": self.ticket.pk,
            "message": self.message.pk,
            "created_ticket": self.created_ticket,
            "duplicate": self.duplicate,
        }
        if self.bounce:
            data["bounce"] = True
        return data


def _existing(inbox: Inbox, provider_message_id: str | None, content_digest: str = "") -> Message | None:
    if not provider_message_id:
        return None
    # An id-only probe on the unique index (an ORDER BY … LIMIT with a join can make the
    # planner walk another index); the full row only when there is a repeat.
    found = list(
        Message.objects.filter(inbox=inbox, provider_message_id=provider_message_id, content_digest=content_digest)
        .order_by()
        .values_list("pk", flat=True)[:1]
    )
    return Message.objects.select_related("ticket").get(pk=found[0]) if found else None


_CHANNELS = frozenset(Channel.values)  # Django builds `.values` anew on every call: 11 µs


def _validate(inbound: InboundMessage) -> None:
    if inbound.channel not in _CHANNELS:
        raise ApplicationError(f"unknown channel {inbound.channel!r}", code="invalid_channel")
    if not inbound.sender or not inbound.sender.address:
        raise ApplicationError("the message has no sender address", code="no_sender")
    if inbound.provider_message_id is not None and len(inbound.provider_message_id) > 255:
        raise ApplicationError("provider message id longer than 255 characters", code="invalid_message_id")


def _trim(inbound: InboundMessage) -> list[str]:
    """Keep an oversized message, not refuse it: text over CXDESK_MAX_BODY_CHARS is cut
    with a notice, an HTML body over four times that is dropped (the text stays), an
    attachment over CXDESK_MAX_ATTACHMENT_BYTES is left out of storage. NUL characters,
    which no text column takes, are removed. Returns what was done, for the agent."""
    done: list[str] = []
    for name in ("text", "html", "subject"):
        value = getattr(inbound, name)
        if "\x00" in value:
            setattr(inbound, name, value.replace("\x00", ""))
    if inbound.sender.display_name and "\x00" in inbound.sender.display_name:
        inbound.sender.display_name = inbound.sender.display_name.replace("\x00", "")
    limit = settings.CXDESK_MAX_BODY_CHARS
    if len(inbound.text) > limit:
        done.append(f"text truncated at {limit:,} of {len(inbound.text):,} characters")
        inbound.text = inbound.text[:limit] + "\n\n" + str(TRUNCATED_NOTICE) % {"limit": f"{limit:,}"}
    if len(inbound.html) > limit * 4:
        done.append(f"HTML version ({len(inbound.html):,} characters) dropped")
        if not inbound.text:
            inbound.text = html_to_text(inbound.html[: limit * 4])[:limit]
        inbound.html = ""
    kept = []
    for att in inbound.attachments:
        if att.content is not None and len(att.content) > settings.CXDESK_MAX_ATTACHMENT_BYTES:
            done.append(
                f"attachment {(att.filename or 'unnamed')[:100].replace(chr(0), '')!r} ({len(att.content):,} bytes) "
                f"dropped: over {settings.CXDESK_MAX_ATTACHMENT_BYTES:,} bytes"
            )
            continue
        att.filename = att.filename.replace("\x00", "")
        kept.append(att)
    inbound.attachments = kept
    return done


TRUNCATED_NOTICE = _lazy("[Message truncated: it was longer than %(limit)s characters. The full mail is kept.]")


def ingest(inbound: InboundMessage, *, in_batch: bool = False) -> IngestResult:
    """Store one inbound message exactly once and thread it into the right ticket.

    Idempotent on (inbox, provider_message_id): a repeat, sequential or concurrent,
    returns the stored message with duplicate=True. `in_batch`: inside a drainer's batch
    transaction, without a savepoint of its own — a repeat or a race raises, and the
    drainer takes the batch's deliveries again one at a time, each in its own transaction
    (a savepoint is two statements, and repeats are rare)."""
    inbound.strip_nul()
    _validate(inbound)
    trimmed = _trim(inbound)
    if in_batch:
        return _ingest(inbound, trimmed)
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _ingest(inbound, trimmed)
        except IntegrityError:
            # A repeat (a provider's retry, or a concurrent delivery of the same message that
            # committed first): the unique (inbox, provider id, digest) constraint rolled ours
            # back whole. Return the stored one. (No probe before the insert: repeats are rare,
            # and every first delivery would pay for it.)
            existing = _existing(inbound.inbox, inbound.provider_message_id, inbound.content_digest)
            if existing:
                return IngestResult(existing.ticket, existing, False, True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _ingest(inbound: InboundMessage, trimmed: list[str]) -> IngestResult:
    inbox = inbound.inbox
    now = timezone.now()
    sender = inbound.sender
    identity, new_customer = identity_resolve(
        kind=sender.kind,
        address=sender.address,
        display_name=sender.display_name,
        region=inbox.default_region,
        seen_at=now,
        caller_retries=True,  # `ingest` runs it all again on the IntegrityError of a race
    )
    if new_customer:
        # Created in this transaction: nobody else can see it, let alone thread into it.
        customer = identity.customer
    else:
        # One ingest per customer at a time: threading decisions (join or open a ticket)
        # must see what a concurrent message of the same customer just did.
        customer = customer_lock(identity.customer_id)
    _touch_identity(identity, customer, sender.display_name, now, opt_out=inbound.opt_out)
    if inbound.language:
        customer_language_set(customer=customer, language=inbound.language, only_if_unset=True)

    ticket, reason, refused = _thread(inbound, customer, identity.address, new_customer=new_customer)
    if ticket is None:
        reason = R.HEADER_REFUSED if refused else R.NEW_TICKET
    text = inbound.text or html_to_text(inbound.html)
    received = message_receive(
        customer=customer,
        channel=inbound.channel,
        ticket=ticket,
        new_ticket={"subject": (inbound.subject.strip() or _subject_from_text(text))[:500]},
        inbox=inbox,
        identity=identity,
        subject=inbound.subject,
        body_text=text,
        body_html=sanitize_html(inbound.html),
        attachments=inbound.attachments,
        thread_reason=reason,
        reopen=not inbound.auto_submitted,
        received_at=inbound.received_at or now,
        provider_message_id=inbound.provider_message_id,
        content_digest=inbound.content_digest,
        email_message_id=inbound.email_message_id[:998],
        in_reply_to=inbound.in_reply_to[:998],
        references=" ".join(inbound.references),
        metadata={**_json_safe(inbound.metadata), "auto_submitted": inbound.auto_submitted}
        | ({"trimmed": trimmed} if trimmed else {}),
    )
    ticket, message, created = received.ticket, received.message, received.created
    threads = _threads.get()
    if threads is not None:
        threads.stored(message, ticket, customer, identity.address)
    if refused is not None:
        # Reply headers named another customer's ticket: kept apart, linked both ways.
        events.thread_refused(ticket, other=refused, message_id=message.pk, sender=identity.address)
        events.thread_refused(refused, other=ticket, message_id=message.pk, sender=identity.address)
    if trimmed:
        events.mail_trimmed(ticket, message_id=message.pk, detail="; ".join(trimmed))
    if inbound.raw_inbound_id:
        raw_inbound_processed(raw_id=inbound.raw_inbound_id, message=message, at=now)
    return IngestResult(ticket, message, created, False)


SEEN_EVERY = timedelta(minutes=1)  # `last_seen_at` is written at most this often (a chat is many messages)


def _touch_identity(identity: Identity, customer: Customer, display_name: str, now, opt_out: bool | None) -> None:
    fields = []
    if identity.last_seen_at is None or now - identity.last_seen_at >= SEEN_EVERY:
        identity.last_seen_at = now
        fields.append("last_seen_at")
    if opt_out is not None and bool(identity.opted_out_at) != opt_out:
        identity.opted_out_at = now if opt_out else None
        fields.append("opted_out_at")
    if display_name and not identity.display_name:
        identity.display_name = display_name[:200]
        fields.append("display_name")
    if fields:
        identity_touch(identity=identity, fields=fields)
    if display_name and not customer.name:
        customer.name = display_name[:200]
        customer.save(update_fields=["name", "updated_at"])


def _json_safe(value):
    """JSON without NUL characters (PostgreSQL's jsonb refuses them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _locked(qs) -> Ticket | None:
    """The first ticket of `qs`, row-locked: threading decides on it and then updates it."""
    return _remember(qs.select_for_update(of=("self",), no_key=True).first())


def _locked_pk(pk: int) -> Ticket | None:
    """Ticket `pk`, row-locked — inside a chunk's `threads_batched`, the instance the chunk
    already holds (locked as it began, or created or locked by an earlier mail of it)."""
    threads = _threads.get()
    if threads is not None and pk in threads.tickets:
        return threads.tickets[pk]
    return _locked(Ticket.objects.filter(pk=pk))


def _remember(ticket: Ticket | None) -> Ticket | None:
    """Inside a chunk: one instance per ticket, so every mail of it sees what the earlier
    ones did to it (a reopen, the activity times)."""
    threads = _threads.get()
    if threads is None or ticket is None:
        return ticket
    return threads.tickets.setdefault(ticket.pk, ticket)


def _live_ticket(ticket: Ticket | None) -> Ticket | None:
    seen = set()
    while ticket is not None and ticket.merged_into_id and ticket.pk not in seen:
        seen.add(ticket.pk)
        ticket = _locked_pk(ticket.merged_into_id)
    return ticket


def _usable(ticket: Ticket | None) -> Ticket | None:
    ticket = _live_ticket(ticket)
    if ticket is None or ticket.status == Ticket.Status.CLOSED:
        return None  # a closed conversation is not reopened; the customer gets a new ticket
    return ticket


def _thread(
    inbound: InboundMessage, customer: Customer, address: str, *, new_customer: bool = False
) -> tuple[Ticket | None, str, Ticket | None]:
    """(ticket to join or None for a new one, thread reason, a ticket the reply headers
    named but the sender may not join). A customer created by this very message has no
    messages or tickets of their own to look through."""
    # 1. Email headers: the message this one replies to — if the sender belongs there:
    #    the ticket's customer, someone of its organisation, or a recipient (To/Cc) of a
    #    message of that ticket the headers name. (No ORDER BY … LIMIT here: on a large
    #    table the planner would walk the primary key backwards instead of using the
    #    Message-ID index; the matches are few, so pick the newest in Python.)
    refused = None
    header_ids = [i for i in [inbound.in_reply_to, *reversed(inbound.references)] if i]
    if header_ids:
        ticket, refused = _header_ticket(header_ids, customer, address)
        if ticket:
            return ticket, R.HEADER, None
    # 1b. A reply that arrived before this message (its parent, or an earlier message of
    #     the thread its References name): join the reply's ticket.
    if inbound.email_message_id and not new_customer:
        mid = inbound.email_message_id
        threads = _threads.get()
        if threads is not None:
            ticket = _newest_of(threads.replies_to(mid, customer.pk))
        else:
            ticket = _newest_ticket(
                Message.objects.filter(Q(in_reply_to=mid) | Q(references__contains=mid), ticket__customer=customer)
            )
        if ticket:
            return ticket, R.HEADER, None
    # 2. The [CX-1042] reference in the subject, for this customer (or their organisation).
    match = _REF_RE.search(inbound.subject or "")
    if match:
        scope = Q(customer=customer)
        if customer.organization_id:
            scope |= Q(customer__organization_id=customer.organization_id)
        ticket = _usable(_locked(Ticket.objects.filter(scope, pk=int(match.group(1)))))
        if ticket:
            return ticket, R.SUBJECT_REFERENCE, None
    # 3. The reply-address token (support+<token>@…).
    if inbound.reply_token:
        ticket = _usable(_locked(Ticket.objects.filter(reply_token=inbound.reply_token)))
        if ticket:
            return ticket, R.REPLY_TOKEN, None
    # 4. The customer's newest open ticket on any channel, inside the continuity window.
    #    A fresh email (no reply headers, no "Re:") is a new conversation by design: an
    #    email thread has its own threading, and customers write new mail for new issues.
    if not _is_fresh_email(inbound) and refused is None and not new_customer:
        # The customer's open tickets are few: read (and lock) them all through the customer
        # index and pick the newest here. With ORDER BY … LIMIT 1 the planner may walk the
        # desk-wide activity index instead, looking for this customer among every open ticket.
        cutoff = timezone.now() - inbound.inbox.continuity_window
        threads = _threads.get()
        candidates = threads.open_tickets(customer.pk, cutoff) if threads is not None else None
        if candidates is None:
            candidates = continuity_candidates([customer.pk], cutoff)
        ticket = max(
            (t for t in candidates if t.merged_into_id is None),
            key=lambda t: (t.last_message_at, t.pk),
            default=None,
        )
        if ticket:
            return _remember(ticket), R.OPEN_TICKET, None
    return None, R.NEW_TICKET, refused


def continuity_candidates(customer_ids: Iterable[int], cutoff) -> QuerySet[Ticket]:
    """These customers' open tickets active since `cutoff`, row-locked in id order. "Not
    merged" is left to the caller (a merged ticket is closed anyway): with it in the WHERE
    clause the open tickets' partial indexes match the query, and a planner without
    statistics yet (a new desk under a burst) walks one of them through every open ticket
    instead of the customers' index."""
    return (
        Ticket.objects.filter(
            customer_id__in=customer_ids, status__in=Ticket.OPEN_STATUSES, last_message_at__gte=cutoff
        )
        .order_by("pk")
        .select_for_update(of=("self",), no_key=True)
    )


def chunk_tickets(wanted: set[int], customers: set[int], cutoff) -> list[Ticket]:
    """The open tickets of `customers` active since `cutoff`, then those of `wanted` not among
    them, row-locked. (Two statements, not one with an OR: the OR lets a planner without
    statistics walk the desk-wide activity index instead of the customers'.)"""
    found = list(continuity_candidates(customers, cutoff)) if customers else []
    rest = wanted.difference(t.pk for t in found)
    if rest:
        found += Ticket.objects.filter(pk__in=rest).order_by("pk").select_for_update(of=("self",), no_key=True)
    return found


def _header_ticket(header_ids: list[str], customer: Customer, address: str) -> tuple[Ticket | None, Ticket | None]:
    """(the ticket the reply headers lead to, if the sender may join it; else the ticket
    they named and the sender may not join)."""
    threads = _threads.get()
    rows = threads.header_rows(header_ids) if threads is not None else None
    if rows is None:
        rows = [row[:6] for row in _header_query(header_ids)[:50]]
    if not rows:
        return None, None
    allowed: set[int] = set()
    for _id, ticket_id, owner, org, to_address, metadata in rows:
        recipients = {to_address or "", *((metadata or {}).get("to") or [])}
        if owner == customer.pk or (org is not None and org == customer.organization_id) or address in recipients:
            allowed.add(ticket_id)
    permitted = [r for r in rows if r[1] in allowed]
    if permitted:
        return _usable(_locked_pk(max(permitted)[1])), None
    named = _live_ticket(Ticket.objects.filter(pk=max(rows)[1]).first())
    return None, named


def _header_query(header_ids):
    """(id, ticket, its customer, their organisation, identity address, metadata, Message-ID)
    of the messages with these Message-IDs. (No ORDER BY … LIMIT: see `_thread`.)"""
    return (
        Message.objects.filter(email_message_id__in=header_ids)
        .order_by()
        .values_list(
            "id",
            "ticket_id",
            "ticket__customer_id",
            "ticket__customer__organization_id",
            "identity__address",
            "metadata",
            "email_message_id",
        )
    )


def _newest_ticket(messages) -> Ticket | None:
    return _newest_of(list(messages.order_by().values_list("id", "ticket_id")[:50]))


def _newest_of(rows: list[tuple[int, int]]) -> Ticket | None:
    """The ticket of the newest of these (message id, ticket id) rows, locked and usable."""
    if not rows:
        return None
    return _usable(_locked_pk(max(rows)[1]))


class _Threads:
    """What threading asks of the database for a chunk of messages (a chunk of mail, a
    drainer's batch of webhooks), asked once for all of it as the chunk begins (in its
    transaction, its senders' customers locked): the messages its reply headers name, the
    replies to its Message-IDs that arrived first (from customers known before the chunk),
    and — locked — the senders' recently active open tickets (the continuity rule) and the
    tickets of those messages that belong to the chunk's senders (`chunk_tickets`).
    Each message then looks in dicts; a message it stores is added to them, so a reply
    whose parent is earlier in the same chunk, or a parent whose reply is, or a second SMS
    of a new number, finds it as it would in the database. Decisions are `_thread`'s,
    unchanged."""

    def __init__(self, inbounds: list[InboundMessage]) -> None:
        self.by_mid: dict[str, list[tuple]] = {}
        self.replies: list[tuple[int, int, int, str, str]] = []  # (id, ticket, its customer, In-Reply-To, References)
        self.opaque: set[str] = set()  # Message-IDs stored here whose header rows we cannot build: asked as alone
        self.tickets: dict[int, Ticket] = {}
        header_ids = {i for m in inbounds for i in (m.in_reply_to, *m.references) if i}
        if header_ids:
            for row in _header_query(list(header_ids)):
                self.by_mid.setdefault(row[6], []).append(row[:6])
        customers = senders_locked()
        mids = sorted({m.email_message_id for m in inbounds if m.email_message_id})
        if customers and mids:
            found = Q(in_reply_to__in=mids)
            for mid in mids:
                found |= Q(references__contains=mid)
            self.replies = list(
                Message.objects.filter(found, ticket__customer_id__in=customers)
                .order_by()
                .values_list("id", "ticket_id", "ticket__customer_id", "in_reply_to", "references")
            )
        wanted = {row[1] for rows in self.by_mid.values() for row in rows if row[2] in customers}
        wanted |= {row[1] for row in self.replies}
        # The senders' open tickets, for the continuity rule (`open_tickets`), locked with
        # the tickets above.
        self.open: dict[int, list[Ticket]] = {}
        self.cutoff = None
        if customers and not all(_is_fresh_email(m) for m in inbounds):
            self.cutoff = timezone.now() - max(m.inbox.continuity_window for m in inbounds)
            self.open = {pk: [] for pk in customers}
        if wanted or self.open:
            self.tickets = {t.pk: t for t in chunk_tickets(wanted, set(self.open), self.cutoff)}
            for ticket in self.tickets.values():
                self._add_open(ticket)

    def _add_open(self, ticket: Ticket) -> None:
        tickets = self.open.get(ticket.customer_id)
        if tickets is not None and ticket not in tickets and ticket.status in Ticket.OPEN_STATUSES:
            tickets.append(ticket)

    def open_tickets(self, customer_id: int, cutoff) -> list[Ticket] | None:
        """The customer's open tickets active since `cutoff` (None: not read ahead, ask the
        database) — the instances this chunk holds, so what its earlier messages did to
        them (a new ticket, a reopen, the activity times) counts."""
        tickets = self.open.get(customer_id)
        if tickets is None or self.cutoff is None or cutoff < self.cutoff:
            return None
        return [t for t in tickets if t.status in Ticket.OPEN_STATUSES and t.last_message_at >= cutoff]

    def header_rows(self, header_ids: list[str]) -> list[tuple] | None:
        """The rows `_header_query` gives for these ids (None: ask the database)."""
        if self.opaque.intersection(header_ids):
            return None
        return [row for mid in dict.fromkeys(header_ids) for row in self.by_mid.get(mid, ())]

    def replies_to(self, mid: str, customer_id: int) -> list[tuple[int, int]]:
        """(id, ticket) of messages in `customer_id`'s tickets that reply to or refer to `mid`."""
        return [
            (pk, ticket_id)
            for pk, ticket_id, owner, in_reply_to, references in self.replies
            if owner == customer_id and (in_reply_to == mid or mid in references)
        ]

    def stored(self, message: Message, ticket: Ticket, customer: Customer, address: str) -> None:
        self.tickets[ticket.pk] = ticket
        self._add_open(ticket)
        if message.email_message_id:
            if ticket.customer_id == customer.pk:
                row = (message.pk, ticket.pk, customer.pk, customer.organization_id, address, message.metadata)
                self.by_mid.setdefault(message.email_message_id, []).append(row)
            else:  # another customer's ticket (their organisation's, or a recipient's): not worth a row here
                self.opaque.add(message.email_message_id)
        if message.in_reply_to or message.references:
            self.replies.append((message.pk, ticket.pk, ticket.customer_id, message.in_reply_to, message.references))


_threads: contextvars.ContextVar[_Threads | None] = contextvars.ContextVar("channels_threads", default=None)


@contextlib.contextmanager
def threads_batched(inbounds: list[InboundMessage]) -> Iterator[None]:
    """Inside ONE transaction that is all or nothing, after `senders_batch`: threading for
    these mails asks the database once for all of them (`_Threads`)."""
    token = _threads.set(_Threads(inbounds))
    try:
        yield
    finally:
        _threads.reset(token)


@contextlib.contextmanager
def ingest_batched(inbounds: list[InboundMessage], *, create_senders: bool = False) -> Iterator[None]:
    """Inside ONE transaction that is all or nothing (a drainer's batch, a chunk of mail),
    around `ingest(…, in_batch=True)` of these messages: what they ask is asked once for all
    of them — their senders and customers (`senders_batch`), threading (`threads_batched`) —
    and what they write beside the messages is written together as the block ends: the
    deliveries' processed marks, the timeline events, the tickets' activity.
    `create_senders` (a drainer's batch of webhooks): first-time senders get their customers
    now, together, and the messages and the first-time senders' tickets are written in one
    INSERT each as the block ends (`rows_batched`; not for mail, whose threading may look a
    message of the chunk up in the database)."""
    senders = [(i.sender.kind, i.sender.address, i.inbox.default_region, i.sender.display_name) for i in inbounds]
    with senders_batch(senders, create=create_senders):
        rows = (
            rows_batched(tickets=senders_new(), messages=len(inbounds)) if create_senders else contextlib.nullcontext()
        )
        with raw_marks_batched(), threads_batched(inbounds), events.batched(), activity_batched(), rows:
            yield


def _is_fresh_email(inbound: InboundMessage) -> bool:
    if inbound.channel != Channel.EMAIL:
        return False
    return not (inbound.in_reply_to or inbound.references or _REPLY_SUBJECT.match(inbound.subject or ""))


def _subject_from_text(text: str) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first[:80] + ("…" if len(first) > 80 else "")


# --- delivery statuses -------------------------------------------------------------


def status_apply(*, inbox: Inbox, update: StatusUpdate) -> bool:
    """Apply a provider's delivery status. A status for a message we do not know yet (the
    callback beat the send call's answer) is parked as an outbox row and applied when the
    message appears (or given up after CXDESK_STATUS_PARK_SECONDS). Statuses only move
    forward. Returns whether it was applied now."""
    message = Message.objects.filter(inbox=inbox, provider_message_id=update.provider_message_id).first()
    if message is not None:
        message_set_status(message=message, status=update.status, error=update.error, at=update.at)
        return True
    log.info("status %s for unknown message %s parked", update.status, update.provider_message_id)
    enqueue(
        "apply_status",
        object_id=inbox.pk,
        ref=update.provider_message_id,
        payload={"status": update.status, "error": update.error, "at": update.at.isoformat() if update.at else None},
        delay=settings.CXDESK_STATUS_PARK_RETRY_SECONDS,
    )
    return False


def parked_status_handler(task) -> str:
    """Outbox handler for `apply_status` rows: apply, wait more, or give up."""
    from django.utils.dateparse import parse_datetime

    message = Message.objects.filter(inbox_id=task.object_id, provider_message_id=task.ref).first()
    if message is None:
        age = (timezone.now() - task.created_at).total_seconds()
        if age > settings.CXDESK_STATUS_PARK_SECONDS:
            log.warning("status %s for unknown message %s dropped after %ds", task.payload.get("status"), task.ref, age)
            return "expired"
        raise Retry("message not known yet", countdown=settings.CXDESK_STATUS_PARK_RETRY_SECONDS)
    at = parse_datetime(task.payload["at"]) if task.payload.get("at") else None
    changed = message_set_status(
        message=message, status=task.payload["status"], error=task.payload.get("error", ""), at=at
    )
    return "applied" if changed else "unchanged"


# --- raw inbound and dead letters -----------------------------------------------


def raw_inbound_store(
    *, raw: bytes, source: str, inbox: Inbox | None, content_type: str = "message/rfc822"
) -> RawInbound:
    """Keep the delivery as received before anything parses it."""
    record = _raw_record(raw=raw, source=source, inbox=inbox, content_type=content_type)
    record.save(force_insert=True)
    return record


def _raw_record(*, raw: bytes, source: str, inbox: Inbox | None, content_type: str = "message/rfc822") -> RawInbound:
    import hashlib

    return RawInbound(
        inbox=inbox,
        source=source,
        content_type=content_type,
        payload=zlib.compress(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
    )


_raw_marks: contextvars.ContextVar[list[tuple[int, int | None, object]] | None] = contextvars.ContextVar(
    "raw_marks", default=None
)


def raw_inbound_processed(*, raw_id: int, message: Message | None, at=None, only_open: bool = False) -> None:
    """Mark a stored delivery processed, pointing at its message: now, or inside
    `raw_marks_batched` with the rest of the batch (one statement as it ends).
    `only_open`: leave it alone unless it is pending or failed."""
    at = at or timezone.now()
    marks = _raw_marks.get()
    if marks is not None:
        marks.append((raw_id, message.pk if message is not None else None, at))
        return
    rows = RawInbound.objects.filter(pk=raw_id)
    if only_open:
        rows = rows.filter(status__in=(RawInbound.Status.PENDING, RawInbound.Status.FAILED))
    rows.update(status=RawInbound.Status.PROCESSED, message=message, processed_at=at, error="")


@contextlib.contextmanager
def raw_marks_batched() -> Iterator[None]:
    """Inside the caller's transaction (a drainer's batch, whose rows it holds locked): the
    deliveries marked processed in the block are written as it ends, in one UPDATE."""
    marks: list[tuple[int, int | None, object]] = []  # (delivery, its message, when)
    token = _raw_marks.set(marks)
    try:
        yield
    finally:
        _raw_marks.reset(token)
    if marks:
        # One UPDATE joined to the (row, message) pairs: cheaper than bulk_update's CASE
        # per column. On PostgreSQL the pairs go as two arrays, one statement text for any
        # batch (converted and planned once, see `tickets.deferred.insert`); elsewhere
        # (SQLite 3.33+) as a VALUES list.
        table = RawInbound._meta.db_table
        if connection.vendor == "postgresql":
            pairs = "SELECT * FROM unnest(%s::bigint[], %s::bigint[])"
            params = [[pk for pk, _message, _at in marks], [message for _pk, message, _at in marks]]
        else:
            pairs = "VALUES " + ", ".join(["(CAST(%s AS BIGINT), CAST(%s AS BIGINT))"] * len(marks))
            params = [value for pk, message, _at in marks for value in (pk, message)]
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH marks (id, message_id) AS ({pairs}) "  # noqa: S608 - table from the model, values as parameters
                f"UPDATE {table} SET status = %s, processed_at = %s, error = '', message_id = marks.message_id "
                f"FROM marks WHERE {table}.id = marks.id",
                [*params, RawInbound.Status.PROCESSED, connection.ops.adapt_datetimefield_value(marks[0][2])],
            )


def raw_inbound_failed(*, raw: RawInbound, error: str) -> None:
    error = error.replace("\x00", "\\0")  # the error may quote the poison itself (NUL)
    RawInbound.objects.filter(pk=raw.pk).update(
        status=RawInbound.Status.FAILED, error=error[:4000], attempts=raw.attempts + 1
    )
    log.warning("inbound %s #%s failed: %s", raw.source, raw.pk, error)


def ingest_raw_email(*, raw: bytes, inbox: Inbox, source: str) -> IngestResult:
    """Store the raw mail, parse it, ingest it. A failure leaves a dead letter with the
    error (visible in the admin and the desk, retryable) and raises ApplicationError."""
    record = raw_inbound_store(raw=raw, source=source, inbox=inbox)
    return raw_inbound_process(record=record)


def ingest_raw_emails(*, raws: list[bytes], inbox: Inbox, source: str) -> list[IngestResult | ApplicationError]:
    """`ingest_raw_email` for many mails (an `ingest_mail` chunk), each one's result or its
    error, in order. The raw mails are stored first, in one INSERT (durable whatever comes
    next); then the plain ones — not a delivery report, not our own mail, parsed — are
    ingested in ONE transaction without a savepoint each, their senders read once, their
    outbox rows and processed marks written together, and their new tickets routed inside
    that transaction before it commits (as the webhook drainer's batch does). If anything goes wrong in it,
    nothing of it stays and every mail is taken alone, as `ingest_raw_email` does; the
    others (reports, loops, mail that does not parse) are always taken alone, after."""
    from .adapters.email import parse_raw
    from .email_inbound import delivery_report

    records = RawInbound.objects.bulk_create([_raw_record(raw=raw, source=source, inbox=inbox) for raw in raws])
    plain: list[tuple[int, InboundMessage]] = []
    for k, (record, raw) in enumerate(zip(records, raws, strict=True)):
        if delivery_report(raw) is not None:
            continue
        try:
            inbound = parse_raw(raw, inbox)
        except (ApplicationError, ValueError, LookupError):
            continue  # a dead letter, with its reason, when taken alone
        if not _is_own_address(inbox, inbound.sender.address):
            inbound.raw_inbound_id = record.pk
            plain.append((k, inbound))
    results: list[IngestResult | ApplicationError | None] = [None] * len(records)
    if plain:
        try:
            with outbox_batch(before_commit=("route",)), ingest_batched([i for _k, i in plain]):
                done = [(k, ingest(inbound, in_batch=True)) for k, inbound in plain]
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - a repeat, a race, a bug: each mail alone knows
            log.info("a chunk of %s mails is taken one at a time (%s: %s)", len(plain), type(exc).__name__, exc)
        else:
            for k, result in done:
                results[k] = result
    for k, record in enumerate(records):
        if results[k] is None:
            try:
                results[k] = raw_inbound_process(record=record)
            except ApplicationError as exc:
                results[k] = exc
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:  # noqa: BLE001 - kept as a dead letter by raw_inbound_process; go on
                results[k] = ApplicationError(f"{type(exc).__name__}: {exc}", code="unprocessable_email")
    return results  # type: ignore[return-value]


def inbox_for_recipients(addresses: list[str]) -> Inbox | None:
    """The email inbox whose address (plus-addressing aside) is among the recipients."""
    wanted = set()
    for addr in addresses:
        local, _, domain = addr.lower().partition("@")
        wanted.add(f"{local.split('+', 1)[0]}@{domain}")
    for inbox in Inbox.objects.filter(kind="email", is_active=True).order_by("pk"):
        if (inbox.config.get("address") or "").lower() in wanted:
            return inbox
    return None


def _recipients(raw: bytes) -> list[str]:
    import email
    import email.policy

    from .mail_decode import header_addresses

    msg = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
    found = []
    for name in ("Delivered-To", "X-Original-To", "To", "Cc"):
        for value in msg.get_all(name) or []:
            found += header_addresses(str(value))
    return found


def raw_inbound_retry(*, record: RawInbound) -> IngestResult:
    """Process a dead letter again (after a fix, a new inbox, a config change). Raises
    ApplicationError when it still cannot be taken; the record keeps the new reason."""
    record.refresh_from_db()
    if record.status == RawInbound.Status.PROCESSED:
        raise ApplicationError("already processed", code="already_processed", status=409)
    if record.source == "webhook":
        from .webhook_queue import webhook_process

        webhook_process(record=record)
        record.refresh_from_db()
        if record.status != RawInbound.Status.PROCESSED:
            raise ApplicationError(record.error or "still not processed", code="still_failing")
        if not record.message_id:
            raise ApplicationError("processed: it held delivery statuses only", code="no_message")
        return IngestResult(record.message.ticket, record.message, False, False)
    if record.content_type != "message/rfc822":
        raise ApplicationError("only mail and provider webhooks can be processed again here", code="not_mail")
    if record.inbox is None:
        record.inbox = inbox_for_recipients(_recipients(record.raw))
        if record.inbox is None:
            raw_inbound_failed(raw=record, error="no email inbox for the recipients of this mail")
            raise ApplicationError("no email inbox for the recipients of this mail", code="no_inbox")
        RawInbound.objects.filter(pk=record.pk).update(inbox=record.inbox)
    return raw_inbound_process(record=record)


class _OwnMail(Exception):
    pass


def _is_own_address(inbox: Inbox, address: str) -> bool:
    own = (inbox.config.get("address") or "").lower()
    if not own or not address:
        return False
    local, _, domain = address.lower().partition("@")
    return f"{local.split('+', 1)[0]}@{domain}" == own


def raw_inbound_process(*, record: RawInbound) -> IngestResult:
    """(Re)process a stored raw email: the dead-letter retry action calls this too."""
    from .adapters.email import parse_raw
    from .email_inbound import bounce_apply, delivery_report

    unmatched = None
    try:
        with transaction.atomic():  # a savepoint: a database error here leaves the connection usable
            report = delivery_report(record.raw)
            if report is not None:
                # A delivery report (bounce) never opens a ticket: it fails the original reply.
                original = bounce_apply(report=report)
                note = "bounce" if report.failed else "delivery report (not a failure)"
                RawInbound.objects.filter(pk=record.pk).update(
                    status=RawInbound.Status.IGNORED,
                    message=original,
                    processed_at=timezone.now(),
                    error=f"{note}: {report.reason}"[:4000],
                )
                if original is not None:
                    return IngestResult(original.ticket, original, False, False, bounce=True)
                unmatched = report
            else:
                inbound = parse_raw(record.raw, record.inbox)
                inbound.raw_inbound_id = record.pk
                if record.inbox is not None and _is_own_address(record.inbox, inbound.sender.address):
                    raise _OwnMail(inbound.sender.address)
                result = ingest(inbound)
    except _OwnMail as exc:
        # Our own mail came back (a forward rule, a misconfigured relay): a ticket would
        # acknowledge itself in a loop. Kept, ignored, with the reason (outside the savepoint).
        RawInbound.objects.filter(pk=record.pk).update(
            status=RawInbound.Status.IGNORED,
            processed_at=timezone.now(),
            error=f"mail from the inbox's own address {exc} (loop): no ticket",
        )
        raise ApplicationError(
            f"mail from the inbox's own address {exc}: not taken (loop)", code="own_address", status=422
        ) from None
    except (ApplicationError, ValueError, LookupError) as exc:
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        raise ApplicationError(str(exc), code="unprocessable_email", fields={"raw_inbound": [str(record.pk)]}) from exc
    except Exception as exc:
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        raise
    if unmatched is not None:
        # Kept (ignored, not a dead letter: backscatter for mail we never sent is common).
        raise ApplicationError(
            f"delivery report for a message we did not send: {', '.join(unmatched.original_ids) or '(no id)'}",
            code="bounce_unmatched",
            status=422,
        )
    if result.duplicate:
        RawInbound.objects.filter(pk=record.pk).update(
            status=RawInbound.Status.IGNORED, message=result.message, processed_at=timezone.now(), error="duplicate"
        )
    return result


# --- inbox configuration ------------------------------------------------------

_INBOX_FIELDS = {"transport", "continuity_window", "default_team", "is_active"}


@transaction.atomic
def inbox_upsert(*, kind: str, name: str, values: dict[str, str]) -> Inbox:
    """Create or update the inbox `name`. Each value goes to the adapter's public
    config or its secrets by the adapter's schema; unknown keys are an error."""
    from datetime import timedelta

    from tickets.models import Team

    from .adapters import get_adapter

    try:
        adapter = get_adapter(kind)
    except LookupError as exc:
        raise ApplicationError(str(exc), code="unknown_kind") from None
    inbox = Inbox.objects.select_for_update().filter(name=name).first() or Inbox(kind=kind, name=name)
    if inbox.pk and inbox.kind != kind:
        raise ApplicationError(
            f"inbox {name!r} exists with kind {inbox.kind}, not {kind}", code="kind_mismatch", status=409
        )
    config, secrets = dict(inbox.config), dict(inbox.secrets)
    for key, value in values.items():
        if key == "transport":
            if value not in Inbox.Transport.values:
                raise ApplicationError(f"transport must be one of {Inbox.Transport.values}", code="invalid_setting")
            inbox.transport = value
        elif key == "continuity_window":
            try:
                inbox.continuity_window = timedelta(hours=float(value))
            except ValueError:
                raise ApplicationError("continuity_window is a number of hours", code="invalid_setting") from None
        elif key == "default_team":
            inbox.default_team = Team.objects.filter(name=value).first()
            if inbox.default_team is None:
                raise ApplicationError(f"no team named {value!r}", code="invalid_setting")
        elif key == "is_active":
            inbox.is_active = value.lower() in ("1", "true", "yes", "on")
        elif key in adapter.secret_schema:
            secrets[key] = value
        elif key in adapter.config_schema:
            config[key] = value
        else:
            known = sorted({*adapter.config_schema, *adapter.secret_schema, *_INBOX_FIELDS})
            raise ApplicationError(
                f"unknown setting {key!r} for {kind}; known: {', '.join(known)}", code="invalid_setting"
            )
    problems = adapter.validate_settings(config, secrets)
    if problems:
        raise ApplicationError("; ".join(problems), code="invalid_setting")
    inbox.config, inbox.secrets = config, secrets
    inbox.save()
    return inbox
