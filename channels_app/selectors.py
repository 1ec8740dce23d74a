"""Reads for channels: web-chat invitation measures (in the style of sla.metrics)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q

from .models import ChatInvitation


def invitation_measures(*, start: datetime, end: datetime) -> list[dict]:
    """Proactive chat invitations shown in [start, end), per rule: shown, accepted,
    ignored, still open (no decision yet), and the acceptance rate of decided ones."""
    rows = (
        ChatInvitation.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("rule")
        .annotate(
            shown=Count("id"),
            accepted=Count("id", filter=Q(outcome=ChatInvitation.Outcome.ACCEPTED)),
            ignored=Count("id", filter=Q(outcome=ChatInvitation.Outcome.IGNORED)),
        )
        .order_by("rule")
    )
    result = []
    for row in rows:
        decided = row["accepted"] + row["ignored"]
        result.append(
            {
                **row,
                "open": row["shown"] - decided,
                "acceptance_rate": round(row["accepted"] / decided, 3) if decided else None,
            }
        )
    return result
