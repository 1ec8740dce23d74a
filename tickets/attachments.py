"""Content-addressed attachment storage: bytes are written once under their sha256."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from cxdesk.errors import ApplicationError

from .models import Attachment, Message, attachment_path
from .scanning import attachment_stored

_UNSAFE = re.compile(r"[^\w.\- ()\[\]]+", re.UNICODE)


def safe_filename(name: str, content_type: str = "") -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = _UNSAFE.sub("_", name).strip("._ ")[:200]
    if not name:
        ext = mimetypes.guess_extension(content_type or "") or ".bin"
        name = f"attachment{ext}"
    return name


def attachment_store(
    *,
    message: Message,
    filename: str,
    content: bytes,
    content_type: str = "",
    content_id: str = "",
    inline: bool = False,
) -> Attachment:
    if len(content) > settings.CXDESK_MAX_ATTACHMENT_BYTES:
        raise ApplicationError(
            f"attachment {filename!r} is {len(content)} bytes; the limit is {settings.CXDESK_MAX_ATTACHMENT_BYTES}",
            code="attachment_too_large",
            status=413,
        )
    digest = hashlib.sha256(content).hexdigest()
    att = Attachment(
        message=message,
        filename=safe_filename(filename, content_type),
        content_type=(content_type or "application/octet-stream")[:255],
        size=len(content),
        sha256=digest,
        content_id=content_id.strip("<>")[:255],
        inline=inline,
    )
    path = attachment_path(att, att.filename)
    if not default_storage.exists(path):
        default_storage.save(path, ContentFile(content))
    att.file.name = path
    att.save()
    attachment_stored(att)
    return att


@dataclass
class NewAttachment:
    """An attachment arriving with a message: its bytes, or only a provider URL (fetched later
    by the `fetch_media` task). Channels produce these (`channels_app.types.InboundAttachment`
    is this class); desk, portal and API uploads are turned into them."""

    filename: str
    content_type: str = "application/octet-stream"
    content: bytes | None = None
    url: str = ""
    content_id: str = ""
    inline: bool = False


AttachmentIn = NewAttachment | tuple[str, bytes, str]


def attachments_store(*, message: Message, attachments: Iterable[AttachmentIn]) -> list[Attachment]:
    """Store a message's attachments. Returns the ones known only by URL (not fetched yet)."""
    pending = []
    for att in attachments:
        if isinstance(att, tuple):  # (filename, bytes, content type) from a form or the API
            att = NewAttachment(filename=att[0], content=att[1], content_type=att[2])
        if att.content is not None:
            attachment_store(
                message=message,
                filename=att.filename,
                content=att.content,
                content_type=att.content_type,
                content_id=att.content_id,
                inline=att.inline,
            )
        elif att.url:
            pending.append(
                Attachment.objects.create(
                    message=message,
                    filename=att.filename or "media",
                    content_type=att.content_type,
                    source_url=att.url[:2000],
                    sha256="",
                )
            )
    return pending
