from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AgentProfile(models.Model):
    class Status(models.TextChoices):
        AVAILABLE = "available", _("Available")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    channels = models.JSONField(default=list, blank=True, help_text="Channels the agent is skilled for; empty = all.")
    max_concurrent = models.PositiveIntegerField(default=20)

    def __str__(self) -> str:
        return f"{self.user} ({self.status})"


class RoutingConfig(models.Model):
    """How a team's (or an inbox's) new tickets are assigned. An inbox's config wins."""

    class Strategy(models.TextChoices):
        MANUAL = "manual", _("Manual")
        ROUND_ROBIN = "round_robin", _("Round-robin")
        LEAST_LOADED = "least_loaded", _("Least loaded")

    team = models.OneToOneField("tickets.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="routing")
    inbox = models.OneToOneField(
        "tickets.Inbox", null=True, blank=True, on_delete=models.CASCADE, related_name="routing"
    )
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.MANUAL)
    last_assigned = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.team or self.inbox}: {self.strategy}"


class Rule(models.Model):
    class Trigger(models.TextChoices):
        TICKET_CREATED = "ticket_created", _("Ticket created")
        MESSAGE_RECEIVED = "message_received", _("Message received")
        TICKET_UPDATED = "ticket_updated", _("Ticket updated")

    name = models.CharField(max_length=100)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    conditions = models.JSONField(
        default=dict, blank=True,
        help_text='{"channel": ["sms"], "inbox": [1], "keywords": ["refund"], "organization": 3, '
                  '"customer_attributes": {"plan": "gold"}, "business_hours": true}',
    )  # fmt: skip
    actions = models.JSONField(
        default=dict, help_text='{"team": 2, "agent": 5, "priority": "high", "tags": ["vip"], "reply": "Thanks, …"}'
    )
    position = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name
