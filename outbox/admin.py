from django.contrib import admin

from .models import OutboxTask


@admin.register(OutboxTask)
class OutboxTaskAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "object_id",
        "ref",
        "status",
        "attempts",
        "next_attempt_at",
        "claimed_until",
        "last_error",
    )
    list_filter = ("status", "kind")
    search_fields = ("ref", "=object_id")
    readonly_fields = [f.name for f in OutboxTask._meta.fields]
