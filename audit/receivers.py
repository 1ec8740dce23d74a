"""Signal receivers that feed the audit log for changes made outside our services:
Django's sign-in signals, user rights and group (role) changes, team membership, customer
deletions and inbox settings, whichever entry point (desk, admin, API, command) made them.

The audit core (models, services) depends on nothing but Django; this module is the one
place that observes other apps, looked up lazily by label so no app has to import audit.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from . import services

USER_FLAGS = ("is_staff", "is_superuser", "is_active")
# Inbox config keys that are the poller's bookkeeping, not settings somebody changed.
INBOX_STATE_KEYS = frozenset({"imap_last_uid", "imap_uidvalidity"})
INBOX_FIELDS = ("transport", "continuity_window", "default_team_id", "is_active", "kind", "name")


def connect() -> None:
    user_model = get_user_model()
    user_logged_in.connect(_logged_in, dispatch_uid="audit.logged_in")
    user_login_failed.connect(_login_failed, dispatch_uid="audit.login_failed")
    user_logged_out.connect(_logged_out, dispatch_uid="audit.logged_out")
    pre_save.connect(_user_pre_save, sender=user_model, dispatch_uid="audit.user_pre_save")
    post_save.connect(_user_post_save, sender=user_model, dispatch_uid="audit.user_post_save")
    m2m_changed.connect(_user_groups, sender=user_model.groups.through, dispatch_uid="audit.user_groups")
    team = apps.get_model("tickets", "Team")
    m2m_changed.connect(_team_members, sender=team.members.through, dispatch_uid="audit.team_members")
    customer = apps.get_model("customers", "Customer")
    post_delete.connect(_customer_deleted, sender=customer, dispatch_uid="audit.customer_deleted")
    webhook = apps.get_model("integrations", "WebhookSubscription")
    post_save.connect(_webhook_saved, sender=webhook, dispatch_uid="audit.webhook_saved")
    post_delete.connect(_webhook_deleted, sender=webhook, dispatch_uid="audit.webhook_deleted")
    inbox = apps.get_model("tickets", "Inbox")
    pre_save.connect(_inbox_pre_save, sender=inbox, dispatch_uid="audit.inbox_pre_save")
    post_save.connect(_inbox_post_save, sender=inbox, dispatch_uid="audit.inbox_post_save")


# --- sign-in -------------------------------------------------------------------------


def _logged_in(sender, request, user, **kwargs) -> None:
    services.signed_in(user=user, request=request)


def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    services.sign_in_failed(username=str(credentials.get("username", "")), request=request)


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        services.signed_out(user=user, request=request)


# --- user rights and groups --------------------------------------------------------


def _user_pre_save(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or kwargs.get("raw"):
        return
    if update_fields is not None and not set(update_fields) & set(USER_FLAGS):
        return  # e.g. last_login on every sign-in
    old = sender.objects.filter(pk=instance.pk).values(*USER_FLAGS).first()
    instance._audit_old_flags = old


def _user_post_save(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    if created:
        old = dict.fromkeys(USER_FLAGS)
    else:
        old = getattr(instance, "_audit_old_flags", None)
        instance._audit_old_flags = None
        if old is None:
            return
    changes = {
        f: [old[f], getattr(instance, f)]
        for f in USER_FLAGS
        if old[f] != getattr(instance, f) and not (created and f == "is_active")
    }
    if created and not (instance.is_staff or instance.is_superuser):
        return  # a new plain user is not a rights change
    if changes:
        services.user_flags_changed(user=instance, changes=changes)


def _names(model, pk_set) -> list[str]:
    if not pk_set:
        return []
    objs = model.objects.filter(pk__in=pk_set)
    if hasattr(model, "USERNAME_FIELD"):
        return [str(u.get_username()) for u in objs]
    return [str(o) for o in objs]


def _m2m_diff(action: str, instance, model, pk_set, field: str) -> tuple[list[str], list[str]] | None:
    """(added, removed) names for a change, or None for the pre_/irrelevant actions.
    `pre_clear` remembers what a clear removes, since `post_clear` has no pk_set."""
    if action == "pre_clear":
        instance._audit_cleared = list(getattr(instance, field).all())
        return None
    if action == "post_add":
        return _names(model, pk_set), []
    if action == "post_remove":
        return [], _names(model, pk_set)
    if action == "post_clear":
        cleared = getattr(instance, "_audit_cleared", [])
        instance._audit_cleared = []
        return [], [str(o.get_username() if hasattr(o, "get_username") else o) for o in cleared]
    return None


def _user_groups(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    user_model = get_user_model()
    if reverse:  # group.user_set.add(...): one record per user
        if action in ("post_add", "post_remove") and pk_set:
            for user in user_model.objects.filter(pk__in=pk_set):
                names = [str(instance)]
                services.user_groups_changed(
                    user=user,
                    added=names if action == "post_add" else [],
                    removed=names if action != "post_add" else [],
                )
        elif action == "pre_clear":
            for user in instance.user_set.all():
                services.user_groups_changed(user=user, added=[], removed=[str(instance)])
        return
    diff = _m2m_diff(action, instance, model, pk_set, "groups")
    if diff and (diff[0] or diff[1]):
        services.user_groups_changed(user=instance, added=diff[0], removed=diff[1])


def _team_members(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    if reverse:  # user.teams.add(team…): one record per team
        if action in ("post_add", "post_remove") and pk_set:
            for team in model.objects.filter(pk__in=pk_set):
                names = [instance.get_username()]
                services.team_members_changed(
                    team=team,
                    added=names if action == "post_add" else [],
                    removed=names if action != "post_add" else [],
                )
        elif action == "pre_clear":
            for team in instance.teams.all():
                services.team_members_changed(team=team, added=[], removed=[instance.get_username()])
        return
    diff = _m2m_diff(action, instance, model, pk_set, "members")
    if diff and (diff[0] or diff[1]):
        services.team_members_changed(team=instance, added=diff[0], removed=diff[1])


# --- customers ------------------------------------------------------------------------


def _customer_deleted(sender, instance, **kwargs) -> None:
    services.customer_deleted(customer_id=instance.pk)


# --- outgoing webhooks ----------------------------------------------------------------------


def _webhook_saved(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw:
        services.webhook_changed(subscription=instance, created=True, actor=instance.created_by)


def _webhook_deleted(sender, instance, **kwargs) -> None:
    services.webhook_changed(subscription=instance, created=False)


# --- inbox settings -----------------------------------------------------------------------


def _inbox_pre_save(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        instance._audit_old = None
        return
    instance._audit_old = sender.objects.filter(pk=instance.pk).first()


def _inbox_post_save(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    old = getattr(instance, "_audit_old", None)
    instance._audit_old = None
    if old is None and not created:
        return
    changed: dict[str, list] = {}
    old_config = dict(old.config) if old else {}
    for key in sorted(set(old_config) | set(instance.config or {})):
        if key in INBOX_STATE_KEYS:
            continue
        before, after = old_config.get(key), (instance.config or {}).get(key)
        if before != after:
            changed[key] = [before, after]
    for field in INBOX_FIELDS:
        before = getattr(old, field) if old else None
        after = getattr(instance, field)
        if before != after:
            changed[field] = [str(before) if before is not None else None, str(after) if after is not None else None]
    old_secrets = dict(old.secrets) if old else {}
    new_secrets = dict(instance.secrets or {})
    secrets_changed = [k for k in set(old_secrets) | set(new_secrets) if old_secrets.get(k) != new_secrets.get(k)]
    if created or changed or secrets_changed:
        services.inbox_settings_changed(
            inbox=instance, changed=changed, secrets_changed=secrets_changed, created=created
        )
