"""The desk's bell: notifications for one agent (assigned to me, @mentions, SLA warnings and
breaches, a customer replying on my solved ticket). Written here, read here, told live on the
agent's own `agent.<id>` group after commit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from cxdesk.realtime import broadcast_on_commit

from .models import Message, Notification, Ticket

Kind = Notification.Kind


def notify(
    *, user_id: int | None, kind: str, ticket: Ticket, text: str = "", message: Message | None = None, actor=None
) -> Notification | None:
    """One notification for one agent — never for the actor themself."""
    if not user_id or (actor is not None and actor.pk == user_id):
        return None
    note = Notification.objects.create(
        user_id=user_id, kind=kind, ticket=ticket, message=message, actor=actor, text=text[:300]
    )
    broadcast_on_commit(
        f"agent.{user_id}", "notification.created", notification_id=note.pk, ticket_id=ticket.pk, kind=kind
    )
    return note


_MENTION = re.compile(r"(?<![\w@.])@([\w.+-]{2,150})")


def mentions_notify(*, message: Message) -> list[Notification]:
    """@username in an internal note: one notification per active staff member named
    (not the author)."""
    names = {m.rstrip(".").lower() for m in _MENTION.findall(message.body_text)}
    if not names:
        return []
    match = Q()
    for name in sorted(names)[:20]:
        match |= Q(username__iexact=name)
    users = get_user_model().objects.filter(match, is_active=True, is_staff=True).values_list("pk", flat=True)
    author = message.author
    who = (author.get_full_name() or author.username) if author else ""
    made = []
    for user_id in users:
        note = notify(
            user_id=user_id,
            kind=Kind.MENTION,
            ticket=message.ticket,
            message=message,
            actor=author,
            text=f"{who}: {message.body_text[:200]}",
        )
        if note:
            made.append(note)
    return made


# The bell's count for the request being served, read with the staff member's other desk facts
# (`cxdesk.middleware.DeskUserMiddleware`): {user id: count}. Emptied by the first statement
# that writes the notifications table while the request runs (`_forget_on_write`, an execute
# wrapper on every connection: a new notification, marking read, a cascade delete, raw SQL),
# so a page rendered after its own changes (the ticket page marks its notifications read)
# counts again.
_unread_preloaded: ContextVar[dict[int, int] | None] = ContextVar("notifications_unread_preloaded", default=None)


@contextmanager
def unread_count_preloaded(*, user_id: int, count: int) -> Iterator[None]:
    """`notifications_unread_count(user=…)` answers `count` for `user_id` in the block, until a
    statement writes a notification."""
    token = _unread_preloaded.set({user_id: count})
    try:
        yield
    finally:
        _unread_preloaded.reset(token)


def _forget_on_write(written: str, connection) -> None:
    """A write statement (`cxdesk.write_watch`): one to the notifications table forgets the
    preloaded count."""
    known = _unread_preloaded.get()
    if known and Notification._meta.db_table in written:
        known.clear()


def install() -> None:
    """Watch every database connection's writes for the preloaded count (`tickets.apps.ready`)."""
    from cxdesk import write_watch

    write_watch.on_write(_forget_on_write)


def notifications_unread_count(*, user) -> int:
    known = _unread_preloaded.get()
    if known:
        count = known.get(user.pk)
        if count is not None:
            return count
    return Notification.objects.filter(user=user, read_at=None).count()


def notifications_recent(*, user, limit: int = 20) -> list[Notification]:
    """The agent's latest notifications with their tickets (one query)."""
    return list(
        Notification.objects.filter(user=user).select_related("ticket", "actor").order_by("-created_at", "-id")[:limit]
    )


def notification_get(*, user, notification_id: int) -> Notification | None:
    return Notification.objects.filter(user=user, pk=notification_id).select_related("ticket").first()


def notifications_mark_read(*, user, ticket: Ticket | None = None, ids: list[int] | None = None) -> int:
    """Mark the agent's notifications read: all, those about one ticket, or given ids."""
    qs = Notification.objects.filter(user=user, read_at=None)
    if ticket is not None:
        qs = qs.filter(ticket=ticket)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    count = qs.update(read_at=timezone.now())
    if count:
        broadcast_on_commit(f"agent.{user.pk}", "notification.read")
    return count
