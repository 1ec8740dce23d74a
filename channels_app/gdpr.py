"""GDPR erasure of what the channels keep: raw inbound payloads (whole emails, webhook bodies)."""

from __future__ import annotations

from .models import RawInbound


def on_customer_erasing(sender, *, message_ids: list[int], **kwargs) -> dict[str, int]:
    deleted, _ = RawInbound.objects.filter(message_id__in=message_ids).delete()
    return {"raw_inbound": deleted}
