"""Meta: WhatsApp Cloud API (kind `whatsapp`) and Messenger (kind `messenger`), one
webhook route `/hooks/meta/<inbox>/`. GET answers the verify challenge; POST bodies
are verified by X-Hub-Signature-256 over the raw bytes; outbound via the Graph API."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from cxdesk.http import META_API_HOSTS, META_MEDIA_HOSTS, ResponseTooLarge, UnsafeTarget, safe_request

from ..media import MediaError
from ..models import Channel, Inbox
from ..types import InboundAttachment, InboundMessage, OutboundMessage, SenderRef, SendError, StatusUpdate, WebhookError
from . import register
from .base import Adapter

log = logging.getLogger(__name__)

GRAPH = "https://graph.facebook.com/v21.0"
TIMEOUT = 15
MEDIA_TYPES = ("image", "document", "audio", "video", "sticker")
WA_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "played": "read", "failed": "failed"}
# Graph API error codes that are worth retrying (rate limits, temporary).
TRANSIENT_CODES = {1, 2, 4, 17, 32, 613, 80007, 130429, 131016}


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("entry", []), list):
        raise WebhookError("body is not a Meta webhook event (an object with an 'entry' list)")
    return body


def _at(ts: Any, millis: bool = False) -> datetime | None:
    try:
        value = float(ts)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(value / 1000 if millis else value, tz=UTC)


class MetaAdapter(Adapter):
    queue_webhooks = True
    route = "meta"
    secret_schema = {
        "app_secret": "App secret: verifies X-Hub-Signature-256.",
        "verify_token": "Verify token you typed in the Meta app's webhook settings.",
        "access_token": "System-user / page access token for the Graph API.",
    }
    supports_attachments = True
    supports_status = True

    def handshake(self, request: HttpRequest, inbox: Inbox) -> HttpResponse:
        token = inbox.secrets.get("verify_token", "")
        given = request.GET.get("hub.verify_token", "")
        if request.GET.get("hub.mode") != "subscribe" or not token or not hmac.compare_digest(given, token):
            return HttpResponse("verification failed", status=403, content_type="text/plain")
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")

    def verify(self, request: HttpRequest, inbox: Inbox) -> None:
        secret = inbox.secrets.get("app_secret", "")
        header = request.headers.get("X-Hub-Signature-256", "")
        if not secret:
            raise WebhookError("this inbox has no app_secret configured", status=403)
        if not header.startswith("sha256="):
            raise WebhookError("missing X-Hub-Signature-256", status=403)
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(header[7:], expected):
            raise WebhookError("invalid X-Hub-Signature-256", status=403)

    def _token(self, inbox: Inbox) -> str:
        token = inbox.secrets.get("access_token", "")
        if not token:
            raise SendError(f"{inbox.name} has no access_token", permanent=True)
        return token

    def _post(self, inbox: Inbox, url: str, payload: dict) -> dict:
        try:
            response = safe_request(
                "POST",
                url,
                allowed_hosts=META_API_HOSTS,
                json=payload,
                headers={"Authorization": f"Bearer {self._token(inbox)}"},
                timeout=TIMEOUT,
            )
        except requests.RequestException as exc:
            raise SendError(f"Graph API unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            code = error.get("code")
            transient = response.status_code >= 500 or response.status_code == 429 or code in TRANSIENT_CODES
            raise SendError(
                f"Graph API {response.status_code}: {error.get('message', response.text[:200])} (code {code})",
                permanent=not transient,
            )
        return body

    def _last_inbound(self, identity, channel: str):
        from tickets.models import Message

        return (
            Message.objects.filter(identity=identity, channel=channel, direction=Message.Direction.INBOUND)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )


@register
class WhatsAppAdapter(MetaAdapter):
    kind = "whatsapp"
    channels = (Channel.WHATSAPP,)
    identity_kind = "phone"
    config_schema = {
        "phone_number_id": "WhatsApp Business phone number id (from the Meta app).",
        "display_phone_number": "The number customers see (informational).",
        "default_region": "Region for phone numbers written without a country code.",
        "templates": "Approved message templates agents may send when the 24-hour window is closed: "
        "name:language pairs, comma-separated (order_update:en,order_update:pl).",
    }
    required_config = ("phone_number_id",)
    WINDOW = timedelta(hours=24)

    def templates(self, inbox: Inbox) -> list[dict[str, str]]:
        raw = inbox.config.get("templates") or ""
        items = raw if isinstance(raw, list) else str(raw).split(",")
        out = []
        for item in items:
            name, _sep, language = str(item).strip().partition(":")
            if name:
                out.append({"name": name.strip(), "language": (language or "en").strip()})
        return out

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        body = _json_body(request)
        if body.get("object") not in (None, "whatsapp_business_account"):
            return []
        own_id = str(inbox.config.get("phone_number_id", ""))
        out: list[InboundMessage] = []
        for value in self._values(body, own_id):
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name", "") for c in value.get("contacts") or []}
            for msg in value.get("messages") or []:
                item = self._message(inbox, msg, names)
                if item is not None:
                    out.append(item)
        return out

    def _values(self, body: dict, own_id: str):
        for entry in body.get("entry") or []:
            for change in (entry or {}).get("changes") or []:
                value = (change or {}).get("value") or {}
                if change.get("field") != "messages":
                    log.info("whatsapp %s event ignored", change.get("field"))
                    continue
                phone_id = str((value.get("metadata") or {}).get("phone_number_id", ""))
                if own_id and phone_id and phone_id != own_id:
                    continue  # another number on the same app
                yield value

    def _message(self, inbox: Inbox, msg: dict, names: dict) -> InboundMessage | None:
        kind = msg.get("type")
        sender, wamid = msg.get("from"), msg.get("id")
        if not sender or not wamid:
            raise WebhookError("WhatsApp message without from/id")
        text, attachments = "", []
        if kind == "text":
            text = (msg.get("text") or {}).get("body", "")
        elif kind in MEDIA_TYPES:
            media = msg.get(kind) or {}
            text = media.get("caption", "")
            filename = media.get("filename") or f"{kind}-{media.get('id', 'media')}"
            attachments.append(
                InboundAttachment(
                    filename=filename, content_type=media.get("mime_type", ""), url=f"wa-media:{media.get('id', '')}"
                )
            )
        elif kind == "location":
            loc = msg.get("location") or {}
            label = ", ".join(p for p in (loc.get("name"), loc.get("address")) if p)
            text = f"📍 {label + ' ' if label else ''}({loc.get('latitude')}, {loc.get('longitude')}) https://www.openstreetmap.org/?mlat={loc.get('latitude')}&mlon={loc.get('longitude')}"
        elif kind == "contacts":
            lines = []
            for c in msg.get("contacts") or []:
                name = (c.get("name") or {}).get("formatted_name", "")
                phones = ", ".join(p.get("phone", "") for p in c.get("phones") or [])
                emails = ", ".join(e.get("email", "") for e in c.get("emails") or [])
                lines.append("👤 " + " · ".join(p for p in (name, phones, emails) if p))
            text = "\n".join(lines)
        elif kind == "interactive":
            inter = msg.get("interactive") or {}
            reply = inter.get("button_reply") or inter.get("list_reply") or {}
            text = reply.get("title") or json.dumps(inter.get("nfm_reply") or inter)[:500]
        elif kind == "button":
            text = (msg.get("button") or {}).get("text", "")
        elif kind == "reaction":
            text = f"reacted {(msg.get('reaction') or {}).get('emoji', '')}".strip()
        else:
            log.info("whatsapp message type %r ignored", kind)
            return None
        return InboundMessage(
            inbox=inbox,
            channel=Channel.WHATSAPP,
            sender=SenderRef(kind="phone", address="+" + str(sender).lstrip("+"), display_name=names.get(sender, "")),
            provider_message_id=wamid,
            text=text,
            attachments=attachments,
            received_at=_at(msg.get("timestamp")),
            metadata={"provider": "whatsapp", "type": kind},
        )

    def parse_status(self, request: HttpRequest, inbox: Inbox) -> list[StatusUpdate]:
        body = _json_body(request)
        updates = []
        for value in self._values(body, str(inbox.config.get("phone_number_id", ""))):
            for st in value.get("statuses") or []:
                status = WA_STATUS.get(st.get("status", ""))
                if status is None or not st.get("id"):
                    continue
                errors = st.get("errors") or []
                error = "; ".join(f"{e.get('code')}: {e.get('title') or e.get('message')}" for e in errors)
                updates.append(
                    StatusUpdate(provider_message_id=st["id"], status=status, error=error, at=_at(st.get("timestamp")))
                )
        return updates

    def can_send(self, *, inbox: Inbox, identity, channel: str, ticket) -> str | None:
        last = self._last_inbound(identity, Channel.WHATSAPP)
        if last is None or timezone.now() - last > self.WINDOW:
            when = f"on {last:%Y-%m-%d %H:%M} UTC" if last else "never"
            return (
                "WhatsApp's 24-hour customer-service window is closed (the customer last wrote "
                f"{when}): only an approved template can be sent now, or reply on another channel."
            )
        return None

    def send(self, out: OutboundMessage) -> str:
        to = out.to.lstrip("+")
        if out.template:
            payload = {"messaging_product": "whatsapp", "to": to, "type": "template", "template": out.template}
        else:
            payload = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": to,
                "type": "text",
                "text": {"preview_url": False, "body": out.text},
            }
        body = self._post(out.inbox, f"{GRAPH}/{out.inbox.config['phone_number_id']}/messages", payload)
        try:
            return body["messages"][0]["id"]
        except (KeyError, IndexError, TypeError):
            raise SendError(f"Graph API answered without a message id: {str(body)[:200]}") from None

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        media_id = url.removeprefix("wa-media:")
        headers = {"Authorization": f"Bearer {inbox.secrets.get('access_token', '')}"}
        try:
            meta = safe_request(
                "GET", f"{GRAPH}/{media_id}", allowed_hosts=META_API_HOSTS, headers=headers, timeout=TIMEOUT
            )
            if meta.status_code >= 400:
                raise MediaError(
                    f"WhatsApp media {media_id}: HTTP {meta.status_code}", permanent=meta.status_code in (400, 404)
                )
            info = meta.json()
            # The download URL comes from Graph's answer: it must be one of Meta's media hosts,
            # and the token goes only to Meta's API hosts.
            data = safe_request(
                "GET",
                info["url"],
                allowed_hosts=META_MEDIA_HOSTS,
                credential_hosts=META_API_HOSTS,
                headers=headers,
                timeout=TIMEOUT,
                max_bytes=settings.CXDESK_MAX_ATTACHMENT_BYTES,
            )
        except (UnsafeTarget, ResponseTooLarge) as exc:
            raise MediaError(f"WhatsApp media {media_id} refused: {exc}", permanent=True) from exc
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise MediaError(f"WhatsApp media {media_id}: {exc}") from exc
        if data.status_code >= 400:
            raise MediaError(f"WhatsApp media download: HTTP {data.status_code}", permanent=data.status_code == 404)
        return data.content, info.get("mime_type") or data.headers.get("Content-Type", "")


@register
class MessengerAdapter(MetaAdapter):
    kind = "messenger"
    channels = (Channel.MESSENGER,)
    identity_kind = "messenger"
    config_schema = {"page_id": "Facebook Page id.", "default_region": "Unused; accepted for symmetry."}
    required_config = ("page_id",)
    # Standard messaging within 24h; up to 7 days with the HUMAN_AGENT tag; beyond, nothing.
    WINDOW = timedelta(hours=24)
    HUMAN_AGENT_WINDOW = timedelta(days=7)

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        body = _json_body(request)
        if body.get("object") not in (None, "page"):
            return []
        out = []
        for entry in body.get("entry") or []:
            for event in (entry or {}).get("messaging") or []:
                message = event.get("message")
                if not message or message.get("is_echo"):
                    continue
                psid, mid = (event.get("sender") or {}).get("id"), message.get("mid")
                if not psid or not mid:
                    raise WebhookError("Messenger message without sender.id / mid")
                attachments = [
                    InboundAttachment(
                        filename=f"{a.get('type', 'file')}-{i}",
                        content_type={"image": "image/jpeg", "video": "video/mp4", "audio": "audio/mpeg"}.get(
                            a.get("type"), ""
                        ),
                        url=(a.get("payload") or {}).get("url", ""),
                    )
                    for i, a in enumerate(message.get("attachments") or [])
                    if (a.get("payload") or {}).get("url")
                ]
                out.append(
                    InboundMessage(
                        inbox=inbox,
                        channel=Channel.MESSENGER,
                        sender=SenderRef(kind="messenger", address=str(psid)),
                        provider_message_id=mid,
                        text=message.get("text", "") or (message.get("quick_reply") or {}).get("payload", ""),
                        attachments=attachments,
                        received_at=_at(event.get("timestamp"), millis=True),
                        metadata={"provider": "messenger"},
                    )
                )
        return out

    def parse_status(self, request: HttpRequest, inbox: Inbox) -> list[StatusUpdate]:
        body = _json_body(request)
        updates = []
        for entry in body.get("entry") or []:
            for event in (entry or {}).get("messaging") or []:
                for mid in (event.get("delivery") or {}).get("mids") or []:
                    updates.append(
                        StatusUpdate(
                            provider_message_id=mid, status="delivered", at=_at(event.get("timestamp"), millis=True)
                        )
                    )
        return updates

    def can_send(self, *, inbox: Inbox, identity, channel: str, ticket) -> str | None:
        last = self._last_inbound(identity, Channel.MESSENGER)
        if last is None or timezone.now() - last > self.HUMAN_AGENT_WINDOW:
            return (
                "Messenger allows replies only within 7 days of the customer's last message; reply on another channel."
            )
        return None

    def send(self, out: OutboundMessage) -> str:
        last = self._last_inbound_for(out)
        payload: dict[str, Any] = {"recipient": {"id": out.to}, "message": {"text": out.text}}
        if last is not None and timezone.now() - last > self.WINDOW:
            payload.update(messaging_type="MESSAGE_TAG", tag="HUMAN_AGENT")
        else:
            payload["messaging_type"] = "RESPONSE"
        body = self._post(out.inbox, f"{GRAPH}/{out.inbox.config['page_id']}/messages", payload)
        if not body.get("message_id"):
            raise SendError(f"Graph API answered without a message id: {str(body)[:200]}")
        return body["message_id"]

    def _last_inbound_for(self, out: OutboundMessage):
        from customers.models import Identity

        identity = Identity.objects.filter(kind="messenger", address=out.to).first()
        return self._last_inbound(identity, Channel.MESSENGER) if identity else None

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        try:
            # Attachment URLs arrive in the (signed) webhook; fetched only from Meta's CDNs, no token.
            data = safe_request(
                "GET",
                url,
                allowed_hosts=META_MEDIA_HOSTS,
                credential_hosts=(),
                timeout=TIMEOUT,
                max_bytes=settings.CXDESK_MAX_ATTACHMENT_BYTES,
            )
        except (UnsafeTarget, ResponseTooLarge) as exc:
            raise MediaError(f"Messenger media refused: {exc}", permanent=True) from exc
        except requests.RequestException as exc:
            raise MediaError(f"Messenger media: {exc}") from exc
        if data.status_code >= 400:
            raise MediaError(f"Messenger media: HTTP {data.status_code}", permanent=data.status_code in (403, 404))
        return data.content, data.headers.get("Content-Type", "")
