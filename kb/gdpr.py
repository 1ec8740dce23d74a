"""GDPR for the knowledge base: deflections remember what a signed-in portal customer searched."""

from __future__ import annotations

from .models import Deflection


def on_customer_exporting(sender, *, customer_ids: list[int], **kwargs) -> dict:
    rows = Deflection.objects.filter(customer_id__in=customer_ids).select_related("article").order_by("created_at")
    return {
        "activity": [
            {"kind": "kb_deflection", "article": d.article.title, "query": d.query, "created_at": d.created_at}
            for d in rows
        ]
    }


def on_customer_erasing(sender, *, customer_ids: list[int], **kwargs) -> dict[str, int]:
    # The row stays (the deflection rate is a measure); who it was and what they typed go.
    return {"kb_deflections": Deflection.objects.filter(customer_id__in=customer_ids).update(customer=None, query="")}
