from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from tickets.models import Channel, Inbox  # noqa: F401  (they live with tickets; kept importable from here)


class RawInbound(models.Model):
    """Every inbound delivery as received, stored before it is processed. One that
    fails to parse or ingest stays here as a dead letter, visible and retryable."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROCESSED = "processed", _("Processed")
        FAILED = "failed", _("Failed")
        IGNORED = "ignored", _("Ignored")

    inbox = models.ForeignKey(Inbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="raw_inbound")
    source = models.CharField(max_length=32, help_text="ingest_mail, api, imap, anymail, webhook…")
    content_type = models.CharField(max_length=100, default="message/rfc822")
    payload = models.BinaryField(help_text="zlib-compressed raw bytes")
    # Not indexed: nothing looks a delivery up by it, and every acknowledgement would pay.
    sha256 = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    message = models.ForeignKey(
        "tickets.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    request_id = models.CharField(max_length=64, blank=True, help_text="the request that stored it (its log lines)")
    # Which drainer takes it: a hash of its first sender (channels_app/webhook_queue.py,
    # `lane_of`), so one sender's deliveries go to one drainer. Empty: any drainer.
    lane = models.SmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="rawinbound_status_idx"),
            # For a message's deletion (SET NULL here); a delivery is acknowledged before it
            # has a message, so the acknowledgement's INSERT does not touch this index.
            models.Index(fields=["message"], condition=models.Q(message__isnull=False), name="rawinbound_message_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.source} #{self.pk} ({self.status})"

    @property
    def raw(self) -> bytes:
        import zlib

        return zlib.decompress(bytes(self.payload))


class AgentPhone(models.Model):
    """Where a call for this agent rings: a phone number (E.164) and/or a SIP address.
    An agent without one is never rung (the voicemail or the team takes the call)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_phone")
    number = models.CharField(max_length=32, blank=True, help_text="E.164, e.g. +48600100200.")
    sip_uri = models.CharField(max_length=255, blank=True, help_text="sip:ana@pbx.example.com (optional).")

    def __str__(self) -> str:
        return f"{self.user}: {self.number or self.sip_uri}"


class Call(models.Model):
    """One phone call (idempotent on the provider's call id). Its timeline entry is
    `message` (channel voice); provider callbacks move `status` forward only."""

    class Status(models.TextChoices):
        RINGING = "ringing", _("Ringing")
        IN_PROGRESS = "in-progress", _("In progress")
        COMPLETED = "completed", _("Completed")
        BUSY = "busy", _("Busy")
        NO_ANSWER = "no-answer", _("No answer")
        FAILED = "failed", _("Failed")
        CANCELED = "canceled", _("Canceled")

    # Forward only: a late "ringing" never undoes "in-progress"; an end is final.
    STATUS_RANK = {
        "ringing": 0,
        "in-progress": 1,
        "completed": 2,
        "busy": 2,
        "no-answer": 2,
        "failed": 2,
        "canceled": 2,
    }
    ENDED = ("completed", "busy", "no-answer", "failed", "canceled")

    class Route(models.TextChoices):
        AGENT = "agent", _("The agent who owns the open ticket")
        TEAM = "team", _("The team")
        QUEUE = "queue", _("A queue")
        VOICEMAIL = "voicemail", _("Voicemail")

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="calls")
    call_sid = models.CharField(max_length=64)
    direction = models.CharField(max_length=16, default="inbound")
    from_number = models.CharField(max_length=64, blank=True)
    to_number = models.CharField(max_length=64, blank=True)
    message = models.OneToOneField("tickets.Message", on_delete=models.CASCADE, related_name="call")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RINGING)
    route = models.CharField(max_length=16, choices=Route.choices, blank=True)
    rung = models.JSONField(default=list, blank=True, help_text="User ids rung for this call.")
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    started_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Talk time in seconds.")
    voicemail = models.BooleanField(default=False)
    recording_sid = models.CharField(max_length=64, blank=True)
    transcript = models.TextField(blank=True)
    missed_recorded = models.BooleanField(default=False, help_text="The missed-call event was written.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["inbox", "call_sid"], name="call_inbox_sid_uniq")]
        indexes = [models.Index(fields=["started_at"], name="call_started_idx")]

    def __str__(self) -> str:
        return f"call {self.call_sid} ({self.status})"

    @property
    def answered(self) -> bool:
        return self.answered_at is not None


class ChatVisitor(models.Model):
    """One browser talking to a web-chat inbox (the widget's signed visitor token names
    it). Anonymous until it sends a message (then it has a `webchat` identity and a
    customer) or identifies (a verified email/phone, or a tracked email link)."""

    inbox = models.ForeignKey(Inbox, on_delete=models.CASCADE, related_name="chat_visitors")
    visitor_id = models.CharField(max_length=64, unique=True)
    identity = models.ForeignKey(
        "customers.Identity", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    name = models.CharField(max_length=200, blank=True)
    # An address the visitor gave that belongs to another customer: waits for its code.
    pending_address = models.CharField(max_length=320, blank=True)
    verified = models.BooleanField(default=False, help_text="Identified by a code or a tracked email link.")
    came_from_message = models.ForeignKey(
        "tickets.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    language = models.CharField(max_length=8, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"visitor {self.visitor_id[:8]} ({self.inbox_id})"


class ChatInvitation(models.Model):
    """A proactive invitation the widget showed, and what the visitor did with it."""

    class Outcome(models.TextChoices):
        SHOWN = "shown", _("Shown")
        ACCEPTED = "accepted", _("Accepted")
        IGNORED = "ignored", _("Ignored")

    visitor = models.ForeignKey(ChatVisitor, on_delete=models.CASCADE, related_name="invitations")
    rule = models.CharField(max_length=32, help_text="email_link, time_on_page, returning")
    url = models.CharField(max_length=2000, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.SHOWN)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="chatinvitation_created_idx")]

    def __str__(self) -> str:
        return f"{self.rule} invitation ({self.outcome})"
