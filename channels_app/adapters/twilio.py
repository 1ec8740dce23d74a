"""Twilio Programmable Messaging: SMS/MMS and WhatsApp-through-Twilio (same format,
`whatsapp:+E164` addresses). Inbound and status callbacks are signed with
X-Twilio-Signature over the public URL; outbound goes through the REST API."""

from __future__ import annotations

import logging
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from twilio.request_validator import RequestValidator, add_port, compare, remove_port

from cxdesk.http import TWILIO_API_HOSTS, ResponseTooLarge, UnsafeTarget, safe_request

from ..media import MediaError
from ..models import Channel, Inbox
from ..types import InboundAttachment, InboundMessage, OutboundMessage, SenderRef, SendError, StatusUpdate, WebhookError
from . import register
from .base import Adapter

log = logging.getLogger(__name__)

API = "https://api.twilio.com/2010-04-01"
TIMEOUT = 15
# Twilio's standard opt-out / opt-in keywords (the whole message, case-insensitive).
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout", "revoke"}
START_WORDS = {"start", "yes", "unstop", "optin"}
STATUS_MAP = {
    "accepted": "queued",
    "queued": "queued",
    "sending": "sending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
}


def public_url(request: HttpRequest, inbox: Inbox) -> str:
    """The URL Twilio called, as Twilio saw it: signatures cover it, so behind a proxy
    set the inbox's `public_url` (or PUBLIC_URL) to the outside scheme://host."""
    base = (inbox.config.get("public_url") or settings.PUBLIC_URL).rstrip("/")
    return base + request.get_full_path()


def verify_signature(request: HttpRequest, inbox: Inbox) -> None:
    """Raise WebhookError(403) unless X-Twilio-Signature signs this request (messaging and voice)."""
    token = inbox.secrets.get("auth_token")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token:
        raise WebhookError("this inbox has no auth_token configured", status=403)
    if not signature:
        raise WebhookError("missing X-Twilio-Signature", status=403)
    url = public_url(request, inbox)
    # Form posts: every value of repeated keys counts (QueryDict.getlist); JSON posts are
    # signed over the URL's bodySHA256 and checked against the raw body.
    validator = RequestValidator(token)
    if "bodySHA256=" in url:
        valid = validator.validate(url, request.body.decode("utf-8", "replace"), signature)
    else:
        # Twilio signs the URL with or without its port, inconsistently: `validate` computes
        # both every time. Here the URL as configured is tried first, and the other form only
        # when it does not match.
        uri = urlparse(url)
        candidates = dict.fromkeys((url, remove_port(uri), add_port(uri)))
        valid = any(
            compare(validator.compute_signature(candidate, request.POST), signature) for candidate in candidates
        )
    if not valid:
        raise WebhookError("invalid X-Twilio-Signature", status=403)


@register
class TwilioAdapter(Adapter):
    queue_webhooks = True
    kind = "twilio"
    route = "twilio"
    channels = (Channel.SMS, Channel.WHATSAPP)
    identity_kind = "phone"
    config_schema = {
        "account_sid": "Twilio Account SID (AC…).",
        "phone_number": "The Twilio number customers text, E.164 (+15005550006).",
        "whatsapp_number": "The WhatsApp sender through Twilio, E.164 (optional).",
        "messaging_service_sid": "Send through a Messaging Service (MG…) instead of From (optional).",
        "public_url": "Public scheme://host Twilio calls, when behind a proxy (signatures cover it).",
        "default_region": "Region for numbers written without a country code.",
    }
    secret_schema = {"auth_token": "Twilio Auth Token (signs webhooks, authenticates the REST API)."}
    supports_attachments = True
    supports_status = True

    def validate_settings(self, config: dict, secrets: dict) -> list[str]:
        problems = super().validate_settings(config, secrets)
        if (
            not config.get("phone_number")
            and not config.get("messaging_service_sid")
            and not config.get("whatsapp_number")
        ):
            problems.append("set phone_number (or messaging_service_sid / whatsapp_number)")
        return problems

    # --- inbound ---------------------------------------------------------------
    def verify(self, request: HttpRequest, inbox: Inbox) -> None:
        verify_signature(request, inbox)

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        data = request.POST
        if "MessageStatus" in data and "Body" not in data:
            return []  # a status callback
        sid = data.get("MessageSid") or data.get("SmsMessageSid")
        sender = data.get("From", "")
        if not sid or not sender:
            raise WebhookError("not a Twilio message: MessageSid and From are required")
        return [
            self._inbound(
                inbox,
                sid=sid,
                sender=sender,
                body=data.get("Body", ""),
                media=_media(data),
                profile=data.get("ProfileName", ""),
            )
        ]

    def _inbound(
        self, inbox: Inbox, *, sid: str, sender: str, body: str, media, profile: str = "", at: datetime | None = None
    ) -> InboundMessage:
        channel = Channel.WHATSAPP if sender.lower().startswith("whatsapp:") else Channel.SMS
        word = body.strip().lower()
        opt_out = None
        if channel == Channel.SMS and word in STOP_WORDS:
            opt_out = True
        elif channel == Channel.SMS and word in START_WORDS:
            opt_out = False
        return InboundMessage(
            inbox=inbox,
            channel=channel,
            sender=SenderRef(kind="phone", address=sender, display_name=profile),
            provider_message_id=sid,
            text=body,
            attachments=[
                InboundAttachment(filename=f"{sid}-{i}{_ext(ct)}", content_type=ct, url=url)
                for i, (url, ct) in enumerate(media)
            ],
            opt_out=opt_out,
            received_at=at,
            metadata={"provider": "twilio"},
        )

    def parse_status(self, request: HttpRequest, inbox: Inbox) -> list[StatusUpdate]:
        data = request.POST
        raw = data.get("MessageStatus")
        if not raw or "Body" in data:
            return []
        status = STATUS_MAP.get(raw)
        if status is None:
            log.info("twilio status %r ignored", raw)
            return []
        error = ""
        if status == "failed":
            error = f"Twilio {raw}" + (f": error {data.get('ErrorCode')}" if data.get("ErrorCode") else "")
        return [StatusUpdate(provider_message_id=data.get("MessageSid", ""), status=status, error=error)]

    def acknowledge(self, request: HttpRequest, inbox: Inbox, results: list) -> HttpResponse:
        # Empty TwiML: store, don't auto-answer (agents do).
        return HttpResponse('<?xml version="1.0" encoding="UTF-8"?><Response/>', content_type="text/xml")

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        try:
            # Only Twilio's API host gets the account credentials; its redirect to the media
            # store (a signed CDN URL) is followed without them.
            response = safe_request(
                "GET",
                url,
                allowed_hosts=TWILIO_API_HOSTS,
                auth=self._auth(inbox),
                timeout=TIMEOUT,
                max_bytes=settings.CXDESK_MAX_ATTACHMENT_BYTES,
            )
        except (UnsafeTarget, ResponseTooLarge) as exc:
            raise MediaError(f"Twilio media refused: {exc}", permanent=True) from exc
        except requests.RequestException as exc:
            raise MediaError(f"Twilio media unavailable: {exc}") from exc
        if response.status_code == 404:
            raise MediaError("Twilio media not found (deleted?)", permanent=True)
        if response.status_code >= 400:
            raise MediaError(f"Twilio media: HTTP {response.status_code}", permanent=response.status_code < 500)
        return response.content, response.headers.get("Content-Type", "")

    # --- outbound --------------------------------------------------------------
    def _auth(self, inbox: Inbox) -> tuple[str, str]:
        sid, token = inbox.config.get("account_sid", ""), inbox.secrets.get("auth_token", "")
        if not sid or not token:
            raise SendError("Twilio inbox needs account_sid and auth_token", permanent=True)
        return sid, token

    def send(self, out: OutboundMessage) -> str:
        sid, token = self._auth(out.inbox)
        cfg = out.inbox.config
        whatsapp = out.channel == Channel.WHATSAPP
        data = {"To": f"whatsapp:{out.to}" if whatsapp else out.to, "Body": out.text}
        if cfg.get("messaging_service_sid") and not whatsapp:
            data["MessagingServiceSid"] = cfg["messaging_service_sid"]
        else:
            number = cfg.get("whatsapp_number") if whatsapp else cfg.get("phone_number")
            number = number or cfg.get("phone_number", "")
            data["From"] = f"whatsapp:{number}" if whatsapp else number
        data["StatusCallback"] = (
            f"{(cfg.get('public_url') or settings.PUBLIC_URL).rstrip('/')}/hooks/twilio/{out.inbox.pk}/status/"
        )
        try:
            response = safe_request(
                "POST",
                f"{API}/Accounts/{sid}/Messages.json",
                allowed_hosts=TWILIO_API_HOSTS,
                data=data,
                auth=(sid, token),
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise SendError(f"Twilio unreachable: {exc}") from exc
        body = _json(response)
        if response.status_code >= 400:
            message = (
                f"Twilio {response.status_code}: {body.get('message') or response.text[:200]} (code {body.get('code')})"
            )
            raise SendError(message, permanent=400 <= response.status_code < 500 and response.status_code != 429)
        return body.get("sid", "")

    def registered_webhook(self, inbox: Inbox) -> str | None:
        """The number's SMS webhook (IncomingPhoneNumbers.SmsUrl)."""
        number = inbox.config.get("phone_number", "")
        if not number:
            raise NotImplementedError  # a Messaging Service / WhatsApp sender: set in the console
        sid, token = self._auth(inbox)
        try:
            response = requests.get(
                f"{API}/Accounts/{sid}/IncomingPhoneNumbers.json",
                params={"PhoneNumber": number},
                auth=(sid, token),
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise SendError(f"Twilio unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise SendError(f"Twilio IncomingPhoneNumbers: HTTP {response.status_code}")
        numbers = _json(response).get("incoming_phone_numbers") or []
        if not numbers:
            raise SendError(f"{number} is not a number of Twilio account {sid}")
        return numbers[0].get("sms_url") or None

    # --- reconciliation ----------------------------------------------------------
    def recent_inbound(self, inbox: Inbox, since: datetime) -> list[InboundMessage]:
        """Inbound messages Twilio has for this number since `since` (for the reconcile task)."""
        sid, token = self._auth(inbox)
        params = {"To": inbox.config.get("phone_number", ""), "DateSent>": since.date().isoformat(), "PageSize": 100}
        url: str | None = f"{API}/Accounts/{sid}/Messages.json"
        found: list[InboundMessage] = []
        pages = 0
        while url and pages < 20:
            response = safe_request(
                "GET",
                url,
                allowed_hosts=TWILIO_API_HOSTS,
                params=params if pages == 0 else None,
                auth=(sid, token),
                timeout=TIMEOUT,
            )
            if response.status_code >= 400:
                raise SendError(f"Twilio list: HTTP {response.status_code}")
            body = _json(response)
            for item in body.get("messages", []):
                if not str(item.get("direction", "")).startswith("inbound"):
                    continue
                at = parsedate_to_datetime(item["date_sent"]) if item.get("date_sent") else None
                if at is not None and at < since:
                    continue
                found.append(
                    self._inbound(
                        inbox,
                        sid=item["sid"],
                        sender=item.get("from", ""),
                        body=item.get("body") or "",
                        media=[],
                        at=at,
                    )
                )
            next_uri = body.get("next_page_uri")
            url = f"https://api.twilio.com{next_uri}" if next_uri else None
            pages += 1
        return found


def _media(data) -> list[tuple[str, str]]:
    try:
        count = int(data.get("NumMedia") or 0)
    except ValueError:
        raise WebhookError("NumMedia is not a number") from None
    return [
        (data.get(f"MediaUrl{i}", ""), data.get(f"MediaContentType{i}", ""))
        for i in range(min(count, 10))
        if data.get(f"MediaUrl{i}")
    ]


def _ext(content_type: str) -> str:
    import mimetypes

    return mimetypes.guess_extension(content_type or "") or ""


def _json(response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
