"""Content-addressed attachment storage: bytes are written once under their sha256."""

from __future__ import annotations

import hashlib
import mimetypes
import re

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
