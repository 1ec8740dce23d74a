"""Write paths for tickets: status, reply, note, assignment, merge and split."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer, Identity
from cxdesk.errors import ApplicationError
from cxdesk.realtime import broadcast_on_commit
from outbox.services import enqueue

from . import deferred, events, notifications, signals
from .attachments import AttachmentIn, attachments_store
from .models import Channel, Inbox, Message, Tag, Team, Ticket, TicketMove

S = Ticket.Status
log = logging.getLogger(__name__)

# The one transition table. Anything not listed is refused.
TRANSITIONS: dict[str, set[str]] = {
    S.NEW: {S.OPEN, S.PENDING, S.SOLVED, S.CLOSED},
    S.OPEN: {S.PENDING, S.SOLVED, S.CLOSED},
    S.PENDING: {S.OPEN, S.SOLVED, S.CLOSED},
    S.SOLVED: {S.OPEN, S.CLOSED},
    S.CLOSED: set(),
}


def broadcast_ticket(ticket: Ticket, event: str = "ticket.updated") -> None:
    payload = {"ticket_id": ticket.pk}
    broadcast_on_commit(f"ticket.{ticket.pk}", event, **payload)
    broadcast_on_commit("inbox", event, **payload)


def ticket_set_status(*, ticket: Ticket, status: str, actor=None, reason: str = "") -> Ticket:
    """Move `ticket` to `status` through the transition table, with its timestamps and event."""
    old = ticket.status
    if status == old:
        return ticket
    if status not in TRANSITIONS.get(old, set()):
        raise ApplicationError(
            _("A %(old)s ticket cannot become %(new)s.") % {"old": old, "new": status},
            code="invalid_transition",
            status=409,
        )
    now = timezone.now()
    ticket.status = status
    fields = ["status", "updated_at"]
    if status == S.SOLVED:
        ticket.solved_at = now
        fields.append("solved_at")
    elif status == S.CLOSED:
        ticket.closed_at = now
        fields.append("closed_at")
    if old == S.SOLVED and status == S.OPEN:
        ticket.reopen_count = F("reopen_count") + 1
        fields.append("reopen_count")
    ticket.save(update_fields=fields)
    if "reopen_count" in fields:
        # Counted in the database (F): the instance forgets its value and reads it back
        # only if something asks for it (a deferred field), not in a SELECT every reopen.
        del ticket.reopen_count
    if reason == "customer_reply":
        pass  # the caller records the `reopened` event with the message id
    else:
        events.status_changed(ticket, actor=actor, old=old, new=status)
    signals.ticket_updated.send(sender=Ticket, ticket=ticket, actor=actor, changes={"status": [old, status]})
    broadcast_ticket(ticket)
    return ticket


@transaction.atomic
def ticket_update(
    *,
    ticket: Ticket,
    actor=None,
    status: str | None = None,
    priority: str | None = None,
    assignee=...,
    team=...,
    tags: Iterable[str] | None = None,
) -> Ticket:
    """Change any of status / priority / assignee / team / tags, one event per change."""
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket.pk)
    if status is not None:
        ticket_set_status(ticket=ticket, status=status, actor=actor)
    if priority is not None and priority != ticket.priority:
        if priority not in Ticket.Priority.values:
            raise ApplicationError(
                f"unknown priority {priority!r}", code="invalid_priority", fields={"priority": ["unknown"]}
            )
        old = ticket.priority
        ticket.priority = priority
        ticket.save(update_fields=["priority", "updated_at"])
        events.priority_changed(ticket, actor=actor, old=old, new=priority)
        signals.ticket_updated.send(sender=Ticket, ticket=ticket, actor=actor, changes={"priority": [old, priority]})
    if assignee is not ... or team is not ...:
        ticket_assign(
            ticket=ticket,
            actor=actor,
            assignee=ticket.assignee if assignee is ... else assignee,
            team=ticket.team if team is ... else team,
        )
    if tags is not None:
        ticket_set_tags(ticket=ticket, tags=tags, actor=actor)
    broadcast_ticket(ticket)
    return ticket


def ticket_assign(*, ticket: Ticket, assignee=None, team: Team | None = None, actor=None) -> Ticket:
    old_a, old_t = ticket.assignee_id, ticket.team_id
    new_a = assignee.pk if assignee else None
    new_t = team.pk if team else None
    if (old_a, old_t) == (new_a, new_t):
        return ticket
    if assignee is not None and not assignee.is_staff:
        raise ApplicationError(_("only staff can be assigned tickets"), code="invalid_assignee")
    ticket.assignee, ticket.team = assignee, team
    ticket.save(update_fields=["assignee", "team", "updated_at"])
    events.assignment_changed(
        ticket, actor=actor, old_assignee=old_a, new_assignee=new_a, old_team=old_t, new_team=new_t
    )
    signals.ticket_updated.send(
        sender=Ticket, ticket=ticket, actor=actor, changes={"assignee": [old_a, new_a], "team": [old_t, new_t]}
    )
    if new_a and new_a != old_a:
        notifications.notify(
            user_id=new_a, kind=notifications.Kind.ASSIGNED, ticket=ticket, actor=actor, text=ticket.subject
        )
    broadcast_ticket(ticket)
    return ticket


def ticket_set_tags(*, ticket: Ticket, tags: Iterable[str], actor=None) -> Ticket:
    wanted = {t.strip().lower() for t in tags if t and t.strip()}
    current = set(ticket.tags.values_list("name", flat=True))
    added, removed = sorted(wanted - current), sorted(current - wanted)
    if not added and not removed:
        return ticket
    for name in added:
        tag, _ = Tag.objects.get_or_create(name=name[:64])
        ticket.tags.add(tag)
    if removed:
        ticket.tags.remove(*Tag.objects.filter(name__in=removed))
    Ticket.objects.filter(pk=ticket.pk).update(updated_at=timezone.now())
    events.tags_changed(ticket, actor=actor, added=added, removed=removed)
    signals.ticket_updated.send(
        sender=Ticket, ticket=ticket, actor=actor, changes={"tags": [sorted(current), sorted(wanted)]}
    )
    return ticket


# --- outbound ----------------------------------------------------------------

CHANNEL_IDENTITY_KIND = {
    Channel.EMAIL: "email",
    Channel.SMS: "phone",
    Channel.WHATSAPP: "phone",
    Channel.MESSENGER: "messenger",
    Channel.TELEGRAM: "telegram",
    Channel.CHAT: "webchat",
}


# A conversation on a channel that carries no written reply is answered in writing here
# (a phone call: by SMS to the same number). Messages on such channels (calls) never decide
# the default reply channel while a written one exists.
WRITTEN_REPLY_CHANNEL = {Channel.VOICE: Channel.SMS}


@dataclass
class ReplyTarget:
    channel: str
    inbox: Inbox
    identity: Identity


def reply_target(*, ticket: Ticket, channel: str | None = None, identity: Identity | None = None) -> ReplyTarget:
    """Where a reply goes: the chosen channel (default: the one the customer last wrote
    on; after a call-only conversation, SMS), to the customer's identity of that kind,
    through an inbox that carries it."""
    last_in = (
        ticket.messages.filter(direction=Message.Direction.INBOUND, channel__in=list(CHANNEL_IDENTITY_KIND))
        .order_by("-created_at", "-id")
        .first()
    )
    if channel is None:
        channel = last_in.channel if last_in else ticket.channel
        channel = WRITTEN_REPLY_CHANNEL.get(channel, channel)
    kind = CHANNEL_IDENTITY_KIND.get(channel)
    if kind is None:
        raise ApplicationError(
            _("A reply cannot be sent on the %(channel)s channel.") % {"channel": channel}, code="channel_not_sendable"
        )
    if identity is None:
        if (
            last_in
            and last_in.identity
            and last_in.channel == channel
            and last_in.identity.customer_id == ticket.customer_id
        ):
            identity = last_in.identity
        else:
            identity = ticket.customer.identities.filter(kind=kind).order_by("-last_seen_at", "-id").first()
    if identity is None or identity.kind != kind or identity.customer_id != ticket.customer_id:
        raise ApplicationError(
            _("The customer has no %(kind)s identity to reach them on %(channel)s.")
            % {"kind": kind, "channel": channel},
            code="no_identity_for_channel",
        )
    inbox = None
    if last_in and last_in.channel == channel and last_in.inbox and last_in.inbox.is_active:
        inbox = last_in.inbox
    if inbox is None:
        prior = (
            ticket.messages.filter(channel=channel, inbox__is_active=True).exclude(inbox=None).order_by("-id").first()
        )
        inbox = prior.inbox if prior else None
    if inbox is None:
        for candidate in Inbox.objects.filter(is_active=True).order_by("pk"):
            try:
                if channel in candidate.adapter.channels:
                    inbox = candidate
                    break
            except LookupError:
                continue
    if inbox is None:
        raise ApplicationError(
            _("No active inbox can send on %(channel)s.") % {"channel": channel}, code="no_inbox_for_channel"
        )
    return ReplyTarget(channel=channel, inbox=inbox, identity=identity)


@transaction.atomic
def reply(
    *,
    ticket: Ticket,
    author,
    body: str,
    channel: str | None = None,
    identity: Identity | None = None,
    html: str = "",
    attachments: Iterable[AttachmentIn] = (),
    status_after: str | None = None,
    template: dict | None = None,
) -> Message:
    """An agent's reply to the customer: stored `queued` first, then sent by Celery.
    `template` is a provider message template (WhatsApp outside its 24-hour window)."""
    from cxdesk.sanitize import sanitize_html

    body = (body or "").strip()
    if not body and not attachments:
        raise ApplicationError(_("a reply needs a body"), code="empty_body", fields={"body": ["required"]})
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket.pk)
    if ticket.status == S.CLOSED:
        raise ApplicationError(_("this ticket is closed; open a new one"), code="ticket_closed", status=409)
    target = reply_target(ticket=ticket, channel=channel, identity=identity)
    if target.identity.opted_out_at and target.channel == Channel.SMS:
        raise ApplicationError(
            _("%(address)s has opted out of SMS (replied STOP); reply on another channel.")
            % {"address": target.identity.address},
            code="opted_out",
            status=409,
        )
    problem = None
    if template is None:
        problem = target.inbox.adapter.can_send(
            inbox=target.inbox, identity=target.identity, channel=target.channel, ticket=ticket
        )
    if problem:
        raise ApplicationError(problem, code="channel_window_closed", status=409)
    now = timezone.now()
    message = Message.objects.create(
        ticket=ticket,
        direction=Message.Direction.OUTBOUND,
        channel=target.channel,
        inbox=target.inbox,
        identity=target.identity,
        author=author,
        subject=ticket.subject,
        body_text=body,
        body_html=sanitize_html(html) if html else "",
        status=Message.Status.QUEUED,
        thread_reason=Message.ThreadReason.EXPLICIT,
        metadata={"template": template} if template else {},
    )
    attachments_store(message=message, attachments=attachments)
    fields = ["last_agent_message_at", "last_message_at", "updated_at"]
    ticket.last_agent_message_at = ticket.last_message_at = now
    if ticket.first_response_at is None:
        ticket.first_response_at = now
        fields.append("first_response_at")
    if ticket.assignee_id is None and author is not None and getattr(author, "is_staff", False):
        ticket_assign(ticket=ticket, assignee=author, team=ticket.team, actor=author)
    ticket.save(update_fields=fields)
    if status_after:
        ticket_set_status(ticket=ticket, status=status_after, actor=author)
    elif ticket.status == S.NEW:
        ticket_set_status(ticket=ticket, status=S.OPEN, actor=author)
    message_created(message=message, created_ticket=False)
    enqueue("send_message", object_id=message.pk)  # in this transaction; sent by the channel side
    return message


@transaction.atomic
def ticket_agent_contact(*, ticket: Ticket, agent, at=None) -> Ticket:
    """An agent spoke with the customer outside a written reply (answered their call): it is
    the first response if none came yet, an unowned ticket becomes theirs (so the next call
    rings them), and a new ticket is open. SLA and others hear it as `agent_contacted`."""
    at = at or timezone.now()
    ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
    fields = ["last_agent_message_at", "updated_at"]
    ticket.last_agent_message_at = at
    if ticket.first_response_at is None:
        ticket.first_response_at = at
        fields.append("first_response_at")
    ticket.save(update_fields=fields)
    if ticket.assignee_id is None and agent is not None and agent.is_staff:
        ticket_assign(ticket=ticket, assignee=agent, team=ticket.team, actor=agent)
    if ticket.status == S.NEW:
        ticket_set_status(ticket=ticket, status=S.OPEN, actor=agent)
    signals.agent_contacted.send(sender=Ticket, ticket=ticket, agent=agent, at=at)
    broadcast_ticket(ticket)
    return ticket


@transaction.atomic
def note_add(*, ticket: Ticket, author, body: str, attachments: Iterable[AttachmentIn] = ()) -> Message:
    """An internal note: never sent, never shown to the customer."""
    body = (body or "").strip()
    if not body:
        raise ApplicationError(_("a note needs a body"), code="empty_body", fields={"body": ["required"]})
    message = Message.objects.create(
        ticket=ticket,
        direction=Message.Direction.NOTE,
        channel=Channel.DESK,
        author=author,
        body_text=body,
        status=Message.Status.SENT,
        thread_reason=Message.ThreadReason.EXPLICIT,
    )
    attachments_store(message=message, attachments=attachments)
    Ticket.objects.filter(pk=ticket.pk).update(updated_at=timezone.now())
    message_created(message=message, created_ticket=False)
    notifications.mentions_notify(message=message)
    return message


@dataclass
class Received:
    ticket: Ticket
    message: Message
    created: bool  # a new ticket was opened for it


def message_receive(
    *,
    customer: Customer,
    channel: str,
    body_text: str,
    thread_reason: str,
    ticket: Ticket | None = None,
    new_ticket: dict | None = None,
    identity: Identity | None = None,
    author=None,
    inbox: Inbox | None = None,
    subject: str = "",
    body_html: str = "",
    attachments: Iterable[AttachmentIn] = (),
    reopen: bool = True,
    received_at=None,
    **message_fields,
) -> Received:
    """THE write of a message from a customer, whatever it came through (a channel's ingest,
    the portal, the API, the desk on the customer's behalf): into `ticket`, or a new ticket
    (`new_ticket`: subject, priority, team_id — the inbox's team by default) when there is
    none. Stores the message and its attachments (bytes now, provider URLs fetched later),
    then either announces the new ticket or continues the old one (activity, channel switch,
    reopen unless `reopen` is False — an automatic reply does not reopen a solved ticket), and
    tells live clients and subscribers once the transaction commits. Runs in the caller's transaction; the caller
    holds the customer (or ticket) lock that makes threading decisions safe."""
    now = timezone.now()
    created = ticket is None
    if created:
        fields = {
            "priority": Ticket.Priority.NORMAL,
            "team_id": inbox.default_team_id if inbox else None,
            **(new_ticket or {}),
        }
        ticket = _row_create(
            Ticket,
            now,
            customer=customer,
            inbox=inbox,
            channel=channel,
            last_customer_channel=channel,
            last_customer_message_at=now,
            last_message_at=now,
            **fields,
        )
        ticket.created_here()
    message = _row_create(
        Message,
        now,
        ticket=ticket,
        direction=Message.Direction.INBOUND,
        channel=channel,
        inbox=inbox,
        identity=identity,
        author=author,
        subject=subject[:500],
        body_text=body_text,
        body_html=body_html,
        status=Message.Status.RECEIVED,
        thread_reason=thread_reason,
        received_at=received_at or now,
        **message_fields,
    )
    pending_media = attachments_store(message=message, attachments=attachments)
    if created:
        events.created(ticket, actor=author, channel=channel)
        signals.ticket_created.send(sender=Ticket, ticket=ticket, actor=author)
    else:
        _ticket_continue(ticket=ticket, message=message, now=now, reopen=reopen)
    message_created(message=message, created_ticket=created)
    broadcast_ticket(ticket, "ticket.created" if created else "ticket.updated")
    for att in pending_media:
        enqueue("fetch_media", object_id=att.pk)  # fetched by the channel side, after commit
    return Received(ticket, message, created)


def _ticket_continue(*, ticket: Ticket, message: Message, now, reopen: bool) -> None:
    """A customer message joined an existing ticket: activity, channel switch, reopen."""
    # The caller holds the ticket's row lock (or its customer's), read with it: the column is
    # what the previous message left. Only a ticket from before the column asks the messages.
    previous = ticket.last_customer_channel or (
        Message.objects.filter(ticket=ticket, direction=Message.Direction.INBOUND)
        .exclude(pk=message.pk)
        .order_by("-created_at", "-id")
        .values_list("channel", flat=True)
        .first()
    )
    _ticket_touch(ticket=ticket, channel=message.channel, now=now)
    ticket.last_customer_message_at = ticket.last_message_at = ticket.updated_at = now
    ticket.last_customer_channel = message.channel
    if previous and previous != message.channel:
        events.channel_switched(ticket, old=previous, new=message.channel, message_id=message.pk)
    old = ticket.status
    if reopen and old in (S.SOLVED, S.PENDING):
        ticket_reopen_by_customer(ticket=ticket, old=old, message=message)


def _ticket_touch(*, ticket: Ticket, channel: str, now) -> None:
    """The ticket's activity times set to `now` and the customer's channel to `channel`:
    one UPDATE, its SQL written once per process (compiling it through the ORM for every
    message cost more Python than the statement cost the database) — or, inside
    `activity_batched()`, one UPDATE for the whole batch as it ends."""
    if _row_pending(ticket):
        return  # created in this `rows_batched()` block: its INSERT writes what the instance holds
    scope = _touch_scope.get()
    if scope is not None and connection.in_atomic_block:
        deferred.defer(scope, (ticket.pk, channel, now), _touch_unwritten)  # dropped with a savepoint that rolls back
        return
    when = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(_touch_sql(), [when, when, when, channel, ticket.pk])


@functools.cache
def _touch_sql() -> str:
    qn = connection.ops.quote_name
    sets = ", ".join(
        f"{qn(name)} = %s"
        for name in ("last_customer_message_at", "last_message_at", "updated_at", "last_customer_channel")
    )
    return f"UPDATE {qn(Ticket._meta.db_table)} SET {sets} WHERE {qn('id')} = %s"  # noqa: S608 - names from the model, values as parameters


def _touch_unwritten(touch: tuple[int, str, object]) -> None:
    """Activity its batch did not write (a bug): better late than lost."""
    ticket_id, channel, at = touch
    log.error("activity of ticket %s recorded in a batch was not written; writing it now", ticket_id)
    Ticket.objects.filter(pk=ticket_id).update(
        last_customer_message_at=at, last_message_at=at, updated_at=at, last_customer_channel=channel
    )


_touch_scope: contextvars.ContextVar[object | None] = contextvars.ContextVar("tickets_touch_batch", default=None)


@contextlib.contextmanager
def activity_batched() -> Iterator[None]:
    """Inside ONE transaction that holds the tickets' row locks (a drainer's batch, a chunk
    of mail): the activity times and last channel that the block's messages give their
    tickets are written as it ends, one UPDATE for all of them (the newest per ticket),
    instead of one per message. The ticket instances are up to date meanwhile. If the block
    raises, nothing is written."""
    scope = object()
    token = _touch_scope.set(scope)
    try:
        yield
    finally:
        _touch_scope.reset(token)
    newest: dict[int, tuple[str, object]] = {}
    for ticket_id, channel, at in deferred.standing(scope):
        if ticket_id not in newest or at >= newest[ticket_id][1]:
            newest[ticket_id] = (channel, at)
    if not newest:
        return
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":  # one UPDATE each (the embedded SQLite desk)
            cursor.executemany(_touch_sql(), [[adapt(at)] * 3 + [channel, pk] for pk, (channel, at) in newest.items()])
            return
        # One UPDATE joined to the (ticket, time, channel) rows: bulk_update's CASE per
        # column per row cost more than the statements it replaced.
        qn = connection.ops.quote_name
        table = qn(Ticket._meta.db_table)
        times = ("last_customer_message_at", "last_message_at", "updated_at")
        sets = ", ".join(
            [*(f"{qn(name)} = touched.at" for name in times), f"{qn('last_customer_channel')} = touched.channel"]
        )
        rows = ", ".join(["(%s::bigint, %s::timestamptz, %s::varchar)"] * len(newest))
        cursor.execute(
            f"UPDATE {table} SET {sets} FROM (VALUES {rows}) AS touched (id, at, channel) "  # noqa: S608 - names from the model, values as parameters
            f"WHERE {table}.{qn('id')} = touched.id",
            [value for pk, (channel, at) in newest.items() for value in (pk, adapt(at), channel)],
        )


class _Rows:
    """A `rows_batched()` block: the ids drawn ahead, the rows created with them."""

    def __init__(self, ids: dict[type, list[int]]) -> None:
        self.ids = ids
        self.pending: set[tuple[type, int]] = set()


def _row_unwritten(row) -> None:
    """A row its batch did not write (a bug). Not written late: what points at it fails the
    commit, so nothing is lost quietly."""
    log.error("%s #%s created in a batch was not written", type(row).__name__, row.pk)


_rows: contextvars.ContextVar[_Rows | None] = contextvars.ContextVar("tickets_rows_batch", default=None)


@contextlib.contextmanager
def rows_batched(*, tickets: int, messages: int) -> Iterator[None]:
    """Inside ONE transaction that is all or nothing (a drainer's batch) on PostgreSQL: up
    to `tickets` new tickets and `messages` messages that `message_receive` creates in the
    block get their ids drawn ahead (one statement) and are INSERTed together as the block
    ends (one statement each kind), instead of one INSERT each. What points at them (events,
    SLA clocks, attachments, processed marks) may be written first: those foreign keys are
    checked at commit. Past the ids drawn, or elsewhere, a row is written at once. Inside
    the block nothing may read them back from the database; the instances are the truth
    (their activity too: `_ticket_touch` leaves a pending ticket alone — so a message
    continuing such a ticket inside a savepoint that rolls back would leave its time on the
    instance; a drainer's batch takes no savepoints)."""
    if connection.vendor != "postgresql" or not (tickets or messages):
        yield
        return
    qn = connection.ops.quote_name
    wanted = [(model, count) for model, count in ((Ticket, tickets), (Message, messages)) if count]
    union = " UNION ALL ".join(
        "SELECT %s, nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)" for _ in wanted
    )
    params = [v for model, count in wanted for v in (model.__name__, qn(model._meta.db_table), count)]
    ids: dict[type, list[int]] = {model: [] for model, _count in wanted}
    by_name = {model.__name__: model for model, _count in wanted}
    with connection.cursor() as cursor:
        cursor.execute(union, params)
        for name, pk in cursor.fetchall():
            ids[by_name[name]].append(pk)
    rows = _Rows(ids)
    token = _rows.set(rows)
    try:
        yield
    finally:
        _rows.reset(token)
    standing = deferred.standing(rows)
    for model in (Ticket, Message):  # the tickets first: nothing requires it, but it reads well
        of_model = [row for row in standing if type(row) is model]
        if of_model:
            _rows_insert(model, of_model)


def _row_create(model: type, now, **fields):
    """`model.objects.create(**fields)`, or inside `rows_batched()` the instance with an id
    drawn ahead and its times set to `now`, written as the block ends."""
    rows = _rows.get()
    ids = rows.ids.get(model) if rows is not None else None
    if not ids or not connection.in_atomic_block:
        return model.objects.create(**fields)
    row = model(pk=ids.pop(0), created_at=now, updated_at=now, **fields)
    deferred.defer(rows, row, _row_unwritten)  # dropped with a savepoint that rolls back
    rows.pending.add((model, row.pk))
    return row


def _row_pending(row) -> bool:
    rows = _rows.get()
    return rows is not None and (type(row), row.pk) in rows.pending


def _rows_insert(model: type, rows: list) -> None:
    """One INSERT of these instances as they are (their ids and times included: what was
    announced of them, a webhook's created_at say, is what is stored)."""
    deferred.insert(model, model._meta.concrete_fields, rows)
    for obj in rows:
        obj._state.adding, obj._state.db = False, connection.alias


def message_created(*, message: Message, created_ticket: bool) -> None:
    """Announce a stored message: live clients and subscribers, after commit."""
    ticket_id = message.ticket_id
    author = (message.author.get_full_name() or message.author.username) if message.author_id else ""
    broadcast_on_commit(
        f"ticket.{ticket_id}",
        "message.created",
        ticket_id=ticket_id,
        message_id=message.pk,
        note=message.is_note,
        author=author,
        channel=message.channel,
        inbound=message.direction == Message.Direction.INBOUND,
    )
    broadcast_on_commit("inbox", "ticket.activity", ticket_id=ticket_id, message_id=message.pk, created=created_ticket)
    signals.message_created.send(sender=Message, message=message, created_ticket=created_ticket)


@transaction.atomic
def message_set_status(*, message: Message, status: str, error: str = "", at=None) -> bool:
    """Record a delivery status. Statuses only move forward (a late `sent` never undoes
    `delivered`); `failed` wins over queued/sending/sent. Returns whether it changed."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    old = message.status
    rank = Message.STATUS_RANK
    if status == old or status not in rank:
        return False
    if status != Message.Status.FAILED and rank[status] < rank.get(old, 0):
        return False
    if status == Message.Status.FAILED and old in (Message.Status.DELIVERED, Message.Status.READ):
        return False
    at = at or timezone.now()
    message.status = status
    fields = ["status", "updated_at"]
    if status == Message.Status.FAILED:
        message.error = error[:2000]
        fields.append("error")
    if status in (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.READ) and not message.sent_at:
        message.sent_at = at
        fields.append("sent_at")
    if status in (Message.Status.DELIVERED, Message.Status.READ) and not message.delivered_at:
        message.delivered_at = at
        fields.append("delivered_at")
    message.save(update_fields=fields)
    if status == Message.Status.FAILED:
        events.delivery_failed(message.ticket, message_id=message.pk, error=error[:500])
    broadcast_on_commit(
        f"ticket.{message.ticket_id}",
        "message.status",
        ticket_id=message.ticket_id,
        message_id=message.pk,
        status=status,
    )
    signals.message_status_changed.send(sender=Message, message=message, old=old)
    return True


# --- creation from the API / portal ----------------------------------------------


@transaction.atomic(savepoint=False)  # inside a caller's transaction (the API's) its error rolls that back whole
def ticket_open(
    *,
    customer: Customer,
    subject: str,
    body: str,
    channel: str = Channel.API,
    author=None,
    identity: Identity | None = None,
    priority: str = Ticket.Priority.NORMAL,
    attachments: Iterable[AttachmentIn] = (),
) -> Ticket:
    """A ticket opened on the customer's behalf (API, portal, desk), with its first message."""
    subject = (subject or "").strip()
    body = (body or "").strip()
    if not subject and not body:
        raise ApplicationError(
            _("a ticket needs a subject or a body"), code="empty_ticket", fields={"subject": ["required"]}
        )
    if priority not in Ticket.Priority.values:
        raise ApplicationError(
            f"unknown priority {priority!r}", code="invalid_priority", fields={"priority": ["unknown"]}
        )
    received = message_receive(
        customer=customer,
        channel=channel,
        new_ticket={"subject": subject[:500] or body[:80], "priority": priority},
        identity=identity,
        author=author,
        subject=subject[:500] or body[:80],
        body_text=body,
        thread_reason=Message.ThreadReason.NEW_TICKET,
        attachments=attachments,
    )
    return received.ticket


# --- merge and split ----------------------------------------------------------------


@transaction.atomic
def merge_tickets(*, source: Ticket, target: Ticket, actor=None) -> TicketMove:
    """All of `source`'s messages move into `target`; `source` is closed and points at it."""
    if source.pk == target.pk:
        raise ApplicationError(_("cannot merge a ticket into itself"), code="merge_self")
    locked = {t.pk: t for t in Ticket.objects.select_for_update().filter(pk__in=[source.pk, target.pk]).order_by("pk")}
    source, target = locked[source.pk], locked[target.pk]
    if source.merged_into_id or target.merged_into_id:
        raise ApplicationError(_("one of these tickets was already merged"), code="already_merged", status=409)
    if source.customer_id != target.customer_id:
        raise ApplicationError(
            _("tickets of different customers cannot be merged; merge the customers first"), code="different_customers"
        )
    message_ids = list(source.messages.values_list("pk", flat=True))
    move = TicketMove.objects.create(
        kind=TicketMove.Kind.MERGE,
        source=source,
        target=target,
        message_ids=message_ids,
        source_status=source.status,
        actor=actor,
    )
    Message.objects.filter(pk__in=message_ids).update(ticket=target)
    _refresh_activity(target)
    source.merged_into = target
    source.status = S.CLOSED
    source.closed_at = timezone.now()
    source.save(update_fields=["merged_into", "status", "closed_at", "updated_at"])
    events.record(source, "merged", actor=actor, into=target.pk, move_id=move.pk, messages=len(message_ids))
    events.record(target, "merged", actor=actor, source=source.pk, move_id=move.pk, messages=len(message_ids))
    broadcast_ticket(source)
    broadcast_ticket(target)
    return move


@transaction.atomic
def split_ticket(*, ticket: Ticket, message_ids: list[int], actor=None, subject: str = "") -> TicketMove:
    """Chosen messages move into a new ticket for the same customer."""
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket.pk)
    ids = set(ticket.messages.filter(pk__in=message_ids).values_list("pk", flat=True))
    if not ids or ids != set(message_ids):
        raise ApplicationError(_("choose messages of this ticket to split off"), code="invalid_messages")
    if ids == set(ticket.messages.values_list("pk", flat=True)):
        raise ApplicationError(_("leave at least one message in the ticket"), code="split_all")
    first = ticket.messages.filter(pk__in=ids).order_by("created_at", "id").first()
    new = Ticket.objects.create(
        subject=(subject or first.subject or ticket.subject)[:500],
        customer=ticket.customer,
        channel=first.channel if first.channel != Channel.DESK else ticket.channel,
        inbox=first.inbox or ticket.inbox,
        priority=ticket.priority,
        team=ticket.team,
        assignee=ticket.assignee,
        status=S.OPEN,
    )
    move = TicketMove.objects.create(
        kind=TicketMove.Kind.SPLIT,
        source=ticket,
        target=new,
        message_ids=sorted(ids),
        source_status=ticket.status,
        actor=actor,
    )
    Message.objects.filter(pk__in=ids).update(ticket=new)
    _refresh_activity(new)
    _refresh_activity(ticket)
    events.record(ticket, "split", actor=actor, into=new.pk, move_id=move.pk, messages=len(ids))
    events.record(new, "split", actor=actor, source=ticket.pk, move_id=move.pk, messages=len(ids))
    signals.ticket_created.send(sender=Ticket, ticket=new, actor=actor)
    broadcast_ticket(ticket)
    broadcast_ticket(new, "ticket.created")
    return move


@transaction.atomic
def undo_move(*, move: TicketMove, actor=None) -> TicketMove:
    """Undo a merge or a split exactly: the moved messages go back where they were."""
    move = TicketMove.objects.select_for_update().get(pk=move.pk)
    if move.undone_at:
        raise ApplicationError(_("this was already undone"), code="already_undone", status=409)
    source, target = move.source, move.target
    later = (
        TicketMove.objects.filter(undone_at=None, created_at__gte=move.created_at)
        .exclude(pk=move.pk)
        .filter(Q(source__in=[source, target]) | Q(target__in=[source, target]))
        .filter(Q(created_at__gt=move.created_at) | Q(pk__gt=move.pk))
        .select_related("source", "target")
        .first()
    )
    if later is not None:
        raise ApplicationError(
            _(
                "Undo the later %(kind)s (%(source)s → %(target)s) first: undoing this one now would put "
                "messages in the wrong ticket."
            )
            % {
                "kind": later.get_kind_display().lower(),
                "source": later.source.reference,
                "target": later.target.reference,
            },
            code="undo_out_of_order",
            status=409,
        )
    Message.objects.filter(pk__in=move.message_ids, ticket=target).update(ticket=source)
    _refresh_activity(source)
    _refresh_activity(target)
    now = timezone.now()
    if move.kind == TicketMove.Kind.MERGE:
        source.merged_into = None
        source.status = move.source_status
        source.closed_at = None
        source.save(update_fields=["merged_into", "status", "closed_at", "updated_at"])
        kind = "unmerged"
    else:
        if not target.messages.exists():
            target.status = S.CLOSED
            target.closed_at = now
            target.save(update_fields=["status", "closed_at", "updated_at"])
        kind = "unsplit"
    move.undone_at = now
    move.save(update_fields=["undone_at"])
    events.record(source, kind, actor=actor, move_id=move.pk, other=target.pk)
    events.record(target, kind, actor=actor, move_id=move.pk, other=source.pk)
    broadcast_ticket(source)
    broadcast_ticket(target)
    return move


def _refresh_activity(ticket: Ticket) -> None:
    """Recompute the ticket's activity timestamps from its messages."""
    msgs = ticket.messages
    last_in, last_channel = (
        msgs.filter(direction=Message.Direction.INBOUND)
        .order_by("-created_at", "-id")
        .values_list("created_at", "channel")
        .first()
    ) or (None, "")
    last_out = (
        msgs.filter(direction=Message.Direction.OUTBOUND)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    last_any = (
        msgs.exclude(direction=Message.Direction.NOTE)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    Ticket.objects.filter(pk=ticket.pk).update(
        last_customer_message_at=last_in,
        last_customer_channel=last_channel,
        last_agent_message_at=last_out,
        last_message_at=last_any,
        updated_at=timezone.now(),
    )
    ticket.refresh_from_db()


@transaction.atomic
def customer_reply(
    *, ticket: Ticket, customer: Customer, body: str, attachments: Iterable[AttachmentIn] = ()
) -> Message:
    """The customer answers in the portal: a `portal` message in the same ticket, which
    reopens a solved or pending ticket, like a reply on any other channel."""
    body = (body or "").strip()
    if not body and not attachments:
        raise ApplicationError(_("Write a message first."), code="empty_body", fields={"body": ["required"]})
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=ticket.pk)
    if ticket.customer_id != customer.pk:
        raise ApplicationError(_("not your ticket"), code="not_found", status=404)
    if ticket.status == S.CLOSED:
        raise ApplicationError(_("This request is closed; please open a new one."), code="ticket_closed", status=409)
    received = message_receive(
        customer=customer,
        channel=Channel.PORTAL,
        ticket=ticket,
        subject=ticket.subject,
        body_text=body,
        thread_reason=Message.ThreadReason.EXPLICIT,
        attachments=attachments,
    )
    return received.message


def ticket_reopen_by_customer(*, ticket: Ticket, old: str, message: Message) -> None:
    """A customer wrote on a solved or pending ticket: open again, record it, tell the owner."""
    ticket_set_status(ticket=ticket, status=S.OPEN, reason="customer_reply")
    events.reopened(ticket, old=old, message_id=message.pk)
    if old == S.SOLVED:
        notifications.notify(
            user_id=ticket.assignee_id,
            kind=notifications.Kind.CUSTOMER_REPLIED,
            ticket=ticket,
            message=message,
            text=message.body_text[:200],
        )


def canned_render(*, canned, ticket: Ticket, agent) -> str:
    """Fill a canned response's placeholders for this ticket and agent."""
    name = ticket.customer.name or ""
    values = {
        "{customer.name}": name or "there",
        "{customer.first_name}": (name.split() or ["there"])[0],
        "{ticket.reference}": ticket.reference,
        "{ticket.subject}": ticket.subject,
        "{agent.name}": (agent.get_full_name() or agent.username) if agent else "",
    }
    text = canned.body
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def automatic_message_queue(
    *, ticket: Ticket, target: ReplyTarget, body: str, kind: str, language: str = ""
) -> Message:
    """An automatic outbound message (acknowledgement, survey): stored `queued` with
    `Auto-Submitted` semantics and sent by the same task as replies. It is not an agent's
    response: first-response time and assignment are untouched. `language`: the language
    the body was written in (a mail says so in Content-Language)."""
    message = Message.objects.create(
        ticket=ticket,
        direction=Message.Direction.OUTBOUND,
        channel=target.channel,
        inbox=target.inbox,
        identity=target.identity,
        subject=ticket.subject,
        body_text=body,
        status=Message.Status.QUEUED,
        thread_reason=Message.ThreadReason.EXPLICIT,
        metadata={"auto_submitted": True, kind: True, **({"language": language} if language else {})},
    )
    message_created(message=message, created_ticket=False)
    enqueue("send_message", object_id=message.pk)  # in this transaction; sent by the channel side
    return message


BULK_MAX = 500


@dataclass
class BulkResult:
    id: int
    status: str  # "done" or "refused"
    code: str = ""
    message: str = ""


def tickets_bulk_update(
    *,
    actor,
    ids: list[int],
    assignee=...,
    team=...,
    status: str | None = None,
    priority: str | None = None,
    add_tags: Iterable[str] = (),
    remove_tags: Iterable[str] = (),
) -> list[BulkResult]:
    """The same change on many tickets: one transaction per ticket (a refusal leaves the
    others done), the same events, broadcasts and webhooks as a single change. Tickets the
    actor may not see are refused as not found."""
    from .selectors import tickets_visible_to

    wanted = list(dict.fromkeys(ids))[:BULK_MAX]
    found = {t.pk: t for t in tickets_visible_to(agent=actor).filter(pk__in=wanted).prefetch_related("tags")}
    add = {t.strip().lower() for t in add_tags if t and t.strip()}
    remove = {t.strip().lower() for t in remove_tags if t and t.strip()}
    results = []
    for ticket_id in wanted:
        ticket = found.get(ticket_id)
        if ticket is None:
            results.append(BulkResult(ticket_id, "refused", "not_found", "no such ticket"))
            continue
        tags = None
        if add or remove:
            current = {t.name for t in ticket.tags.all()}
            tags = sorted((current | add) - remove) if (current | add) - remove != current else None
        try:
            with transaction.atomic():
                ticket_update(
                    ticket=ticket,
                    actor=actor,
                    status=status,
                    priority=priority,
                    assignee=assignee,
                    team=team,
                    tags=tags,
                )
        except ApplicationError as exc:
            results.append(BulkResult(ticket_id, "refused", exc.code, exc.message))
        else:
            results.append(BulkResult(ticket_id, "done"))
    return results


def tickets_bulk_merge(*, actor, ids: list[int], target_id: int) -> list[BulkResult]:
    """Merge every chosen ticket into one of them (each merge its own transaction)."""
    from .selectors import tickets_visible_to

    visible = {t.pk: t for t in tickets_visible_to(agent=actor).filter(pk__in=[*ids, target_id])}
    target = visible.get(target_id)
    if target is None:
        raise ApplicationError(_("choose a ticket to merge into"), code="invalid_target", status=400)
    results = []
    for ticket_id in dict.fromkeys(ids):
        if ticket_id == target_id:
            continue
        source = visible.get(ticket_id)
        if source is None:
            results.append(BulkResult(ticket_id, "refused", "not_found", "no such ticket"))
            continue
        try:
            merge_tickets(source=source, target=target, actor=actor)
        except ApplicationError as exc:
            results.append(BulkResult(ticket_id, "refused", exc.code, exc.message))
        else:
            results.append(BulkResult(ticket_id, "done"))
    return results


@transaction.atomic
def saved_view_save(*, owner, name: str, filters: dict, shared: bool = False, view=None):
    """Create (or update the owner's) saved view; filters are cleaned like the inbox's own."""
    from .models import SavedView
    from .selectors import inbox_filters_clean

    name = (name or "").strip()[:80]
    if not name:
        raise ApplicationError(_("Give the view a name."), code="invalid", fields={"name": ["required"]})
    clean = {k: v for k, v in inbox_filters_clean(filters or {}).items() if v and k != "before"}
    if view is None:
        position = SavedView.objects.filter(owner=owner).count()
        return SavedView.objects.create(owner=owner, name=name, filters=clean, shared=shared, position=position)
    if view.owner_id != owner.pk:
        raise ApplicationError(_("only its owner can change a view"), code="not_owner", status=403)
    view.name, view.filters, view.shared = name, clean, shared
    view.save(update_fields=["name", "filters", "shared"])
    return view


def saved_view_delete(*, view, actor) -> None:
    if view.owner_id != actor.pk:
        raise ApplicationError(_("only its owner can delete a view"), code="not_owner", status=403)
    view.delete()
