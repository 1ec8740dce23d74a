"""Reads of the audit log, and who may read it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import QuerySet

from cxdesk.errors import ApplicationError

from .models import AuditEntry


def can_view_audit(user) -> bool:
    """Admins only (the admin role or a superuser). The one place that decides."""
    from accounts.roles import is_admin

    return is_admin(user)


def _day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApplicationError(
            f"{name} must be a date (YYYY-MM-DD)", code="invalid", fields={name: ["not a date (YYYY-MM-DD)"]}
        ) from None


def audit_entries(
    *,
    viewer,
    actor: str = "",
    action: str = "",
    object_type: str = "",
    object_id: str = "",
    since: str = "",
    until: str = "",
) -> QuerySet[AuditEntry]:
    """Entries newest first, filtered. `actor` is a user id or a username; `since`/`until`
    are days (inclusive) in UTC. Bad filters are an ApplicationError (400)."""
    if not can_view_audit(viewer):
        raise ApplicationError("only administrators can read the audit log", code="permission_denied", status=403)
    qs = AuditEntry.objects.all()
    if actor:
        qs = qs.filter(actor_id=int(actor)) if actor.isdecimal() and len(actor) < 19 else qs.filter(actor_label=actor)
    if action:
        if action not in AuditEntry.Action.values:
            raise ApplicationError(
                f"unknown action {action!r}", code="invalid", fields={"action": [f"one of {AuditEntry.Action.values}"]}
            )
        qs = qs.filter(action=action)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if since:
        qs = qs.filter(created_at__gte=datetime.combine(_day(since, "since"), time.min, tzinfo=UTC))
    if until:
        qs = qs.filter(created_at__lt=datetime.combine(_day(until, "until") + timedelta(days=1), time.min, tzinfo=UTC))
    return qs.order_by("-created_at", "-id")
