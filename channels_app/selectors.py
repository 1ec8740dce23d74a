"""Reads for the channels side of the desk: dead letters, web-chat invitation measures."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Q, QuerySet

from .models import ChatInvitation, RawInbound

DEAD_LETTER_STATUSES = (RawInbound.Status.FAILED, RawInbound.Status.IGNORED)


def dead_letters(*, user, status: str = RawInbound.Status.FAILED) -> QuerySet[RawInbound]:
    """Inbound deliveries that did not become a message (failed) or were kept aside
    (ignored: bounces, unmatched delivery reports, loops, repeats), newest first.
    Staff only; the raw bytes are not loaded."""
    if not (user.is_authenticated and user.is_staff):
        return RawInbound.objects.none()
    if status not in DEAD_LETTER_STATUSES:
        status = RawInbound.Status.FAILED
    return (
        RawInbound.objects.filter(status=status)
        .select_related("inbox", "message")
        .defer("payload")
        .order_by("-created_at", "-id")
    )


def dead_letter_get(*, user, pk: int) -> RawInbound | None:
    if not (user.is_authenticated and user.is_staff):
        return None
    return RawInbound.objects.filter(pk=pk).select_related("inbox").first()


def dead_letter_counts(*, user) -> dict[str, int]:
    from django.db.models import Count

    if not (user.is_authenticated and user.is_staff):
        return {}
    rows = RawInbound.objects.filter(status__in=DEAD_LETTER_STATUSES).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


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
