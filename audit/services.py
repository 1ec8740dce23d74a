"""The only writer of the audit log: `record()` and one function per action kind.

Callers pass what happened; the actor, API key, IP and user agent come from the request
being served (see `audit.context`) unless given. Never pass secret values or message
content in `data`: names of changed settings, ids and counts only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import models
from django.http import HttpRequest

from .context import current_request
from .models import AuditEntry

Action = AuditEntry.Action


def _clean(value: Any) -> Any:
    """PostgreSQL refuses NUL in text and JSON: strip it from anything a client sent."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    ip = (request.META.get("REMOTE_ADDR") or "").strip()
    return ip or None


def record(
    action: str,
    *,
    actor: Any = None,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: Any = "",
    data: dict[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> AuditEntry:
    request = request or current_request()
    if actor is None and request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            actor = user
    api_key = getattr(request, "auth", None) if request is not None else None
    if api_key is not None and not hasattr(api_key, "prefix"):
        api_key = None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = obj.pk
    return AuditEntry.objects.create(
        action=action,
        actor=actor if actor is not None and actor.pk else None,
        actor_label=_clean(actor.get_username() if actor is not None else "system")[:150],
        api_key_id=api_key.pk if api_key is not None else None,
        api_key_label=(f"{api_key.name} (cxk_{api_key.prefix}…)" if api_key is not None else "")[:120],
        object_type=object_type[:64],
        object_id=str(object_id if object_id is not None else "")[:64],
        data=_clean(data or {}),
        ip=_client_ip(request),
        user_agent=_clean(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300],
    )


# --- sign-in ---------------------------------------------------------------------


def signed_in(*, user, request: HttpRequest | None) -> AuditEntry:
    return record(Action.SIGN_IN, actor=user, obj=user, request=request)


def sign_in_failed(*, username: str, request: HttpRequest | None) -> AuditEntry:
    return record(Action.SIGN_IN_FAILED, object_type="auth.user", data={"username": username[:150]}, request=request)


def signed_out(*, user, request: HttpRequest | None) -> AuditEntry:
    return record(Action.SIGN_OUT, actor=user, obj=user, request=request)


# --- roles and teams ---------------------------------------------------------------


def user_flags_changed(*, user, changes: dict[str, list[bool]], actor=None) -> AuditEntry:
    """`changes`: {"is_staff": [old, new], …}."""
    return record(Action.USER_FLAGS, actor=actor, obj=user, data={"username": user.get_username(), "changes": changes})


def user_groups_changed(*, user, added: Iterable[str], removed: Iterable[str], actor=None) -> AuditEntry:
    return record(
        Action.USER_GROUPS,
        actor=actor,
        obj=user,
        data={"username": user.get_username(), "added": sorted(added), "removed": sorted(removed)},
    )


def team_members_changed(*, team, added: Iterable[str], removed: Iterable[str], actor=None) -> AuditEntry:
    return record(
        Action.TEAM_MEMBERS,
        actor=actor,
        obj=team,
        data={"team": team.name, "added": sorted(added), "removed": sorted(removed)},
    )


# --- API keys ------------------------------------------------------------------------


def api_key_created(*, key, actor=None) -> AuditEntry:
    return record(
        Action.API_KEY_CREATED,
        actor=actor,
        obj=key,
        data={"name": key.name, "prefix": key.prefix, "scope": key.scope, "owner": key.user.get_username()},
    )


def api_key_revoked(*, key, actor=None) -> AuditEntry:
    return record(
        Action.API_KEY_REVOKED,
        actor=actor,
        obj=key,
        data={"name": key.name, "prefix": key.prefix, "owner": key.user.get_username()},
    )


# --- exports and customers -------------------------------------------------------------


def data_exported(*, what: str, actor=None, params: dict[str, Any] | None = None) -> AuditEntry:
    return record(Action.EXPORT, actor=actor, object_type=what, data={"params": params or {}})


def customer_merged(*, merge, actor=None) -> AuditEntry:
    return record(
        Action.CUSTOMER_MERGED,
        actor=actor,
        object_type="customers.customer",
        object_id=merge.kept_id,
        data={"merge": merge.pk, "kept": merge.kept_id, "other": merge.other_id},
    )


def customer_unmerged(*, merge, actor=None) -> AuditEntry:
    return record(
        Action.CUSTOMER_UNMERGED,
        actor=actor,
        object_type="customers.customer",
        object_id=merge.kept_id,
        data={"merge": merge.pk, "kept": merge.kept_id, "other": merge.other_id},
    )


def customer_deleted(*, customer_id: int, actor=None) -> AuditEntry:
    return record(Action.CUSTOMER_DELETED, actor=actor, object_type="customers.customer", object_id=customer_id)


def customer_exported(*, customer_id: int, counts: dict[str, int], actor=None) -> AuditEntry:
    return record(
        Action.CUSTOMER_EXPORTED,
        actor=actor,
        object_type="customers.customer",
        object_id=customer_id,
        data={"counts": counts},
    )


def customer_erased(*, customer_id: int, counts: dict[str, int], actor=None) -> AuditEntry:
    return record(
        Action.CUSTOMER_ERASED,
        actor=actor,
        object_type="customers.customer",
        object_id=customer_id,
        data={"counts": counts},
    )


def webhook_changed(*, subscription, created: bool, actor=None) -> AuditEntry:
    """An outgoing webhook added or removed: where data goes (never its signing secret;
    the URL without its query string, which may carry a token)."""
    url = subscription.url.split("?", 1)[0].split("#", 1)[0]
    return record(
        Action.WEBHOOK_CREATED if created else Action.WEBHOOK_DELETED,
        actor=actor,
        object_type="integrations.webhooksubscription",
        object_id=subscription.pk,
        data={"url": url[:500], "events": list(subscription.events)},
    )


# --- settings ----------------------------------------------------------------------------


def inbox_settings_changed(
    *, inbox, changed: dict[str, list[Any]], secrets_changed: Iterable[str], created: bool, actor=None
) -> AuditEntry:
    """`changed`: public settings {name: [old, new]}; `secrets_changed`: names only, never values."""
    return record(
        Action.INBOX_SETTINGS,
        actor=actor,
        obj=inbox,
        data={
            "inbox": inbox.name,
            "kind": inbox.kind,
            "created": created,
            "changed": changed,
            "secrets_changed": sorted(secrets_changed),
        },
    )
