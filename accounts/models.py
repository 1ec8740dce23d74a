"""Staff identity beyond Django's User: the TOTP authenticator and recovery codes.

Roles are Django Groups (see `accounts.roles`), teams are `tickets.Team.members`."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TotpDevice(models.Model):
    """One authenticator app per user (RFC 6238, 30 s, 6 digits, SHA-1 — what every app speaks).

    `confirmed` only after the user typed a code from it; `last_step` is the last time step
    accepted, so a code is never accepted twice."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_device")
    secret = models.CharField(max_length=64)
    confirmed = models.BooleanField(default=False)
    last_step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"TOTP for {self.user}"


class RecoveryCode(models.Model):
    """A single-use recovery code, stored as its SHA-256 (the codes are 50-bit random)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "code_hash"], name="recovery_code_unique")]

    def __str__(self) -> str:
        return f"recovery code of {self.user}"


class StaffProfile(models.Model):
    """A staff member's own settings: the desk's language (blank: the browser's)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_profile")
    language = models.CharField(max_length=16, blank=True)

    def __str__(self) -> str:
        return f"settings of {self.user}"
