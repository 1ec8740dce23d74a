"""One function per timeline event kind: the only writers of TicketEvent."""

from __future__ import annotations

from typing import Any

from .models import Ticket, TicketEvent


def record(ticket: Ticket, kind: str, *, actor=None, **data: Any) -> TicketEvent:
    event = TicketEvent.objects.create(ticket=ticket, kind=kind, actor=actor, data=data)
    from cxdesk.realtime import broadcast_on_commit

    broadcast_on_commit(f"ticket.{ticket.pk}", "ticket.event", ticket_id=ticket.pk, event_id=event.pk, kind=kind)
    return event


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
