from django.conf import settings
from django.db import models

from tickets.models import Channel


def _default_hours():
    return {str(d): [["09:00", "17:00"]] for d in range(5)}


class BusinessCalendar(models.Model):
    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="UTC")
    hours = models.JSONField(default=_default_hours, help_text='Weekday (0 = Monday) → [["09:00", "17:00"], …]')
    holidays = models.JSONField(default=list, blank=True, help_text='["2026-12-25", …]')
    teams = models.ManyToManyField("tickets.Team", blank=True, related_name="calendars")

    def __str__(self) -> str:
        return self.name


class SlaPolicy(models.Model):
    """Targets by channel × priority (and optionally organisation); the most specific match wins."""

    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True, help_text="Blank: any channel.")
    priority = models.CharField(max_length=16, blank=True, help_text="Blank: any priority.")
    organization = models.ForeignKey("customers.Organization", null=True, blank=True, on_delete=models.CASCADE)
    first_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()
    calendar = models.ForeignKey(
        BusinessCalendar, null=True, blank=True, on_delete=models.SET_NULL, help_text="Blank: calendar hours."
    )
    escalate_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    escalate_raise_priority = models.BooleanField(default=True)
    escalate_reassign_team = models.ForeignKey(
        "tickets.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "SLA policies"

    def __str__(self) -> str:
        return self.name


class TicketSla(models.Model):
    ticket = models.OneToOneField("tickets.Ticket", on_delete=models.CASCADE, related_name="sla")
    policy = models.ForeignKey(SlaPolicy, on_delete=models.CASCADE)
    started_at = models.DateTimeField()
    first_response_due = models.DateTimeField(null=True, blank=True)
    resolution_due = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    first_response_met_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    first_response_breached_at = models.DateTimeField(null=True, blank=True)
    resolution_breached_at = models.DateTimeField(null=True, blank=True)
    # When the assignee was warned that a target is due soon (once per ticket and target).
    first_response_warned_at = models.DateTimeField(null=True, blank=True)
    resolution_warned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["first_response_due"], name="sla_frt_due_idx"),
            models.Index(fields=["resolution_due"], name="sla_res_due_idx"),
            # The breaches counted for /metrics (cxdesk.metrics): an index of the breached
            # rows only, so a scrape reads them and not one row per ticket ever opened.
            models.Index(
                fields=["first_response_breached_at"],
                condition=models.Q(first_response_breached_at__isnull=False),
                name="sla_frt_breached_idx",
            ),
            models.Index(
                fields=["resolution_breached_at"],
                condition=models.Q(resolution_breached_at__isnull=False),
                name="sla_res_breached_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"SLA of #{self.ticket_id}"
