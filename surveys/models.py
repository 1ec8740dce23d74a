from django.db import models


class SurveyResponse(models.Model):
    """One survey per ticket: sent when it is solved, answered with one click (CSAT 1–5),
    an optional comment and the effort question (CES 1–7); changeable for 7 days."""

    ticket = models.OneToOneField("tickets.Ticket", on_delete=models.CASCADE, related_name="survey")
    token_hash = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=16)
    sent_at = models.DateTimeField(auto_now_add=True)
    csat = models.PositiveSmallIntegerField(null=True, blank=True)
    ces = models.PositiveSmallIntegerField(null=True, blank=True)
    comment = models.TextField(blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"survey of #{self.ticket_id}"
