import json

from django import forms
from django.contrib import admin, messages

from cxdesk.errors import ApplicationError

from .adapters import adapter_kinds, get_adapter
from .models import AgentPhone, Call, Inbox, RawInbound


class InboxForm(forms.ModelForm):
    """Secrets are write-only: the form shows which are set, never their values."""

    kind = forms.ChoiceField(choices=())
    new_secrets = forms.JSONField(
        required=False,
        help_text='Secrets to set, as JSON ({"auth_token": "…"}). Leave empty to keep the current ones.',
    )

    class Meta:
        model = Inbox
        fields = ("kind", "name", "config", "transport", "continuity_window", "default_team", "is_active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, k) for k in adapter_kinds()]
        if self.instance.pk:
            self.fields["new_secrets"].help_text += f" Set now: {', '.join(sorted(self.instance.secrets)) or 'none'}."

    def clean(self):
        data = super().clean()
        secrets = {**(self.instance.secrets or {}), **(data.get("new_secrets") or {})}
        kind = data.get("kind")
        if kind:
            problems = get_adapter(kind).validate_settings(data.get("config") or {}, secrets)
            if problems:
                raise forms.ValidationError(problems)
        self.instance.secrets = secrets
        return data


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    form = InboxForm
    list_display = ("name", "kind", "transport", "is_active", "webhook")
    list_filter = ("kind", "is_active", "transport")
    search_fields = ("name",)

    @admin.display(description="Webhook URL")
    def webhook(self, obj: Inbox) -> str:
        try:
            return obj.adapter.webhook_url(obj) or "—"
        except LookupError:
            return "—"


@admin.register(RawInbound)
class RawInboundAdmin(admin.ModelAdmin):
    """The dead-letter list: inbound deliveries that failed, with the error and a retry."""

    list_display = ("id", "source", "inbox", "status", "short_error", "attempts", "created_at")
    list_filter = ("status", "source", "inbox")
    search_fields = ("error", "sha256")
    readonly_fields = (
        "inbox",
        "source",
        "content_type",
        "sha256",
        "status",
        "error",
        "attempts",
        "message",
        "created_at",
        "processed_at",
        "preview",
    )
    exclude = ("payload",)
    actions = ["retry"]

    @admin.display(description="Error")
    def short_error(self, obj: RawInbound) -> str:
        return obj.error[:120]

    @admin.display(description="Raw (first 4 KB)")
    def preview(self, obj: RawInbound) -> str:
        return obj.raw[:4096].decode("utf-8", errors="replace")

    @admin.action(description="Retry processing")
    def retry(self, request, queryset):
        from .services import raw_inbound_process

        done = failed = 0
        for record in queryset.exclude(status=RawInbound.Status.PROCESSED):
            try:
                raw_inbound_process(record=record)
                done += 1
            except ApplicationError as exc:
                failed += 1
                self.message_user(request, f"#{record.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, json.dumps({"processed": done, "failed": failed}))


@admin.register(AgentPhone)
class AgentPhoneAdmin(admin.ModelAdmin):
    """Where each agent's calls ring (a number and/or a SIP address)."""

    list_display = ("user", "number", "sip_uri")
    search_fields = ("user__username", "number", "sip_uri")
    autocomplete_fields = ("user",)


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = (
        "call_sid",
        "inbox",
        "from_number",
        "status",
        "route",
        "agent",
        "duration",
        "voicemail",
        "started_at",
    )
    list_filter = ("status", "route", "voicemail", "inbox")
    search_fields = ("call_sid", "from_number")
    readonly_fields = [f.name for f in Call._meta.fields]

    def has_add_permission(self, request):
        return False
