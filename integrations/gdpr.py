"""GDPR erasure of what integrations keep: webhook delivery payloads (ticket subjects, message
bodies) and replayable API answers (Idempotency-Key records) about the customer."""

from __future__ import annotations

from django.db.models import Q

from .models import IdempotencyRecord, WebhookDelivery


def on_customer_erasing(
    sender, *, customer_ids: list[int], ticket_ids: list[int], message_ids: list[int], **kwargs
) -> dict[str, int]:
    about = (
        Q(payload__data__customer_id__in=customer_ids)
        | Q(payload__data__ticket_id__in=ticket_ids)
        | Q(payload__data__id__in=ticket_ids, event__startswith="ticket.")
        | Q(payload__data__id__in=message_ids, event__startswith="message.")
    )
    scrubbed = 0
    for delivery in WebhookDelivery.objects.filter(about).only("pk", "payload", "event"):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            payload={"event": delivery.event, "created_at": delivery.payload.get("created_at"), "erased": True}
        )
        scrubbed += 1
    replays = (
        Q(response_body__customer__id__in=customer_ids)
        | Q(response_body__id__in=customer_ids, path__startswith="/api/v1/customers/")
        | Q(response_body__id__in=ticket_ids, path__startswith="/api/v1/tickets/")
        | Q(response_body__ticket__in=ticket_ids)
    )
    deleted, _ = IdempotencyRecord.objects.filter(replays).delete()
    return {"webhook_payloads": scrubbed, "idempotency_records": deleted}
