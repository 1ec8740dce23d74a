"""Template context for every desk page: the bell's unread count, computed only when a
template asks for it (one COUNT on an index), and the agent's routing status."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject


def desk(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}

    def unread() -> int:
        from .notifications import notifications_unread_count

        return notifications_unread_count(user=user)

    def agent_status() -> str:
        status = getattr(user, "desk_agent_status", None)  # read already (cxdesk.middleware.DeskUserMiddleware)
        if status is None:
            profile = getattr(user, "agent_profile", None)  # reverse one-to-one: None when missing
            status = profile.status if profile is not None else ""
        return status

    return {"bell_unread": SimpleLazyObject(unread), "agent_status": SimpleLazyObject(agent_status)}
