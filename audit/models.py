"""The audit log: who did what to which object, from where. Append-only.

Rows are never updated or deleted: `save()` refuses an existing row, `delete()` refuses,
the queryset refuses bulk `update()`/`delete()`, the admin is read-only and on PostgreSQL
a trigger refuses UPDATE and DELETE. The actor and API key are plain ids (no database
foreign key) plus a label, so deleting a user never has to touch the log.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    pass


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("the audit log is append-only")

    def delete(self):
        raise AppendOnlyError("the audit log is append-only")

    _raw_delete = delete


class AuditEntry(models.Model):
    class Action(models.TextChoices):
        SIGN_IN = "auth.sign_in", _("Signed in")
        SIGN_IN_FAILED = "auth.sign_in_failed", _("Sign-in failed")
        SIGN_OUT = "auth.sign_out", _("Signed out")
        USER_FLAGS = "user.flags_changed", _("User rights changed")
        USER_GROUPS = "user.groups_changed", _("User roles (groups) changed")
        TEAM_MEMBERS = "team.members_changed", _("Team members changed")
        API_KEY_CREATED = "api_key.created", _("API key created")
        API_KEY_REVOKED = "api_key.revoked", _("API key revoked")
        EXPORT = "data.exported", _("Data exported")
        CUSTOMER_MERGED = "customer.merged", _("Customers merged")
        CUSTOMER_UNMERGED = "customer.unmerged", _("Customer merge undone")
        CUSTOMER_DELETED = "customer.deleted", _("Customer deleted")
        CUSTOMER_EXPORTED = "customer.exported", _("Customer data exported (GDPR)")
        CUSTOMER_ERASED = "customer.erased", _("Customer erased (GDPR)")
        INBOX_SETTINGS = "inbox.settings_changed", _("Inbox settings changed")
        WEBHOOK_CREATED = "webhook.created", _("Outgoing webhook added")
        WEBHOOK_DELETED = "webhook.deleted", _("Outgoing webhook removed")

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=150, blank=True, help_text="Username at the time, or 'system'.")
    api_key_id = models.BigIntegerField(null=True, blank=True)
    api_key_label = models.CharField(max_length=120, blank=True)
    action = models.CharField(max_length=64, choices=Action.choices)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="audit_created_idx"),
            models.Index(fields=["actor", "-created_at"], name="audit_actor_idx"),
            models.Index(fields=["action", "-created_at"], name="audit_action_idx"),
            models.Index(fields=["object_type", "object_id"], name="audit_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_label or 'system'}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("the audit log is append-only")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("the audit log is append-only")
