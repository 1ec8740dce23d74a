from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Organization(models.Model):
    name = models.CharField(max_length=200, unique=True)
    domains = models.JSONField(default=list, blank=True, help_text="Email domains that belong to it.")
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    name = models.CharField(max_length=200, blank=True)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    attributes = models.JSONField(default=dict, blank=True)
    language = models.CharField(max_length=16, blank=True)
    # A merged-away customer stays as a tombstone that points at the one it was merged into.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    # Set by a GDPR erasure (customers.gdpr): personal data is gone, tickets stay anonymous.
    erased_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["updated_at", "id"], name="customer_updated_idx")]

    def __str__(self) -> str:
        return self.display_name(self.pk, self.name, self.erased_at)

    @staticmethod
    def display_name(pk: int | None, name: str, erased_at) -> str:
        """How a customer is shown, from their columns alone (lists that read `.values()`)."""
        if erased_at:
            return f"Erased customer #{pk}"
        return name or f"Customer #{pk}"

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None


class Identity(models.Model):
    """One way to reach a customer. Unique per kind, not per inbox: an E.164 number
    is one identity whether it texts by SMS or by WhatsApp."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("Email")
        PHONE = "phone", _("Phone (SMS / WhatsApp)")
        MESSENGER = "messenger", _("Messenger PSID")
        TELEGRAM = "telegram", _("Telegram user")
        WEBCHAT = "webchat", _("Web chat visitor")

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    address = models.CharField(max_length=320, help_text="Normalised: lower-case email, E.164 phone, provider id.")
    display_name = models.CharField(max_length=200, blank=True)
    # SMS opt-out (STOP/START keywords); sending to an opted-out number is refused.
    opted_out_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["kind", "address"], name="identity_kind_address_uniq")]
        indexes = [models.Index(fields=["customer", "kind"], name="identity_customer_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.address}"


class CustomerMerge(models.Model):
    """What a merge moved, so that `unmerge_customers` can put back exactly that."""

    kept = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_kept")
    other = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="merges_absorbed")
    identity_ids = models.JSONField(default=list)
    ticket_ids = models.JSONField(default=list)
    page_view_ids = models.JSONField(default=list, blank=True)
    other_snapshot = models.JSONField(default=dict, help_text="The other customer's name/org/attributes before.")
    kept_snapshot = models.JSONField(default=dict)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live merge per absorbed customer.
            models.UniqueConstraint(
                fields=["other"], condition=Q(undone_at__isnull=True), name="customer_merge_live_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"merge #{self.other_id} into #{self.kept_id}"


class PortalToken(models.Model):
    """A single-use sign-in secret for the portal: a magic link (email) or a one-time code
    (SMS). Only its hash is stored; it expires after 15 minutes."""

    class Kind(models.TextChoices):
        LINK = "link", _("Magic link")
        CODE = "code", _("One-time code")

    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="portal_tokens")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    token_hash = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.kind} for {self.identity}"


class PageView(models.Model):
    """One page a web visitor saw (the visitor trail): address, title and time — never
    keystrokes or form contents. Anonymous visitors are known by the widget's visitor id
    until they identify; then their views belong to the customer."""

    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="page_views")
    visitor_id = models.CharField(max_length=64, blank=True)
    url = models.CharField(max_length=2000)
    title = models.CharField(max_length=300, blank=True)
    referrer = models.CharField(max_length=2000, blank=True)
    # The outgoing message (tickets.Message id) whose tracked link brought the visitor here.
    email_message_id = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="pageview_customer_idx"),
            models.Index(fields=["visitor_id", "-created_at"], name="pageview_visitor_idx"),
            models.Index(fields=["created_at"], name="pageview_created_idx"),
        ]

    def __str__(self) -> str:
        return self.url
