import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Team(models.Model):
    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")
    # The desk's default team: new tickets that no inbox or rule gives a team (API, portal,
    # an inbox without one) go here and are routed by its strategy.
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="team_one_default")
        ]

    def __str__(self) -> str:
        return self.name


class Channel(models.TextChoices):
    """The medium a message travels on (what the customer sees), not the provider."""

    EMAIL = "email", _("Email")
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    MESSENGER = "messenger", _("Messenger")
    TELEGRAM = "telegram", _("Telegram")
    CHAT = "chat", _("Web chat")
    PORTAL = "portal", _("Portal")
    API = "api", _("API")
    DESK = "desk", _("Desk")
    VOICE = "voice", _("Voice")


class Inbox(models.Model):
    """A configured channel endpoint: one mailbox, one Twilio number, one WhatsApp
    phone number id, one Facebook page, one Telegram bot.

    `config` is public (validated against the adapter's schema); `secrets` never
    leave the server: not rendered, not logged, not serialised by the API."""

    class Transport(models.TextChoices):
        LIVE = "live", _("Live (provider API / SMTP)")
        FILE = "file", _("Development: write to var/outbox/")

    kind = models.CharField(max_length=32, help_text="Adapter kind: email, twilio, whatsapp, messenger, telegram.")
    name = models.CharField(max_length=100, unique=True)
    config = models.JSONField(default=dict, blank=True)
    secrets = models.JSONField(default=dict, blank=True)
    transport = models.CharField(max_length=8, choices=Transport.choices, default=Transport.LIVE)
    continuity_window = models.DurationField(
        default=timedelta(days=7),
        help_text="A message from a customer with an open ticket updated within this window joins that ticket.",
    )
    default_team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "channels_app_inbox"  # where it was created (it moved here from channels_app)
        verbose_name_plural = "inboxes"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def adapter(self):
        """This inbox's channel adapter (installed by the channels side at start-up)."""
        from .adapter_registry import adapter_for

        return adapter_for(self.kind)

    @property
    def default_region(self) -> str:
        from django.conf import settings

        return self.config.get("default_region") or settings.CXDESK_DEFAULT_REGION


class Tag(models.Model):
    name = models.SlugField(max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def _reply_token() -> str:
    return secrets.token_hex(8)


def _choice_display(field: str, choices):
    """A faster `get_<field>_display`: Django's builds a dict of every (value, label) pair
    on each call, hashing each lazily translated label — which translates it; an inbox page
    of 50 rows spent a quarter of its time there. This looks the value up in a dict built once."""
    labels = dict(choices)

    def display(self):
        value = getattr(self, field)
        return labels.get(value, value)

    display.__name__ = f"get_{field}_display"
    return display


class Ticket(models.Model):
    class Status(models.TextChoices):
        NEW = "new", _("New")
        OPEN = "open", _("Open")
        PENDING = "pending", _("Pending")
        SOLVED = "solved", _("Solved")
        CLOSED = "closed", _("Closed")

    OPEN_STATUSES = (Status.NEW, Status.OPEN, Status.PENDING)

    class Priority(models.TextChoices):
        LOW = "low", _("Low")
        NORMAL = "normal", _("Normal")
        HIGH = "high", _("High")
        URGENT = "urgent", _("Urgent")

    subject = models.CharField(max_length=500, blank=True)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="tickets")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tickets"
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    inbox = models.ForeignKey("Inbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="tickets")
    channel = models.CharField(max_length=16, choices=Channel.choices, help_text="The channel it was opened on.")
    # The channel of the customer's latest message ("" on tickets older than this column, until
    # the customer writes again): a message from another channel records a channel switch.
    last_customer_channel = models.CharField(
        max_length=16,
        choices=Channel.choices,
        blank=True,
        default="",
        db_default="",  # raw INSERTs (COPY seeds) too
    )
    get_status_display = _choice_display("status", Status.choices)
    get_priority_display = _choice_display("priority", Priority.choices)
    get_channel_display = _choice_display("channel", Channel.choices)
    tags = models.ManyToManyField(Tag, blank=True, related_name="tickets")
    # Per-ticket secret for reply addresses (support+<token>@…): threads replies from
    # clients that drop In-Reply-To and the subject reference.
    reply_token = models.CharField(max_length=32, unique=True, default=_reply_token, editable=False)
    # Indexed only where set (`ticket_merged_into_idx`): a plain index on a column that is NULL
    # on nearly every row is one the planner may walk for "merged_into IS NULL" before the
    # table's statistics say otherwise (a new desk under a burst): every ticket, each lookup.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    solved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_customer_message_at = models.DateTimeField(null=True, blank=True)
    last_agent_message_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    reopen_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            # Inbox views: by status (+assignee / team), newest activity first, keyset on id.
            models.Index(fields=["status", "-last_message_at", "-id"], name="ticket_status_activity_idx"),
            models.Index(fields=["assignee", "status", "-last_message_at"], name="ticket_assignee_idx"),
            models.Index(fields=["team", "status", "-last_message_at"], name="ticket_team_idx"),
            # Continuity lookup: a customer's newest open ticket.
            models.Index(fields=["customer", "status", "-last_message_at"], name="ticket_customer_idx"),
            models.Index(fields=["merged_into"], condition=Q(merged_into__isnull=False), name="ticket_merged_into_idx"),
            # Incremental sync (updated_since) with a stable tiebreak.
            models.Index(fields=["updated_at", "id"], name="ticket_updated_idx"),
            # The desk's inbox views (tickets.selectors._view_q), each read in the list's order
            # and capped counts (the first 1,000 entries). Partial: open, unmerged tickets are
            # a small share of the table. The included columns are the inbox's common filters
            # and the agent's scope, checked in the index without visiting the table.
            models.Index(
                fields=["-last_message_at", "-id"],
                name="ticket_open_activity_idx",
                condition=Q(status__in=["new", "open", "pending"], merged_into=None),
                include=["assignee", "team", "inbox", "channel", "priority", "status"],
            ),
            models.Index(
                fields=["assignee", "-last_message_at", "-id"],
                name="ticket_open_assignee_idx",
                condition=Q(status__in=["new", "open", "pending"], merged_into=None),
            ),
            models.Index(
                fields=["team", "-last_message_at", "-id"],
                name="ticket_open_team_idx",
                condition=Q(status__in=["new", "open", "pending"], merged_into=None),
            ),
            models.Index(
                fields=["last_customer_message_at", "id"],
                name="ticket_open_waiting_idx",
                condition=Q(status__in=["new", "open", "pending"], merged_into=None),
                include=["assignee", "team", "inbox", "channel", "priority", "status"],
            ),
            models.Index(
                fields=["-last_message_at", "-id"],
                name="ticket_done_activity_idx",
                condition=Q(status__in=["solved", "closed"], merged_into=None),
                include=["assignee", "team", "inbox", "channel"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    @property
    def reference(self) -> str:
        return self.reference_of(self.pk)

    def created_here(self) -> None:
        """This instance was just created by the running transaction: it has no tags (a tag
        added later drops this, as any change of the relation does) and no survey. Its
        relation caches say so, so reading them asks the database nothing."""
        self._prefetched_objects_cache = {**getattr(self, "_prefetched_objects_cache", {}), "tags": Tag.objects.none()}
        Ticket.survey.related.set_cached_value(self, None)

    @staticmethod
    def reference_of(pk: int) -> str:
        return f"{settings.CXDESK_TICKET_PREFIX}-{pk}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class Message(models.Model):
    class Direction(models.TextChoices):
        INBOUND = "inbound", _("From customer")
        OUTBOUND = "outbound", _("To customer")
        NOTE = "note", _("Internal note")

    class Status(models.TextChoices):
        RECEIVED = "received", _("Received")
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        READ = "read", _("Read")
        FAILED = "failed", _("Failed")

    # Delivery statuses only move forward: a late "sent" never undoes "delivered".
    STATUS_RANK = {"received": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5, "failed": 6}

    class ThreadReason(models.TextChoices):
        HEADER = "header", _("Reply headers (In-Reply-To / References)")
        HEADER_REFUSED = "header_refused", _("Reply headers named a ticket of someone else: new ticket")
        SUBJECT_REFERENCE = "subject_reference", _("Ticket reference in the subject")
        REPLY_TOKEN = "reply_token", _("Reply-address token")
        OPEN_TICKET = "open_ticket", _("Customer's open ticket, within the continuity window")
        NEW_TICKET = "new_ticket", _("No open conversation: new ticket")
        EXPLICIT = "explicit", _("Posted to this ticket")
        MOVED = "moved", _("Moved here by a merge or split")

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=16, choices=Direction.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    get_direction_display = _choice_display("direction", Direction.choices)
    get_channel_display = _choice_display("channel", Channel.choices)
    inbox = models.ForeignKey("Inbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages")
    identity = models.ForeignKey(
        "customers.Identity", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    subject = models.CharField(max_length=500, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True, help_text="Sanitised with nh3 before it is stored.")
    provider_message_id = models.CharField(max_length=255, null=True, blank=True)
    content_digest = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="Email: digest of the content. With provider_message_id it identifies a delivery: "
        "mailers reuse Message-IDs for different mail.",
    )
    email_message_id = models.CharField(max_length=998, blank=True, db_index=True)
    in_reply_to = models.CharField(max_length=998, blank=True, db_index=True)
    references = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    get_status_display = _choice_display("status", Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    thread_reason = models.CharField(max_length=32, choices=ThreadReason.choices, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    received_at = models.DateTimeField(null=True, blank=True, help_text="When the provider says it was sent.")
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["inbox", "provider_message_id", "content_digest"],
                condition=Q(provider_message_id__isnull=False),
                name="message_inbox_provider_digest_uniq",
            )
        ]
        indexes = [
            models.Index(fields=["ticket", "created_at"], name="message_ticket_created_idx"),
            models.Index(fields=["status", "updated_at"], name="message_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.channel} #{self.pk}"

    @property
    def timeline_at(self):
        """Where the message stands in a timeline: the provider's timestamp (when the
        customer sent it) if it has one — never later than our arrival time — else arrival."""
        if self.received_at and self.created_at:
            return min(self.received_at, self.created_at)
        return self.created_at or self.received_at

    @property
    def is_note(self) -> bool:
        return self.direction == self.Direction.NOTE


def attachment_path(instance: "Attachment", filename: str) -> str:
    return f"attachments/{instance.sha256[:2]}/{instance.sha256[2:4]}/{instance.sha256}"


class Attachment(models.Model):
    """A file on a message. Content-addressed: the bytes live once on disk under
    their sha256, however many messages carry them."""

    class ScanStatus(models.TextChoices):
        UNSCANNED = "unscanned", _("Not scanned (no scanner configured)")
        PENDING = "pending", _("Being scanned")
        CLEAN = "clean", _("Clean")
        INFECTED = "infected", _("Quarantined: infected")
        ERROR = "error", _("Could not be scanned")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255, default="application/octet-stream")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    file = models.FileField(upload_to=attachment_path, max_length=255, blank=True)
    content_id = models.CharField(max_length=255, blank=True, help_text="For inline cid: images.")
    inline = models.BooleanField(default=False)
    source_url = models.URLField(max_length=2000, blank=True, help_text="Provider media URL, fetched by Celery.")
    # Virus scan (tickets.scanning): only unscanned/clean files can be downloaded or sent.
    scan_status = models.CharField(max_length=16, choices=ScanStatus.choices, default=ScanStatus.UNSCANNED)
    scan_detail = models.CharField(max_length=200, blank=True, help_text="Signature name, or why the scan failed.")
    scanned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.filename

    @property
    def is_quarantined(self) -> bool:
        return self.scan_status == self.ScanStatus.INFECTED

    @property
    def is_downloadable(self) -> bool:
        return bool(self.file) and self.scan_status in (self.ScanStatus.UNSCANNED, self.ScanStatus.CLEAN)


class TicketEvent(models.Model):
    """Append-only audit trail shown in the timeline. Written by `tickets.events`."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Created")
        STATUS = "status", _("Status changed")
        ASSIGNMENT = "assignment", _("Assignment changed")
        PRIORITY = "priority", _("Priority changed")
        TAGS = "tags", _("Tags changed")
        CHANNEL_SWITCH = "channel_switch", _("Customer switched channel")
        REOPENED = "reopened", _("Reopened by customer reply")
        MERGED = "merged", _("Tickets merged")
        UNMERGED = "unmerged", _("Ticket merge undone")
        SPLIT = "split", _("Messages split off")
        UNSPLIT = "unsplit", _("Split undone")
        CUSTOMER_MERGED = "customer_merged", _("Customer merged")
        CUSTOMER_UNMERGED = "customer_unmerged", _("Customer merge undone")
        DELIVERY_FAILED = "delivery_failed", _("Delivery failed")
        SLA_BREACH = "sla_breach", _("SLA target breached")
        SURVEY_ANSWERED = "survey_answered", _("Satisfaction survey answered")
        CALL = "call", _("Call")
        CALL_MISSED = "call_missed", _("Missed call — call back")
        THREAD_REFUSED = "thread_refused", _("Reply headers named another customer's ticket: kept apart")
        MAIL_TRIMMED = "mail_trimmed", _("Mail too large: trimmed")
        ATTACHMENT_QUARANTINED = "attachment_quarantined", _("Attachment quarantined (virus found)")

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["ticket", "created_at"], name="ticketevent_ticket_idx")]

    def __str__(self) -> str:
        return f"{self.kind} on #{self.ticket_id}"


class TicketMove(models.Model):
    """A merge (all messages of `source` into `target`) or a split (chosen messages of
    `source` into a new `target`), recorded so it can be undone exactly."""

    class Kind(models.TextChoices):
        MERGE = "merge", _("Merge")
        SPLIT = "split", _("Split")

    kind = models.CharField(max_length=8, choices=Kind.choices)
    source = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="moves_out")
    target = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="moves_in")
    message_ids = models.JSONField(default=list)
    source_status = models.CharField(max_length=16, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.source_id} → #{self.target_id}"


class CannedResponse(models.Model):
    """A saved reply. Placeholders: {customer.name}, {customer.first_name}, {ticket.reference},
    {ticket.subject}, {agent.name}."""

    title = models.CharField(max_length=100)
    body = models.TextField()
    shortcut = models.SlugField(max_length=32, blank=True)
    is_active = models.BooleanField(default=True)
    # Translations: a canned response in another language points at the original; the desk
    # offers the one in the customer's language (cxdesk.i18n fallback chain), else the original.
    language = models.CharField(max_length=16, blank=True, help_text="Blank: the desk's default language.")
    translation_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="translations"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Notification(models.Model):
    """Something an agent should look at: the bell in the desk's top bar. One row per agent
    and thing; read when the agent opens it (or the ticket it is about)."""

    class Kind(models.TextChoices):
        ASSIGNED = "assigned", _("Assigned to you")
        MENTION = "mention", _("Mentioned in a note")
        SLA_WARNING = "sla_warning", _("SLA target due soon")
        SLA_BREACH = "sla_breach", _("SLA target breached")
        CUSTOMER_REPLIED = "customer_replied", _("Customer replied on a solved ticket")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="notifications")
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at", "-created_at"], name="notification_user_unread_idx")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.user_id} on #{self.ticket_id}"


class SavedView(models.Model):
    """A named inbox view: a built-in view plus filters and sort, personal or shared with
    every agent. Shown in the inbox's sidebar with a live count."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    shared = models.BooleanField(default=False, help_text=_("Visible to every agent."))
    # {"view": "open", "channel": "sms", "q": "...", "sort": "waiting", ...} — cleaned by
    # tickets.selectors.inbox_filters_clean before use.
    filters = models.JSONField(default=dict, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "name", "id"]
        indexes = [models.Index(fields=["owner", "position"], name="savedview_owner_idx")]

    def __str__(self) -> str:
        return self.name
