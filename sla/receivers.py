from django.utils import timezone

from tickets import signals


def on_ticket_created(sender, *, ticket, **kwargs):
    from .services import sla_apply

    sla_apply(ticket=ticket, now=timezone.now(), new=True)


def on_ticket_updated(sender, *, ticket, changes=None, **kwargs):
    from .services import sla_apply, sla_status_changed

    changes = changes or {}
    if "status" in changes:
        old, new = changes["status"]
        sla_status_changed(ticket=ticket, old=old, new=new, now=timezone.now())
    if "priority" in changes:
        ticket.refresh_from_db(fields=["priority"])
        sla_apply(ticket=ticket, now=timezone.now())


def on_message_created(sender, *, message, **kwargs):
    from .services import sla_first_response

    if message.direction == "outbound" and message.author_id:
        sla_first_response(ticket_id=message.ticket_id, now=timezone.now())


def on_agent_contacted(sender, *, ticket, at, **kwargs):
    from .services import sla_first_response

    sla_first_response(ticket_id=ticket.pk, now=at)


def connect() -> None:
    signals.ticket_created.connect(on_ticket_created, dispatch_uid="sla.ticket_created")
    signals.ticket_updated.connect(on_ticket_updated, dispatch_uid="sla.ticket_updated")
    signals.message_created.connect(on_message_created, dispatch_uid="sla.message_created")
    signals.agent_contacted.connect(on_agent_contacted, dispatch_uid="sla.agent_contacted")
