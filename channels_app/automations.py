"""Automations on inbound messages: the auto-acknowledgement of a new email ticket,
loop-safe per RFC 3834 (never to machine mail, at most CXDESK_AUTO_REPLY_PER_HOUR
automatic mails per address per hour), sent by Celery through the same send path as
agent replies. It is not a first response: it never sets first_response_at."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_lazy as _

from cxdesk.i18n import for_customer
from tickets.models import Message, Ticket
from tickets.services import ReplyTarget, automatic_message_queue

from .models import Channel

log = logging.getLogger(__name__)

# The default acknowledgement, rendered in the customer's language. An inbox's own
# `auto_ack_template` (str.format with name, reference, subject, portal_url) replaces it.
DEFAULT_ACK = _(
    "Hello %(name)s,\n\n"
    "Thank you for writing to us. Your request has been received and has the reference %(reference)s.\n"
    "We will answer as soon as we can; reply to this email to add anything.\n\n"
    "You can follow your requests at %(portal_url)s\n"
)


def on_message_created(sender, *, message: Message, created_ticket: bool, **kwargs) -> None:
    """Receiver: a new email ticket gets an automatic acknowledgement, sent by Celery."""
    if not created_ticket or message.direction != Message.Direction.INBOUND or message.channel != Channel.EMAIL:
        return
    inbox = message.inbox
    if inbox is None or str(inbox.config.get("auto_ack", "true")).lower() in ("0", "false", "no", "off"):
        return
    if message.metadata.get("auto_submitted"):
        return  # never answer a machine (RFC 3834)
    from outbox.services import enqueue

    enqueue("auto_ack", object_id=message.pk)


@transaction.atomic
def auto_acknowledge(*, message_id: int) -> Message | None:
    """Create and queue the acknowledgement for the ticket `message_id` opened. Idempotent
    (one per ticket) and rate-limited per address; it does not count as a first response."""
    inbound = Message.objects.select_related("ticket__customer", "identity", "inbox").filter(pk=message_id).first()
    if inbound is None or inbound.identity is None or inbound.inbox is None:
        return None
    ticket = Ticket.objects.select_for_update(no_key=True).get(pk=inbound.ticket_id)
    if ticket.messages.filter(direction=Message.Direction.OUTBOUND, metadata__auto_ack=True).exists():
        return None
    since = timezone.now() - timedelta(hours=1)
    recent = Message.objects.filter(
        identity=inbound.identity,
        direction=Message.Direction.OUTBOUND,
        metadata__auto_submitted=True,
        created_at__gte=since,
    ).count()
    if recent >= settings.CXDESK_AUTO_REPLY_PER_HOUR:
        log.info(
            "auto-acknowledgement to %s suppressed: %s automatic mails in the last hour",
            inbound.identity.address,
            recent,
        )
        return None
    template = inbound.inbox.config.get("auto_ack_template")
    values = {
        "name": ticket.customer.name or inbound.identity.address,
        "reference": ticket.reference,
        "subject": ticket.subject,
        "portal_url": f"{settings.PUBLIC_URL}/portal/",
    }
    try:
        body = template.format(**values) if template else None
    except (KeyError, IndexError, ValueError):
        body = None
    language = ""
    if body is None:
        with for_customer(ticket.customer):
            body = str(DEFAULT_ACK) % values
            language = translation.get_language()
    target = ReplyTarget(channel=Channel.EMAIL, inbox=inbound.inbox, identity=inbound.identity)
    return automatic_message_queue(ticket=ticket, target=target, body=body, kind="auto_ack", language=language)


def auto_ack_handler(task) -> str:
    """Outbox handler for `auto_ack` rows."""
    ack = auto_acknowledge(message_id=task.object_id)
    return f"message {ack.pk}" if ack else "none"
