"""Staff roles: agent, supervisor, admin — Django Groups of those names.

Ask here, never check group names elsewhere:

    from accounts.roles import user_role, is_admin, is_supervisor
    is_supervisor(user)   # supervisor OR admin: sees every ticket, every inbox
    is_admin(user)        # admin (or superuser): manages the desk (audit, settings)

A staff user without a role group is an *agent* (least privilege); a superuser is an
admin whatever its groups. Non-staff users have no role. A user in several role groups
has the highest. Role changes are `user.groups` m2m changes (`m2m_changed` on
`User.groups.through`), so a listener (the audit log) sees them; `accounts.services.role_set`
is the one writer the desk and commands use.
"""

from __future__ import annotations

AGENT = "agent"
SUPERVISOR = "supervisor"
ADMIN = "admin"
ROLES = (AGENT, SUPERVISOR, ADMIN)  # lowest to highest
_RANK = {name: i for i, name in enumerate(ROLES)}
_CACHE_ATTR = "_cxdesk_role"


def user_role(user) -> str | None:
    """`"agent"`, `"supervisor"`, `"admin"`, or None for anyone who is not active staff.
    One query the first time per user object, then cached on it."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active or not user.is_staff:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, _CACHE_ATTR, None)
    if cached is not None:
        return cached
    names = list(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    role = max(names, key=_RANK.__getitem__) if names else AGENT
    setattr(user, _CACHE_ATTR, role)
    return role


def role_remember(user, group_name: str | None) -> None:
    """Keep on `user` the role its highest role group gives (`group_name`, None for none),
    read by a query that asked for more at once (`cxdesk.middleware.DeskUserMiddleware`):
    `user_role` then asks nothing. Staff checks and the superuser rule still apply there."""
    setattr(user, _CACHE_ATTR, group_name if group_name in _RANK else AGENT)


def role_groups() -> dict[int, str]:
    """{user id: the name of their highest role group} for every user in one (one query):
    for `role_remember` on user objects kept across events (the desk's websockets, which ask
    it through `cxdesk.memo.kept`: one query a second for all the sockets of a process)."""
    from django.contrib.auth.models import Group

    roles: dict[int, str] = {}
    for user_id, name in Group.objects.filter(name__in=ROLES).values_list("user__pk", "name"):
        if user_id is not None and _RANK[name] > _RANK.get(roles.get(user_id, ""), -1):
            roles[user_id] = name
    return roles


def role_rank_case():
    """SQL for a role group's rank (higher: more rights), to pick a user's highest."""
    from django.db.models import Case, IntegerField, Value, When

    return Case(*[When(name=name, then=Value(rank)) for name, rank in _RANK.items()], output_field=IntegerField())


def role_from_groups(user) -> str | None:
    """`user_role` from `user.groups.all()` — use with `prefetch_related("groups")` in lists."""
    if not user.is_active or not user.is_staff:
        return None
    if user.is_superuser:
        return ADMIN
    names = [g.name for g in user.groups.all() if g.name in _RANK]
    return max(names, key=_RANK.__getitem__) if names else AGENT


def forget_role(user) -> None:
    """Drop the cached role (after a change to the user's groups)."""
    if hasattr(user, _CACHE_ATTR):
        delattr(user, _CACHE_ATTR)


def is_supervisor(user) -> bool:
    """Supervisor or admin: sees every team's tickets."""
    return user_role(user) in (SUPERVISOR, ADMIN)


def is_admin(user) -> bool:
    return user_role(user) == ADMIN
