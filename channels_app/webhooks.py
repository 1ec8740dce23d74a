"""Public provider webhooks: one generic view, the adapter does the provider part.

verify → parse → ingest (commit) → answer; or, for adapters with `queue_webhooks` when
CXDESK_WEBHOOKS=queued, verify → parse → store the raw delivery (commit) → answer, and a
worker ingests it (channels_app/webhook_queue.py). A 2xx only once the delivery is durable;
a wrong signature is 403 with nothing stored; a malformed body is 400 with a reason;
an event we do not handle is 200 (logged) so the provider stops retrying."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from cxdesk.errors import ApplicationError

from . import webhook_queue
from .selectors import webhook_inbox
from .services import ingest, status_apply
from .types import InboundMessage, WebhookError

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse(
        {"error": {"code": "webhook_rejected" if status == 403 else "bad_request", "message": message}}, status=status
    )


def _check_types(item: InboundMessage) -> None:
    """What an adapter produced from a provider's JSON must have the types ingest relies on."""
    for name in ("text", "html", "subject"):
        if not isinstance(getattr(item, name), str):
            raise WebhookError(f"{name} must be text")
    if not isinstance(item.sender.address, str) or not item.sender.address:
        raise WebhookError("the sender has no usable address")
    if not isinstance(item.sender.display_name, str):
        raise WebhookError("the sender's name must be text")
    if item.provider_message_id is not None and not isinstance(item.provider_message_id, str):
        raise WebhookError("the message id must be text")
    for att in item.attachments:
        if not isinstance(att.filename, str) or not isinstance(att.url, str) or not isinstance(att.content_type, str):
            raise WebhookError("an attachment has fields of unexpected types")


@csrf_exempt
def provider_webhook(request: HttpRequest, route: str, inbox_id: int) -> HttpResponse:
    inbox = webhook_inbox(inbox_id)
    try:
        adapter = inbox.adapter if inbox else None
    except LookupError:
        adapter = None
    if inbox is None or adapter is None or getattr(adapter, "route", adapter.kind) != route:
        return _error(404, f"no active {route} inbox {inbox_id}")
    try:
        if request.method == "GET":
            return adapter.handshake(request, inbox)
        if request.method != "POST":
            return _error(405, "POST only")
        adapter.verify(request, inbox)
        answer = adapter.callback(request, inbox)
        if answer is not None:
            return answer
        inbound = adapter.parse(request, inbox)
        statuses = adapter.parse_status(request, inbox)
        for item in inbound:
            _check_types(item)
    except WebhookError as exc:
        log.warning("%s webhook for inbox %s rejected (%s): %s", route, inbox.pk, exc.status, exc)
        return _error(exc.status, str(exc))
    except ApplicationError as exc:
        log.warning("%s webhook for inbox %s: %s", route, inbox.pk, exc.message)
        return _error(exc.status_code, exc.message)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError) as exc:
        # A signed body of an unexpected shape ("text": 5, "from": "x"): bad input, not a crash.
        log.warning("%s webhook for inbox %s: malformed payload (%s: %s)", route, inbox.pk, type(exc).__name__, exc)
        return _error(400, f"malformed {route} payload: a field has an unexpected type or is missing")
    if (inbound or statuses) and webhook_queue.queued(adapter):
        # Durable; processed by the drainer of its sender's lane.
        webhook_queue.webhook_store(request=request, inbox=inbox, lane=webhook_queue.lane_of(inbound))
        return adapter.acknowledge(request, inbox, [])
    results = []
    try:
        for item in inbound:
            results.append(ingest(item))
    except ApplicationError as exc:
        log.warning("%s webhook for inbox %s: %s", route, inbox.pk, exc.message)
        return _error(exc.status_code, exc.message)
    for update in statuses:
        status_apply(inbox=inbox, update=update)
    if not inbound and not statuses:
        log.info("%s webhook for inbox %s: nothing we handle in this event; ignored", route, inbox.pk)
    return adapter.acknowledge(request, inbox, results)
