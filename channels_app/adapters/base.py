"""The adapter interface. One module per provider under `channels_app/adapters/`,
registered with `@register`; core code looks adapters up by `inbox.kind` and never
branches on the kind."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from ..types import InboundMessage, OutboundMessage, StatusUpdate

if TYPE_CHECKING:
    from ..models import Inbox


class Adapter:
    kind: ClassVar[str]
    # Channels (channels_app.models.Channel values) this adapter carries.
    channels: ClassVar[tuple[str, ...]]
    # The customers.Identity kind its senders are identified by.
    identity_kind: ClassVar[str]
    # Settings schema: public config keys and secret keys, each with a help text.
    config_schema: ClassVar[dict[str, str]] = {}
    required_config: ClassVar[tuple[str, ...]] = ()
    secret_schema: ClassVar[dict[str, str]] = {}
    required_secrets: ClassVar[tuple[str, ...]] = ()
    # Capability flags
    supports_html: ClassVar[bool] = False
    supports_attachments: ClassVar[bool] = False
    supports_status: ClassVar[bool] = False
    # The public webhook is /hooks/<route>/<inbox id>/ (several kinds may share a route: meta).
    route: ClassVar[str | None] = None
    # Its webhooks may be acknowledged once stored and ingested by a worker (CXDESK_WEBHOOKS=
    # queued): only adapters whose answer does not depend on what ingest did (not voice).
    queue_webhooks: ClassVar[bool] = False

    # --- settings --------------------------------------------------------------
    def validate_settings(self, config: dict, secrets: dict) -> list[str]:
        """Return a list of problems (empty when the settings are usable)."""
        problems = []
        for key in config:
            if key not in self.config_schema:
                problems.append(
                    f"unknown config key {key!r} for {self.kind} (known: {', '.join(sorted(self.config_schema)) or 'none'})"
                )
        for key in secrets:
            if key not in self.secret_schema:
                problems.append(
                    f"unknown secret {key!r} for {self.kind} (known: {', '.join(sorted(self.secret_schema)) or 'none'})"
                )
        problems += [f"missing config {k!r}" for k in self.required_config if not config.get(k)]
        return problems

    def webhook_url(self, inbox: Inbox) -> str | None:
        """The URL to give the provider. `config["webhook_url"]` overrides it when the
        public URL differs (behind a proxy): signatures are computed over it."""
        if not self.route:
            return None
        return inbox.config.get("webhook_url") or f"{settings.PUBLIC_URL}/hooks/{self.route}/{inbox.pk}/"

    def registered_webhook(self, inbox: Inbox) -> str | None:
        """The URL the provider currently calls for this inbox, asked from its API (for
        `manage.py doctor`); None when none is set. NotImplementedError: cannot be asked."""
        raise NotImplementedError

    def embed(self, inbox: Inbox) -> str | None:
        """The snippet a site owner pastes into their pages (web chat), or None."""
        return None

    # --- inbound ---------------------------------------------------------------
    def handshake(self, request: HttpRequest, inbox: Inbox) -> HttpResponse:
        """Answer a GET on the webhook (Meta's hub.challenge); 405 by default."""
        return HttpResponse("POST only", status=405, content_type="text/plain")

    def acknowledge(self, request: HttpRequest, inbox: Inbox, results: list) -> HttpResponse:
        """The 2xx answer once everything is stored."""
        return HttpResponse("ok", content_type="text/plain")

    def verify(self, request: HttpRequest, inbox: Inbox) -> None:
        """Raise WebhookError(status=403) unless the request is signed by the provider."""
        raise NotImplementedError

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        raise NotImplementedError

    def callback(self, request: HttpRequest, inbox: Inbox) -> HttpResponse | None:
        """A verified provider callback that is neither a message nor a delivery status
        (voice call progress, recordings, transcriptions): handle it and return the answer.
        None (the default) means: go on with parse() / parse_status() / ingest."""
        return None

    def parse_status(self, request: HttpRequest, inbox: Inbox) -> list[StatusUpdate]:
        return []

    def templates(self, inbox: Inbox) -> list[dict[str, str]]:
        """Approved message templates ({"name", "language"}) for when free text is refused."""
        return []

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        """Download a provider media reference: (bytes, content type). Raise media.MediaError."""
        from ..media import MediaError

        raise MediaError(f"{self.kind} has no media download", permanent=True)

    # --- outbound --------------------------------------------------------------
    def can_send(self, *, inbox: Inbox, identity, channel: str, ticket) -> str | None:
        """Why a free-form reply cannot go out now (e.g. WhatsApp's 24-hour window), or None."""
        return None

    def send(self, out: OutboundMessage) -> str:
        """Send through the provider; return the provider's message id. Raise SendError."""
        raise NotImplementedError

    def deliver(self, out: OutboundMessage) -> str:
        """Send for real, or, for an inbox on the development transport, write the
        message to var/outbox/<kind>/ so the embedded default works end to end."""
        if out.inbox.transport == out.inbox.Transport.FILE:
            return write_to_outbox(self.kind, out)
        return self.send(out)


def write_to_outbox(kind: str, out: OutboundMessage) -> str:
    folder = settings.CXDESK_OUTBOX_DIR / kind
    folder.mkdir(parents=True, exist_ok=True)
    provider_id = f"file-{uuid.uuid4().hex}"
    record = {
        "provider_message_id": provider_id,
        "written_at": timezone.now().isoformat(),
        "inbox": out.inbox.name,
        "channel": out.channel,
        "to": out.to,
        "subject": out.subject,
        "text": out.text,
        "attachments": [a.filename for a in out.attachments],
        "in_reply_to": out.in_reply_to,
        "template": out.template,
    }
    (folder / f"{timezone.now():%Y%m%dT%H%M%S}-{out.message_id}-{provider_id}.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False)
    )
    return provider_id
