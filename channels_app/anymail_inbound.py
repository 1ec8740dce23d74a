"""Inbound mail from ESPs (Mailgun, Postmark, SendGrid, Amazon SES, …) through
django-anymail's normalised `inbound` signal: anymail verifies the webhook (basic
auth secret / provider signature) and parses the provider format; we take the
message's RFC 5322 bytes into the same `ingest_raw_email` as every other source."""

from __future__ import annotations

import logging
from email.utils import getaddresses

from cxdesk.errors import ApplicationError

from .services import inbox_for_recipients, ingest_raw_email, raw_inbound_failed, raw_inbound_store

log = logging.getLogger(__name__)


def on_inbound(sender, event, esp_name: str, **kwargs) -> None:
    message = event.message
    raw = message.as_bytes()
    recipients = [a for _, a in getaddresses([str(message.get("To", "")), str(message.get("Cc", ""))]) if a]
    if getattr(message, "envelope_recipient", None):
        recipients.insert(0, message.envelope_recipient)
    inbox = inbox_for_recipients(recipients)
    source = f"anymail:{esp_name.lower()}"
    if inbox is None:
        record = raw_inbound_store(raw=raw, source=source, inbox=None)
        raw_inbound_failed(raw=record, error=f"no email inbox for recipients {recipients}")
        return
    try:
        ingest_raw_email(raw=raw, inbox=inbox, source=source)
    except ApplicationError as exc:
        # Kept (a dead letter with the error, or an ignored delivery report); the ESP gets
        # a 2xx because it is stored.
        log.warning("%s inbound mail not ingested (%s): %s", esp_name, exc.code, exc.message)
