"""Email-specific inbound rules: delivery reports (bounces) fail the original outbound
message and never open tickets. (The loop-safe auto-acknowledgement is in automations.py;
what counts as machine mail is `adapters.email.is_auto_submitted`.)"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass

from cxdesk.errors import ApplicationError
from tickets.models import Message
from tickets.services import message_set_status

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<[^<>\s]+>")


@dataclass
class DeliveryReport:
    """A delivery status notification (RFC 3464) about one of our outbound mails."""

    original_ids: list[str]  # candidates for the original Message-ID, best first
    reason: str
    failed: bool  # any recipient "failed"; otherwise delayed / relayed / delivered


_FIELD = re.compile(r"^([A-Za-z-]+):[ \t]*(.*(?:\n[ \t].*)*)", re.M)


def delivery_report(raw: bytes) -> DeliveryReport | None:
    """The delivery report in `raw` (multipart/report; report-type=delivery-status), else None."""
    head = raw[:16384].lower()
    if b"multipart/report" not in head:
        return None  # cheap test first: most mail is not a report, and parsing costs
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    if msg.get_content_type() != "multipart/report":
        return None
    if (msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    ids: list[str] = []
    actions: list[str] = []
    reasons: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            for block in re.split(r"\n\s*\n", _payload_text(part).replace("\r\n", "\n")):
                fields = {k.lower(): " ".join(v.split()) for k, v in _FIELD.findall(block)}
                ids += _MSGID.findall(fields.get("original-message-id", "") + fields.get("x-original-message-id", ""))
                if "action" in fields:
                    actions.append(fields["action"].lower())
                    if fields["action"].lower() == "failed":
                        reasons.append(
                            " ".join(p for p in (fields.get("status", ""), fields.get("diagnostic-code", "")) if p)
                        )
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            ids += _MSGID.findall(_original_message_id(part))
    # Some MTAs quote only the id in the report's own threading headers.
    ids += reversed(_MSGID.findall(str(msg.get("In-Reply-To", "")) + " " + str(msg.get("References", ""))))
    failed = "failed" in actions or not actions  # a report without actions is a plain bounce
    reason = "; ".join(dict.fromkeys(r for r in reasons if r)) or "delivery failed (no diagnostic given)"
    return DeliveryReport(original_ids=list(dict.fromkeys(ids)), reason=reason, failed=failed)


def _original_message_id(part) -> str:
    """The Message-ID header of the returned message (or its returned headers)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return str(payload[0].get("Message-ID", ""))
    text = _payload_text(part).replace("\r\n", "\n")
    found = re.search(r"^Message-ID:[ \t]*(.*)", text, re.M | re.I)
    return found.group(1) if found else ""


def _payload_text(part) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(p.as_string() for p in payload)
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)


def report_original(report: DeliveryReport) -> Message | None:
    """Our outbound message the report is about."""
    if not report.original_ids:
        return None
    found = {
        m.email_message_id: m
        for m in Message.objects.filter(
            email_message_id__in=report.original_ids, direction=Message.Direction.OUTBOUND
        ).select_related("ticket")
    }
    return next((found[i] for i in report.original_ids if i in found), None)


def bounce_apply(*, report: DeliveryReport) -> Message | None:
    """Mark the outbound message a failure report refers to as failed, with the reason."""
    message = report_original(report)
    if message is None:
        log.info("delivery report for unknown message(s) %s ignored", report.original_ids)
        return None
    if report.failed:
        message_set_status(message=message, status=Message.Status.FAILED, error=f"bounced: {report.reason}")
    return message


def mail_body_read(request) -> None:
    """Read a raw-mail request body under CXDESK_MAX_MAIL_BYTES, before anything touches
    `request.body` (which Django caps at DATA_UPLOAD_MAX_MEMORY_SIZE — mail is bigger than a
    form: a 25 MB attachment is ~34 MB as JSON). Over the cap: ApplicationError 413."""
    from django.conf import settings

    if hasattr(request, "_body"):
        return
    limit = settings.CXDESK_MAX_MAIL_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise ApplicationError(f"message over {limit} bytes", code="too_large", status=413)
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise ApplicationError(f"message over {limit} bytes", code="too_large", status=413)
    request._body = raw
