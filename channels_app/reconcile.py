"""Twilio does not retry a failed webhook by default: this lists recent inbound
messages through Twilio's API and ingests any we do not have (ingest is idempotent
on MessageSid, so what the webhook already stored is a no-op)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from .models import Inbox
from .services import ingest
from .types import SendError

log = logging.getLogger(__name__)


def reconcile_twilio(*, since: datetime | None = None) -> dict[str, int]:
    """Ingest missed inbound messages of every live Twilio inbox. Returns new per inbox."""
    since = since or timezone.now() - timedelta(hours=2)
    added: dict[str, int] = {}
    for inbox in Inbox.objects.filter(kind="twilio", is_active=True, transport=Inbox.Transport.LIVE):
        try:
            found = inbox.adapter.recent_inbound(inbox, since)
        except SendError as exc:
            log.warning("twilio reconcile for %s failed: %s", inbox.name, exc)
            continue
        added[inbox.name] = sum(1 for item in found if not ingest(item).duplicate)
    return added
