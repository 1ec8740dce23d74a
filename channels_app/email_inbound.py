"""Email-specific inbound rules: delivery reports (bounces) and the loop-safe
auto-acknowledgement (RFC 3834)."""

from __future__ import annotations

import email
import email.policy
import logging
import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tickets.models import Message, Ticket
from tickets.services import ReplyTarget, automatic_message_queue, message_set_status

from .models import Channel

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<[^<>\s]+>")


def bounce_details(raw: bytes) -> tuple[str, str] | None:
    """For a delivery status report: (original Message-ID, reason). None otherwise."""
    head = raw[:16384].lower()
    if b"multipart/report" not in head:
        return None  # cheap test first: most mail is not a report, and parsing costs
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        return None
    if (msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    original_id, reason = "", ""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            text = _payload_text(part)
            status = re.search(r"^Status:\s*(\S+)", text, re.M | re.I)
            diag = re.search(r"^Diagnostic-Code:\s*(.+(?:\n[ \t].+)*)", text, re.M | re.I)
            action = re.search(r"^Action:\s*(\S+)", text, re.M | re.I)
            if action and action.group(1).lower() not in ("failed",):
                return None  # delayed / relayed / delivered: not a failure
            reason = " ".join(
                p for p in ((status.group(1) if status else ""), (diag.group(1).strip() if diag else "")) if p
            )
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not original_id:
            original_id = next(iter(_MSGID.findall(_headers_text(part))), "")
    if not original_id:
        found = _MSGID.findall(str(msg.get("References", "")) + " " + str(msg.get("In-Reply-To", "")))
        original_id = found[-1] if found else ""
    return original_id, reason or "delivery failed (no diagnostic given)"


def _payload_text(part) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join(p.as_string() for p in payload)
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)


def _headers_text(part) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return "\n".join(f"{k}: {v}" for k, v in payload[0].items())
    return _payload_text(part)


def bounce_apply(*, original_id: str, reason: str) -> Message | None:
    """Mark the outbound message a bounce refers to as failed, with the reason."""
    message = Message.objects.filter(email_message_id=original_id, direction=Message.Direction.OUTBOUND).first()
    if message is None:
        log.info("bounce for unknown message %s ignored", original_id)
        return None
    message_set_status(message=message, status=Message.Status.FAILED, error=f"bounced: {reason}")
    return message


# --- auto-acknowledgement ---------------------------------------------------------

DEFAULT_ACK = (
    "Hello {name},\n\n"
    "Thank you for writing to us. Your request has been received and has the reference {reference}.\n"
    "We will answer as soon as we can; reply to this email to add anything.\n\n"
    "You can follow your requests at {portal_url}\n"
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
    from .tasks import send_auto_acknowledgement

    transaction.on_commit(lambda: send_auto_acknowledgement.delay(message.pk))


@transaction.atomic
def auto_acknowledge(*, message_id: int) -> Message | None:
    """Create and queue the acknowledgement for the ticket `message_id` opened. Idempotent
    (one per ticket) and rate-limited per address; it does not count as a first response."""
    inbound = Message.objects.select_related("ticket__customer", "identity", "inbox").filter(pk=message_id).first()
    if inbound is None or inbound.identity is None or inbound.inbox is None:
        return None
    ticket = Ticket.objects.select_for_update().get(pk=inbound.ticket_id)
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
    template = inbound.inbox.config.get("auto_ack_template") or DEFAULT_ACK
    values = {
        "name": ticket.customer.name or inbound.identity.address,
        "reference": ticket.reference,
        "subject": ticket.subject,
        "portal_url": f"{settings.PUBLIC_URL}/portal/",
    }
    try:
        body = template.format(**values)
    except (KeyError, IndexError, ValueError):
        body = DEFAULT_ACK.format(**values)
    target = ReplyTarget(channel=Channel.EMAIL, inbox=inbound.inbox, identity=inbound.identity)
    return automatic_message_queue(ticket=ticket, target=target, body=body, kind="auto_ack")
