"""The normalised shapes every adapter produces and takes.

`InboundMessage` is the only thing `channels_app.services.ingest()` accepts;
`OutboundMessage` is the only thing an adapter's `send()` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tickets.attachments import NewAttachment

if TYPE_CHECKING:
    from .models import Inbox


@dataclass
class SenderRef:
    """Who sent it, as the provider names them (normalised by ingest)."""

    kind: str  # customers.Identity.Kind value: email / phone / messenger / telegram
    address: str
    display_name: str = ""


# The same shape tickets stores (bytes now, or a provider URL fetched later).
InboundAttachment = NewAttachment


@dataclass
class InboundMessage:
    inbox: Inbox
    channel: str  # channels_app.models.Channel value
    sender: SenderRef
    provider_message_id: str | None
    # With provider_message_id, what makes a delivery "the same message": email keeps a
    # digest of the content here, because mailers reuse Message-IDs for different mail.
    content_digest: str = ""
    text: str = ""
    html: str = ""
    subject: str = ""
    attachments: list[InboundAttachment] = field(default_factory=list)
    # Email threading
    email_message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    reply_token: str = ""
    # Machine-generated (auto-reply, bulk, list, bounce): never auto-answered.
    auto_submitted: bool = False
    received_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    raw_inbound_id: int | None = None
    # The sender opted out (True: STOP) or back in (False: START) of messages on this channel.
    opt_out: bool | None = None
    # The sender's language as the channel tells it (widget language, Telegram language_code,
    # Content-Language): becomes the customer's language when they have none yet.
    language: str = ""

    def strip_nul(self) -> None:
        """Remove NUL bytes (and lone surrogates) from every text field, in place: PostgreSQL
        cannot store them, and in mail they are garbage, not content. ingest() calls this
        first, so a mail with a NUL byte is kept instead of failing."""
        for name in ("text", "html", "subject", "email_message_id", "in_reply_to", "reply_token"):
            setattr(self, name, _clean(getattr(self, name)))
        self.references = [_clean(r) for r in self.references]
        self.sender.address = _clean(self.sender.address)
        self.sender.display_name = _clean(self.sender.display_name)
        if isinstance(self.provider_message_id, str):
            self.provider_message_id = _clean(self.provider_message_id)
        for att in self.attachments:
            att.filename, att.content_type = _clean(att.filename), _clean(att.content_type)
            att.url, att.content_id = _clean(att.url), _clean(att.content_id)
        self.metadata = {k: _clean(v) if isinstance(v, str) else v for k, v in self.metadata.items()}


def _clean(value):
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


@dataclass
class OutboundAttachment:
    filename: str
    content_type: str
    path: str  # absolute path of the stored file


@dataclass
class OutboundMessage:
    message_id: int
    inbox: Inbox
    channel: str
    to: str  # normalised address: email, E.164, PSID, chat id
    to_name: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    attachments: list[OutboundAttachment] = field(default_factory=list)
    email_message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    reply_to: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] | None = None  # WhatsApp approved template, outside the 24h window


@dataclass
class StatusUpdate:
    provider_message_id: str
    status: str  # tickets.Message.Status value
    error: str = ""
    at: datetime | None = None


class SendError(Exception):
    """Raised by `send()`. `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class WebhookError(Exception):
    """Raised by `verify()`/`parse()`: the webhook view answers `status` with the message."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.status = status
