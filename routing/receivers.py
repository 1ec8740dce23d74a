"""Routing runs after the ticket or message is committed: an outbox row written with
it, run by Celery (eager in `make run`) — or, inside an `outbox.services.batch` (an
`ingest_mail` chunk), by the same process right after the commit, a batch's rows together
(`routing.services.route_tickets`). A batch that settles routing before its commit (an API
create, a webhook drainer's batch) routes its tickets inside the transaction, the ones it
created on the instances it holds."""

from __future__ import annotations

from tickets import signals


def _later(ticket_id: int, trigger: str, message_id: int | None = None, *, ticket=None) -> None:
    from outbox.services import enqueue

    enqueue("route", object_id=ticket_id, payload={"trigger": trigger, "message_id": message_id}, instance=ticket)


def on_ticket_created(sender, *, ticket, actor=None, **kwargs):
    _later(ticket.pk, "ticket_created", ticket=ticket)


def on_message_created(sender, *, message, created_ticket, **kwargs):
    if message.direction == "inbound" and not created_ticket:
        _later(message.ticket_id, "message_received", message.pk)


def on_ticket_updated(sender, *, ticket, actor=None, changes=None, **kwargs):
    # Only people's changes trigger rules: rules' own updates (actor None) must not loop.
    if actor is not None:
        _later(ticket.pk, "ticket_updated")


def connect() -> None:
    signals.ticket_created.connect(on_ticket_created, dispatch_uid="routing.ticket_created")
    signals.message_created.connect(on_message_created, dispatch_uid="routing.message_created")
    signals.ticket_updated.connect(on_ticket_updated, dispatch_uid="routing.ticket_updated")
