"""One function per timeline event kind: the only writers of TicketEvent."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

from django.db import connection
from django.utils import timezone

from cxdesk.realtime import broadcast_on_commit

from . import deferred
from .models import Ticket, TicketEvent

log = logging.getLogger(__name__)


def record(ticket: Ticket, kind: str, *, actor=None, **data: Any) -> TicketEvent:
    """THE write of an event: now, or inside `batched()` as the batch ends (its `pk` is None
    until then), with the time it was recorded either way."""
    scope = _scope.get()
    if scope is not None and connection.in_atomic_block:
        event = TicketEvent(ticket=ticket, kind=kind, actor=actor, data=data, created_at=timezone.now())
        deferred.defer(scope, event, _unwritten)  # dropped with a savepoint that rolls back
        return event
    event = TicketEvent.objects.create(ticket=ticket, kind=kind, actor=actor, data=data)
    _announce(event)
    return event


def _announce(event: TicketEvent) -> None:
    ticket_id = event.ticket_id
    broadcast_on_commit(f"ticket.{ticket_id}", "ticket.event", ticket_id=ticket_id, event_id=event.pk, kind=event.kind)


def _unwritten(event: TicketEvent) -> None:
    """An event its batch did not write (a bug): better late than lost."""
    log.error("%s event recorded in a batch was not written; writing it now", event.kind)
    TicketEvent.objects.bulk_create([event])


_scope: contextvars.ContextVar[object | None] = contextvars.ContextVar("tickets_events_batch", default=None)
_COLUMNS = ("ticket", "kind", "actor", "data", "created_at")


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Inside ONE transaction (a chunk of mail): the events recorded in the block are written
    as it ends, in one INSERT that keeps each one's own time (not one INSERT each), and
    announced with their ids. If the block raises, nothing is written."""
    scope = object()
    token = _scope.set(scope)
    try:
        yield
    finally:
        _scope.reset(token)
    pending = deferred.standing(scope)
    if not pending:
        return
    ids = deferred.insert(
        TicketEvent, [TicketEvent._meta.get_field(name) for name in _COLUMNS], pending, returning=True
    )
    for event, pk in zip(pending, ids, strict=True):
        event.pk = pk
        event._state.adding = False
        _announce(event)


def created(ticket: Ticket, *, actor=None, channel: str) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.CREATED, actor=actor, channel=channel)


def status_changed(ticket: Ticket, *, actor, old: str, new: str) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.STATUS, actor=actor, old=old, new=new)


def reopened(ticket: Ticket, *, old: str, message_id: int) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.REOPENED, old=old, new=ticket.status, message_id=message_id)


def channel_switched(ticket: Ticket, *, old: str, new: str, message_id: int) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.CHANNEL_SWITCH, old=old, new=new, message_id=message_id)


def assignment_changed(
    ticket: Ticket,
    *,
    actor,
    old_assignee: int | None,
    new_assignee: int | None,
    old_team: int | None,
    new_team: int | None,
) -> TicketEvent:
    return record(
        ticket,
        TicketEvent.Kind.ASSIGNMENT,
        actor=actor,
        old_assignee=old_assignee,
        new_assignee=new_assignee,
        old_team=old_team,
        new_team=new_team,
    )


def priority_changed(ticket: Ticket, *, actor, old: str, new: str) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.PRIORITY, actor=actor, old=old, new=new)


def tags_changed(ticket: Ticket, *, actor, added: list[str], removed: list[str]) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.TAGS, actor=actor, added=added, removed=removed)


def attachment_quarantined(
    ticket: Ticket, *, attachment_id: int, message_id: int, filename: str, signature: str
) -> TicketEvent:
    return record(
        ticket,
        TicketEvent.Kind.ATTACHMENT_QUARANTINED,
        attachment_id=attachment_id,
        message_id=message_id,
        filename=filename,
        signature=signature,
    )


def delivery_failed(ticket: Ticket, *, message_id: int, error: str) -> TicketEvent:
    return record(ticket, TicketEvent.Kind.DELIVERY_FAILED, message_id=message_id, error=error)


def call_status(
    ticket: Ticket, *, call_id: int, call_sid: str, old: str, new: str, agent=None, duration: int | None = None
) -> TicketEvent:
    """A phone call moved on (ringing → in-progress → completed / no-answer / busy / failed)."""
    return record(
        ticket, TicketEvent.Kind.CALL, actor=agent, call=call_id, call_sid=call_sid, old=old, new=new, duration=duration
    )


def call_missed(ticket: Ticket, *, call_id: int, call_sid: str, caller: str) -> TicketEvent:
    """Nobody answered and no voicemail was left: someone should call back."""
    return record(ticket, TicketEvent.Kind.CALL_MISSED, call=call_id, call_sid=call_sid, caller=caller)


def thread_refused(ticket: Ticket, *, other: Ticket, message_id: int, sender: str) -> TicketEvent:
    """Mail replying to one customer's ticket came from someone who may not join it: it
    opened `other` (or this one). Written on both, each naming the other."""
    return record(
        ticket,
        TicketEvent.Kind.THREAD_REFUSED,
        other=other.pk,
        new=other.reference,
        message_id=message_id,
        sender=sender,
    )


def mail_trimmed(ticket: Ticket, *, message_id: int, detail: str) -> TicketEvent:
    """An oversized message was kept but trimmed (text cut, a part left out of storage)."""
    return record(ticket, TicketEvent.Kind.MAIL_TRIMMED, message_id=message_id, new=detail)
