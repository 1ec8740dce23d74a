"""Provider media (MMS, WhatsApp/Messenger/Telegram files) fetched after ingest."""

from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction

from tickets.models import Attachment, attachment_path
from tickets.scanning import attachment_stored


class MediaError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def fetch_attachment_media(attachment_id: int) -> str:
    att = Attachment.objects.select_related("message__inbox").filter(pk=attachment_id).first()
    if att is None:
        return "missing"
    if att.sha256:
        return "done"  # already fetched: idempotent
    inbox = att.message.inbox
    content, content_type = inbox.adapter.fetch_media(inbox, att.source_url)
    digest = hashlib.sha256(content).hexdigest()
    with transaction.atomic():
        att = Attachment.objects.select_for_update().get(pk=attachment_id)
        if att.sha256:
            return "done"
        att.sha256 = digest
        path = attachment_path(att, att.filename)
        if not default_storage.exists(path):
            default_storage.save(path, ContentFile(content))
        att.file.name = path
        att.size = len(content)
        if content_type:
            att.content_type = content_type[:255]
        att.save()
        attachment_stored(att)
    return "done"


def fetch_handler(task) -> str:
    """Outbox handler for `fetch_media` rows: a failure on our side (storage, network)
    is retried by the outbox; a permanent one from the provider is recorded and ends."""
    import logging

    from outbox.services import Retry

    try:
        return fetch_attachment_media(task.object_id)
    except MediaError as exc:
        if exc.permanent:
            logging.getLogger(__name__).warning("media for attachment %s cannot be fetched: %s", task.object_id, exc)
            return "failed"
        raise Retry(str(exc), countdown=min(600, 10 * 2 ** max(0, task.attempts - 1))) from exc
