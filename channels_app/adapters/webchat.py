"""Web chat: the embeddable widget (static/cxdesk/widget.js) talking over `/ws/chat/`
(channels_app.consumers.WebchatConsumer) or its HTTP fallback (channels_app.webchat_views).

Inbound does not come through a provider webhook: the consumer/views hand the visitor's
messages to `channels_app.webchat`, which builds an `InboundMessage` for `ingest()`.
Outbound `send()` pushes the stored message's id to the visitor's socket group; the
visitor's sockets read the row themselves (notes are never sent there)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from cxdesk.realtime import group_send

from ..models import Channel
from ..types import OutboundMessage
from . import register
from .base import Adapter

if TYPE_CHECKING:
    from ..models import Inbox

PRECHAT_MODES = ("none", "optional", "required")
INVITATION_RULES = ("email_link", "time_on_page", "returning")


def visitor_group(visitor_id: str) -> str:
    return f"webchat.visitor.{visitor_id}"


def ticket_chat_group(ticket_id: int) -> str:
    """Typing and read receipts from the desk for the visitors of one ticket (never messages)."""
    return f"webchat.ticket.{ticket_id}"


ONLINE_TTL = 90  # seconds: a socket pings every 30 s, a poll every 3–10 s


def _online_key(visitor_id: str) -> str:
    return f"cxdesk:webchat:online:{visitor_id}"


def visitor_seen(visitor_id: str) -> None:
    cache.set(_online_key(visitor_id), 1, ONLINE_TTL)


def visitor_gone(visitor_id: str) -> None:
    cache.delete(_online_key(visitor_id))


def visitor_online(visitor_id: str) -> bool:
    return bool(cache.get(_online_key(visitor_id)))


def allowed_origins(inbox: Inbox) -> list[str]:
    raw = inbox.config.get("allowed_origins", "")
    return [o.strip().rstrip("/").lower() for o in re.split(r"[,\s]+", raw) if o.strip()]


def origin_allowed(inbox: Inbox, origin: str | None) -> bool:
    if not origin:
        return False
    origin = origin.strip().rstrip("/").lower()
    allowed = allowed_origins(inbox)
    if origin in allowed:
        return True
    # The desk's own origin (demo page, previews) is always allowed.
    return origin == settings.PUBLIC_URL.rstrip("/").lower()


def invitation_rules(inbox: Inbox) -> list[dict]:
    raw = inbox.config.get("invitations") or "[]"
    try:
        rules = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return rules if isinstance(rules, list) else []


@register
class WebchatAdapter(Adapter):
    kind = "webchat"
    route = None
    channels = (Channel.CHAT,)
    identity_kind = "webchat"
    config_schema = {
        "allowed_origins": "Sites that may embed the widget, comma-separated (https://shop.example.com).",
        "prechat": "Ask for name and email before the chat: none, optional (default) or required.",
        "offline_after_minutes": "Minutes without an agent's answer before the widget offers email (default 5).",
        "greeting": "First line the widget shows (default: a translated greeting).",
        "invitations": 'Proactive invitations, JSON: [{"rule": "time_on_page", "url": "/pricing*", '
        '"seconds": 30, "message": "…"}, {"rule": "returning", "url": "*", "visits": 3}, {"rule": "email_link"}]',
    }
    required_config = ("allowed_origins",)
    supports_attachments = True
    supports_status = True

    def validate_settings(self, config: dict, secrets: dict) -> list[str]:
        problems = super().validate_settings(config, secrets)
        for origin in re.split(r"[,\s]+", config.get("allowed_origins", "")):
            if origin and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?/?", origin):
                problems.append(f"allowed_origins: {origin!r} is not an origin like https://shop.example.com")
        if config.get("prechat", "optional") not in PRECHAT_MODES:
            problems.append(f"prechat must be one of {', '.join(PRECHAT_MODES)}")
        minutes = config.get("offline_after_minutes", "5")
        if not str(minutes).isdecimal() or not 1 <= int(minutes) <= 1440:
            problems.append("offline_after_minutes is a whole number of minutes (1–1440)")
        raw = config.get("invitations")
        if raw:
            try:
                rules = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                rules = None
            if not isinstance(rules, list) or not all(
                isinstance(r, dict) and r.get("rule") in INVITATION_RULES for r in rules
            ):
                problems.append(f"invitations is a JSON list of rules, each with rule in {INVITATION_RULES}")
        return problems

    def embed(self, inbox: Inbox) -> str:
        base = settings.PUBLIC_URL.rstrip("/")
        return (
            f'<script src="{base}/static/cxdesk/widget.js" data-inbox="{inbox.pk}" data-server="{base}" async></script>'
        )

    def can_send(self, *, inbox: Inbox, identity, channel: str, ticket) -> str | None:
        """A visitor who left, and gave an email: the conversation continues by email (their
        answer threads into this ticket; the widget shows it when they come back)."""
        if visitor_online(identity.address):
            return None
        if identity.customer.identities.filter(kind="email").exists():
            return _(
                "The visitor has left the chat; reply by email — they will also see it in the chat when they return."
            )
        return None

    def deliver(self, out: OutboundMessage) -> str:
        # Nothing leaves the server: the development transport and live are the same push.
        return self.send(out)

    def send(self, out: OutboundMessage) -> str:
        group_send(visitor_group(out.to), "chat.message", message_id=out.message_id)
        return f"webchat-{out.message_id}"
