from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxTask(models.Model):
    """One piece of deferred work: `kind` names the handler, `object_id` (and `payload`)
    what it works on. Claimed with a lease (`claimed_until`) so that exactly one worker
    runs it at a time; a claim that outlives its lease belonged to a dead worker."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=40)
    object_id = models.BigIntegerField(null=True, blank=True)
    ref = models.CharField(max_length=255, blank=True, default="", help_text="A lookup key (a provider message id).")
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    result = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # the sweeper: pending rows by due time
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="outbox_pending_due_idx"),
            models.Index(fields=["kind", "ref"], condition=Q(status="pending"), name="outbox_pending_ref_idx"),
            models.Index(fields=["status", "done_at"], name="outbox_status_done_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}#{self.object_id or self.ref} ({self.status})"
