"""Reads for the channels side of the desk: dead letters, web-chat invitation measures,
the inbox a provider webhook names."""

from __future__ import annotations

import copy
import time
from datetime import datetime

from django.db.models import Count, Q, QuerySet

from .models import ChatInvitation, Inbox, RawInbound

# A flood of deliveries names the same inbox every time: each process remembers it briefly.
WEBHOOK_INBOX_SECONDS = 5.0
_webhook_inboxes: dict[int, tuple[float, Inbox | None]] = {}


def webhook_inbox(inbox_id: int) -> Inbox | None:
    """The active inbox `inbox_id`, or None. Remembered by this process for
    WEBHOOK_INBOX_SECONDS: a change saved in this process is seen at once (`inbox_forget`),
    one saved elsewhere — a rotated token, a deactivated inbox — within that time."""
    now = time.monotonic()
    hit = _webhook_inboxes.get(inbox_id)
    if hit is None or now - hit[0] >= WEBHOOK_INBOX_SECONDS:
        if len(_webhook_inboxes) >= 1000:  # ids probed at random: stay small
            _webhook_inboxes.clear()
        hit = (now, Inbox.objects.filter(pk=inbox_id, is_active=True).first())
        _webhook_inboxes[inbox_id] = hit
    return copy.copy(hit[1])  # a caller may change its copy; the remembered one stays as read


def inbox_forget(sender=None, instance=None, **kwargs) -> None:
    """post_save / post_delete of an Inbox: forget what this process remembered of it."""
    if instance is not None:
        _webhook_inboxes.pop(instance.pk, None)


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
