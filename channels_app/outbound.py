"""Outbound sending: turn a stored, queued Message into an OutboundMessage, hand it
to its inbox's adapter, record the outcome. Called by the `send_message` task."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from customers.tracking import tracked_links_expand
from cxdesk.i18n import for_customer
from outbox.services import Retry as OutboxRetry
from outbox.services import release
from tickets.models import Message
from tickets.scanning import download_refusal
from tickets.services import message_set_status

from .types import OutboundAttachment, OutboundMessage, SendError

log = logging.getLogger(__name__)


def stale_claim() -> timedelta:
    """A `sending` message older than this belonged to a worker that died mid-send: it may
    be taken over. The outbox lease, which outlives the task's hard time limit."""
    return timedelta(seconds=settings.CXDESK_OUTBOX_LEASE)


class Retry(OutboxRetry):
    """A transient failure: the outbox (or the task) retries with backoff."""


def _retry_delay(attempts: int) -> float:
    # base, 2×base, 4×base … seconds, capped at 10 minutes
    return min(600.0, settings.CXDESK_SEND_RETRY_BASE * 2 ** max(0, attempts - 1))


def _sendable_attachments(message: Message) -> list:
    """Attachments to send; a file still being scanned retries the send, a quarantined one fails it."""
    files = [a for a in message.attachments.all() if a.file]
    for a in files:
        refusal = download_refusal(a)
        if refusal:
            code, reason = refusal
            raise SendError(f"attachment {a.filename}: {reason}", permanent=code != "attachment_scan_pending")
    return files


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
            for a in _sendable_attachments(message)
        ],
        template=message.metadata.get("template"),
    )
    if message.channel == "email":
        ref = ticket.reference
        if not ticket.subject:
            with for_customer(ticket.customer):
                subject = gettext("Your request")
        else:
            subject = ticket.subject
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
        if message.metadata.get("language"):
            out.headers["Content-Language"] = message.metadata["language"]  # RFC 3282
        # {tracked_link:https://…} placeholders (canned responses, replies) become signed links.
        out.text = tracked_links_expand(out.text, customer_id=ticket.customer_id, message_id=message.pk)
        if out.html:
            out.html = tracked_links_expand(out.html, customer_id=ticket.customer_id, message_id=message.pk)
    return out


def send_stored_message(message_id: int) -> str:
    """Send one queued outbound message, at most once: the Message-ID is fixed and the
    message marked `sending` (committed) before the provider is called. A message
    `sending` for longer than the lease was left by a dead worker and is taken over.
    Transient errors raise `Retry`; permanent or unexpected ones end as `failed` with
    the reason (never stuck in `sending`). Returns the resulting status."""
    from celery.exceptions import SoftTimeLimitExceeded

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
        if message.status == Message.Status.SENDING:
            held_until = message.updated_at + stale_claim()
            if held_until > timezone.now():  # another worker holds it
                raise Retry("being sent by another worker", countdown=(held_until - timezone.now()).total_seconds() + 1)
            log.warning("message %s was left sending by a dead worker; taking it over", message.pk)
        if message.channel == "email" and not message.email_message_id:
            message.email_message_id = message.inbox.adapter.new_message_id(message.inbox)
        message.status = Message.Status.SENDING
        message.attempts += 1
        message.save(update_fields=["status", "attempts", "email_message_id", "updated_at"])
    try:
        out = build_outbound(message)
        provider_id = message.inbox.adapter.deliver(out)
    except (SendError, SoftTimeLimitExceeded) as exc:
        permanent = getattr(exc, "permanent", False)
        reason = str(exc) if isinstance(exc, SendError) else "the provider did not answer in time"
        if permanent or message.attempts >= settings.CXDESK_SEND_MAX_ATTEMPTS:
            message_set_status(message=message, status=Message.Status.FAILED, error=reason)
            return Message.Status.FAILED
        Message.objects.filter(pk=message.pk).update(status=Message.Status.QUEUED, error=reason[:2000])
        raise Retry(reason, countdown=_retry_delay(message.attempts)) from exc
    except DatabaseError:
        raise  # our database, not the message: the outbox retries (after the lease, a takeover)
    except Exception as exc:  # noqa: BLE001 - an unexpected error is shown on the message, not swallowed
        log.exception("sending message %s failed unexpectedly", message.pk)
        message_set_status(message=message, status=Message.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return Message.Status.FAILED
    Message.objects.filter(pk=message.pk).update(provider_message_id=provider_id or None, error="")
    message_set_status(message=message, status=Message.Status.SENT)
    if provider_id:
        release("apply_status", provider_id)  # a status that arrived before the send returned
    return Message.Status.SENT


def send_handler(task) -> str:
    """Outbox handler for `send_message` rows."""
    return send_stored_message(task.object_id)


def system_sms_send(*, to: str, text: str) -> bool:
    """A text that belongs to no conversation (a sign-in or verification code), sent at once
    through the first active inbox that sends SMS. Not stored as a message; a failure is
    logged. Returns whether a provider took it."""
    from tickets.models import Channel, Inbox

    for inbox in Inbox.objects.filter(is_active=True).order_by("pk"):
        try:
            adapter = inbox.adapter
        except LookupError:
            continue
        if Channel.SMS not in adapter.channels:
            continue
        try:
            adapter.deliver(OutboundMessage(message_id=0, inbox=inbox, channel=Channel.SMS, to=to, text=text))
        except SendError as exc:
            log.warning("system SMS to %s failed: %s", to, exc)
            return False
        return True
    log.warning("no SMS inbox to send a system SMS")
    return False
