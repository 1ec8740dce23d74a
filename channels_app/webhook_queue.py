"""Provider webhooks acknowledged once their payload is durable, processed by a worker.

`provider_webhook` (channels_app/webhooks.py) verifies the signature and parses the body in
the request — a forged or malformed delivery is still a 403/400 with nothing stored — then,
for an adapter with `queue_webhooks`, commits ONE row (the raw body, in `RawInbound`) and its
outbox task and answers. The worker re-parses the stored body and ingests it with the same
idempotency as the inline path (a duplicate delivery is still one message). A delivery that
cannot be ingested stays a dead letter, visible in the desk and retryable.

`CXDESK_WEBHOOKS` chooses: "queued" (acknowledge after the raw write) or "inline" (ingest in
the request, acknowledge after the message's commit). bench/webhook_ingest.py measures both.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.http.request import RawPostDataException
from django.utils import timezone

from cxdesk.errors import ApplicationError
from outbox.services import enqueue

from .models import Inbox, RawInbound
from .services import ingest, raw_inbound_failed, status_apply
from .types import WebhookError

log = logging.getLogger(__name__)

SOURCE = "webhook"


def queued(adapter) -> bool:
    return settings.CXDESK_WEBHOOKS == "queued" and getattr(adapter, "queue_webhooks", False)


@transaction.atomic
def webhook_store(*, request: HttpRequest, inbox: Inbox) -> RawInbound:
    """The delivery as received (body and content type) and the task that processes it."""
    content_type = request.content_type or "application/octet-stream"
    try:
        body = request.body
    except RawPostDataException:  # a form already read into request.POST (the input checks)
        body = urlencode(list(request.POST.lists()), doseq=True).encode()
        content_type = "application/x-www-form-urlencoded"
    record = RawInbound.objects.create(
        inbox=inbox,
        source=SOURCE,
        content_type=content_type[:100],
        payload=zlib.compress(body, 1),
        sha256=hashlib.sha256(body).hexdigest(),
    )
    enqueue("webhook_process", object_id=record.pk)
    return record


def _request(record: RawInbound) -> HttpRequest:
    """An HttpRequest carrying the stored body, for the adapter's parser."""
    body = record.raw
    request = HttpRequest()
    request.method = "POST"
    request.META = {"CONTENT_TYPE": record.content_type, "CONTENT_LENGTH": str(len(body))}
    request.content_type = record.content_type
    request._body = body  # what `request.body` returns (JSON providers read it)
    if record.content_type == "application/x-www-form-urlencoded":  # Twilio posts a form
        request.POST = QueryDict(body, encoding="utf-8")
    return request


def webhook_process(*, record: RawInbound) -> int:
    """Ingest a stored delivery (the outbox task, and the dead-letter retry). Returns the
    number of messages stored. Bad content makes a dead letter; a database or broker outage
    raises, and the outbox retries."""
    if record.status == RawInbound.Status.PROCESSED:
        return 0
    if record.inbox is None:
        raw_inbound_failed(raw=record, error="its inbox was deleted")
        return 0
    inbox = record.inbox
    try:
        request = _request(record)
        adapter = inbox.adapter
        items = adapter.parse(request, inbox)
        statuses = adapter.parse_status(request, inbox)
        with transaction.atomic():
            results = []
            for item in items:
                item.raw_inbound_id = record.pk
                results.append(ingest(item))
            for update in statuses:
                status_apply(inbox=inbox, update=update)
            # A repeat of a stored message (or statuses only) is done too, pointing at what it repeated.
            RawInbound.objects.filter(
                pk=record.pk, status__in=(RawInbound.Status.PENDING, RawInbound.Status.FAILED)
            ).update(
                status=RawInbound.Status.PROCESSED,
                message=results[-1].message if results else None,
                processed_at=timezone.now(),
                error="",
            )
        return sum(not r.duplicate for r in results)
    except (WebhookError, ApplicationError, LookupError, TypeError, ValueError, KeyError) as exc:
        raw_inbound_failed(raw=record, error=f"{type(exc).__name__}: {exc}")
        return 0


def webhook_process_handler(task) -> str:
    """Outbox handler for `webhook_process` rows."""
    record = RawInbound.objects.select_related("inbox").filter(pk=task.object_id).first()
    if record is None:
        return "gone"
    return str(webhook_process(record=record))
