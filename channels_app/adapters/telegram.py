"""Telegram Bot API: webhook updates carry X-Telegram-Bot-Api-Secret-Token (set with
setWebhook); outbound through sendMessage / sendDocument."""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime

import requests
from django.conf import settings
from django.http import HttpRequest

from cxdesk.http import TELEGRAM_API_HOSTS, ResponseTooLarge, UnsafeTarget, safe_request

from ..media import MediaError
from ..models import Channel, Inbox
from ..types import InboundAttachment, InboundMessage, OutboundMessage, SenderRef, SendError, WebhookError
from . import register
from .base import Adapter

log = logging.getLogger(__name__)

API = "https://api.telegram.org"
TIMEOUT = 15


@register
class TelegramAdapter(Adapter):
    queue_webhooks = True
    kind = "telegram"
    route = "telegram"
    channels = (Channel.TELEGRAM,)
    identity_kind = "telegram"
    config_schema = {
        "bot_username": "The bot's @username (informational).",
        "public_url": "Public scheme://host for setWebhook.",
    }
    secret_schema = {
        "bot_token": "Bot token from @BotFather.",
        "secret_token": "Secret Telegram echoes in X-Telegram-Bot-Api-Secret-Token (set by telegram_set_webhook).",
    }
    supports_attachments = True

    def validate_settings(self, config: dict, secrets: dict) -> list[str]:
        problems = super().validate_settings(config, secrets)
        token = secrets.get("secret_token", "")
        if token and not all(c.isalnum() or c in "_-" for c in token):
            problems.append("secret_token may only contain A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return problems

    def verify(self, request: HttpRequest, inbox: Inbox) -> None:
        expected = inbox.secrets.get("secret_token", "")
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected:
            raise WebhookError("this inbox has no secret_token configured", status=403)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookError("invalid X-Telegram-Bot-Api-Secret-Token", status=403)

    def parse(self, request: HttpRequest, inbox: Inbox) -> list[InboundMessage]:
        try:
            update = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookError(f"body is not JSON: {exc}") from None
        if not isinstance(update, dict) or "update_id" not in update:
            raise WebhookError("not a Telegram update: update_id is required")
        message = update.get("message")
        if not isinstance(message, dict):
            log.info("telegram update %s without a message ignored (%s)", update.get("update_id"), ", ".join(update))
            return []
        update_id = update.get("update_id")
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise WebhookError("update_id must be an integer")
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        if not isinstance(chat, dict) or not isinstance(sender, dict):
            raise WebhookError("message.chat and message.from must be objects")
        if chat.get("type") not in (None, "private") or sender.get("is_bot"):
            log.info("telegram update %s from a %s chat ignored", update_id, chat.get("type"))
            return []
        user_id = sender.get("id") or chat.get("id")
        if user_id is None:
            raise WebhookError("Telegram message without from.id")
        if not isinstance(user_id, int | str) or isinstance(user_id, bool):
            raise WebhookError("from.id must be a number")
        text = message.get("text") or message.get("caption") or ""
        if not isinstance(text, str):
            raise WebhookError("message.text must be a string")
        date = message.get("date")
        if date is not None and (not isinstance(date, int | float) or isinstance(date, bool)):
            raise WebhookError("message.date must be a unix time")
        attachments = []
        photos = message.get("photo")
        if photos:
            if not isinstance(photos, list) or not all(isinstance(p, dict) and p.get("file_id") for p in photos):
                raise WebhookError("message.photo must be a list of photo sizes")
            largest = max(photos, key=lambda p: (p.get("file_size") or 0, p.get("width") or 0))
            attachments.append(
                InboundAttachment(
                    filename=f"photo-{message.get('message_id')}.jpg",
                    content_type="image/jpeg",
                    url=f"tg-file:{largest['file_id']}",
                )
            )
        doc = message.get("document")
        if doc:
            if not isinstance(doc, dict) or not isinstance(doc.get("file_id"), str):
                raise WebhookError("message.document must be a document object")
            attachments.append(
                InboundAttachment(
                    filename=str(doc.get("file_name") or "document"),
                    content_type=str(doc.get("mime_type") or ""),
                    url=f"tg-file:{doc['file_id']}",
                )
            )
        name = " ".join(p for p in (sender.get("first_name"), sender.get("last_name")) if isinstance(p, str) and p)
        return [
            InboundMessage(
                inbox=inbox,
                channel=Channel.TELEGRAM,
                sender=SenderRef(kind="telegram", address=str(user_id), display_name=name),
                provider_message_id=str(update_id),
                text=text,
                attachments=attachments,
                received_at=datetime.fromtimestamp(date, tz=UTC) if date else None,
                language=str(sender.get("language_code") or "")[:16],
                metadata={
                    "provider": "telegram",
                    "chat_id": chat.get("id"),
                    "username": sender.get("username", ""),
                    "language": sender.get("language_code", ""),
                },
            )
        ]

    def _call(self, inbox: Inbox, method: str, **kwargs) -> dict:
        token = inbox.secrets.get("bot_token", "")
        if not token:
            raise SendError(f"{inbox.name} has no bot_token", permanent=True)
        try:
            response = safe_request(
                "POST", f"{API}/bot{token}/{method}", allowed_hosts=TELEGRAM_API_HOSTS, timeout=TIMEOUT, **kwargs
            )
        except requests.RequestException as exc:
            # requests' messages carry the URL, which carries the bot token: never store it.
            raise SendError(f"Telegram unreachable: {str(exc).replace(token, '<token>')}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or not body.get("ok"):
            retry = response.status_code == 429 or response.status_code >= 500
            raise SendError(
                f"Telegram {method}: {body.get('description') or response.status_code}", permanent=not retry
            )
        return body

    def send(self, out: OutboundMessage) -> str:
        # Private chats: the chat id is the user id, which is the identity's address.
        body = self._call(out.inbox, "sendMessage", json={"chat_id": out.to, "text": out.text})
        message_id = str(body["result"]["message_id"])
        for att in out.attachments:
            with open(att.path, "rb") as fh:
                self._call(
                    out.inbox,
                    "sendDocument",
                    data={"chat_id": out.to},
                    files={"document": (att.filename, fh, att.content_type)},
                )
        return f"out-{out.to}-{message_id}"

    def set_webhook(self, inbox: Inbox, url: str) -> dict:
        return self._call(
            inbox,
            "setWebhook",
            json={"url": url, "secret_token": inbox.secrets.get("secret_token", ""), "allowed_updates": ["message"]},
        )

    def registered_webhook(self, inbox: Inbox) -> str | None:
        return self._call(inbox, "getWebhookInfo").get("result", {}).get("url") or None

    def fetch_media(self, inbox: Inbox, url: str) -> tuple[bytes, str]:
        file_id = url.removeprefix("tg-file:")
        token = inbox.secrets.get("bot_token", "")
        try:
            info = safe_request(
                "GET",
                f"{API}/bot{token}/getFile",
                allowed_hosts=TELEGRAM_API_HOSTS,
                params={"file_id": file_id},
                timeout=TIMEOUT,
            ).json()
            if not info.get("ok"):
                raise MediaError(f"Telegram getFile: {info.get('description')}", permanent=True)
            data = safe_request(
                "GET",
                f"{API}/file/bot{token}/{info['result']['file_path']}",
                allowed_hosts=TELEGRAM_API_HOSTS,
                timeout=TIMEOUT,
                max_bytes=settings.CXDESK_MAX_ATTACHMENT_BYTES,
            )
        except (UnsafeTarget, ResponseTooLarge) as exc:
            raise MediaError(f"Telegram file {file_id} refused: {exc}", permanent=True) from exc
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MediaError(f"Telegram file {file_id}: {str(exc).replace(token or '-', '<token>')}") from None
        if data.status_code >= 400:
            raise MediaError(f"Telegram file download: HTTP {data.status_code}", permanent=data.status_code == 404)
        return data.content, data.headers.get("Content-Type", "")
