"""Domain signals → outgoing webhook deliveries (created in the same transaction,
sent by Celery after commit). Internal notes are never sent out."""

from __future__ import annotations

from customers import signals as customer_signals
from tickets import signals as ticket_signals

from .services import webhook_enqueue


def _ticket(ticket) -> dict:
    return {
        "id": ticket.pk,
        "reference": ticket.reference,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        "customer_id": ticket.customer_id,
        "assignee_id": ticket.assignee_id,
        "team_id": ticket.team_id,
        "subject": ticket.subject,
    }


def _message(message) -> dict:
    return {
        "id": message.pk,
        "ticket_id": message.ticket_id,
        "direction": message.direction,
        "channel": message.channel,
        "status": message.status,
        "body": message.body_text,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def on_ticket_created(sender, *, ticket, **kwargs):
    webhook_enqueue(event="ticket.created", data=_ticket(ticket))


def on_ticket_updated(sender, *, ticket, changes, **kwargs):
    webhook_enqueue(event="ticket.updated", data={**_ticket(ticket), "changes": changes})


def on_message_created(sender, *, message, **kwargs):
    if message.direction != "note":
        webhook_enqueue(event="message.created", data=_message(message))


def on_message_status(sender, *, message, old, **kwargs):
    if message.direction != "note":
        webhook_enqueue(event="message.status", data={**_message(message), "old_status": old, "error": message.error})


def on_customer_merged(sender, *, merge, **kwargs):
    webhook_enqueue(
        event="customer.merged", data={"kept": merge.kept_id, "other": merge.other_id, "merge_id": merge.pk}
    )


def connect() -> None:
    ticket_signals.ticket_created.connect(on_ticket_created, dispatch_uid="integrations.ticket_created")
    ticket_signals.ticket_updated.connect(on_ticket_updated, dispatch_uid="integrations.ticket_updated")
    ticket_signals.message_created.connect(on_message_created, dispatch_uid="integrations.message_created")
    ticket_signals.message_status_changed.connect(on_message_status, dispatch_uid="integrations.message_status")
    customer_signals.customer_merged.connect(on_customer_merged, dispatch_uid="integrations.customer_merged")
    from .gdpr import on_customer_erasing

    customer_signals.customer_erasing.connect(on_customer_erasing, dispatch_uid="integrations.gdpr_erase")
