"""Template context for every desk page: the bell's unread count, computed only when a
template asks for it (one COUNT on an index)."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject


def desk(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}

    def unread() -> int:
        from .notifications import notifications_unread_count

        return notifications_unread_count(user=user)

    return {"bell_unread": SimpleLazyObject(unread)}
