"""Outbound sending: turn a stored, queued Message into an OutboundMessage, hand it
to its inbox's adapter, record the outcome. Called by the `send_message` task."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from customers.tracking import tracked_links_expand
from tickets.models import Message
from tickets.services import message_set_status

from .types import OutboundAttachment, OutboundMessage, SendError

log = logging.getLogger(__name__)

# A claim older than this is a worker that died mid-send: the message may be claimed again.
STALE_CLAIM = timedelta(minutes=10)


class Retry(Exception):
    """A transient failure: the task retries with backoff."""


def build_outbound(message: Message) -> OutboundMessage:
    ticket = message.ticket
    inbox = message.inbox
    adapter = inbox.adapter
    out = OutboundMessage(
        message_id=message.pk,
        inbox=inbox,
        channel=message.channel,
        to=message.identity.address,
        to_name=ticket.customer.name,
        subject=message.subject or ticket.subject,
        text=message.body_text,
        html=message.body_html,
        attachments=[
            OutboundAttachment(filename=a.filename, content_type=a.content_type, path=a.file.path)
            for a in message.attachments.all()
            if a.file
        ],
        template=message.metadata.get("template"),
    )
    if message.channel == "email":
        ref = ticket.reference
        subject = ticket.subject or "Your request"
        if f"[{ref}]" not in subject:
            subject = f"{subject} [{ref}]"
        out.subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
        out.email_message_id = message.email_message_id
        parents = list(
            ticket.messages.filter(direction=Message.Direction.INBOUND, channel="email")
            .exclude(email_message_id="")
            .order_by("-created_at", "-id")
            .values_list("email_message_id", "references")[:1]
        )
        if parents:
            parent_id, parent_refs = parents[0]
            out.in_reply_to = parent_id
            out.references = [*parent_refs.split(), parent_id][-20:]
        out.reply_to = adapter.reply_address(inbox, ticket.reply_token)
        out.headers = {"X-CXDesk-Ticket": ref}
        if message.metadata.get("auto_submitted"):
            out.headers["Auto-Submitted"] = "auto-replied"
        # {tracked_link:https://…} placeholders (canned responses, replies) become signed links.
        out.text = tracked_links_expand(out.text, customer_id=ticket.customer_id, message_id=message.pk)
        if out.html:
            out.html = tracked_links_expand(out.html, customer_id=ticket.customer_id, message_id=message.pk)
    return out


def send_stored_message(message_id: int) -> str:
    """Send one queued outbound message. Idempotent: a message already sent (or being
    sent by a live worker) is not sent again. Returns the resulting status."""
    with transaction.atomic():
        message = (
            Message.objects.select_for_update(of=("self",), no_key=True)
            .select_related("inbox", "identity", "ticket__customer")
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.direction != Message.Direction.OUTBOUND:
            return "missing"
        if message.status not in (Message.Status.QUEUED, Message.Status.SENDING):
            return message.status
        if message.status == Message.Status.SENDING and message.updated_at > timezone.now() - STALE_CLAIM:
            return message.status  # another worker holds it
        if message.channel == "email" and not message.email_message_id:
            message.email_message_id = message.inbox.adapter.new_message_id(message.inbox)
        message.status = Message.Status.SENDING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "email_message_id", "updated_at"])
    out = build_outbound(message)
    try:
        provider_id = message.inbox.adapter.deliver(out)
    except SendError as exc:
        if exc.permanent or message.attempts >= settings.CXDESK_SEND_MAX_ATTEMPTS:
            message_set_status(message=message, status=Message.Status.FAILED, error=str(exc))
            return Message.Status.FAILED
        Message.objects.filter(pk=message.pk).update(status=Message.Status.QUEUED, error=str(exc)[:2000])
        raise Retry(str(exc)) from exc
    Message.objects.filter(pk=message.pk).update(provider_message_id=provider_id or None, error="")
    message_set_status(message=message, status=Message.Status.SENT)
    return Message.Status.SENT
