"""The normalised shapes every adapter produces and takes.

`InboundMessage` is the only thing `channels_app.services.ingest()` accepts;
`OutboundMessage` is the only thing an adapter's `send()` accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Inbox


@dataclass
class SenderRef:
    """Who sent it, as the provider names them (normalised by ingest)."""

    kind: str  # customers.Identity.Kind value: email / phone / messenger / telegram
    address: str
    display_name: str = ""


@dataclass
class InboundAttachment:
    filename: str
    content_type: str = "application/octet-stream"
    content: bytes | None = None  # the bytes, or None when only `url` is known yet
    url: str = ""  # provider media URL / id, fetched later by a Celery task
    content_id: str = ""
    inline: bool = False


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
