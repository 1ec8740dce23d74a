from django.contrib import admin

from .models import BusinessCalendar, SlaPolicy, TicketSla


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    list_display = ("name", "timezone")
    filter_horizontal = ("teams",)


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "channel",
        "priority",
        "organization",
        "first_response_minutes",
        "resolution_minutes",
        "calendar",
        "is_active",
    )
    list_filter = ("channel", "priority", "is_active")


@admin.register(TicketSla)
class TicketSlaAdmin(admin.ModelAdmin):
    list_display = (
        "ticket",
        "policy",
        "first_response_due",
        "resolution_due",
        "first_response_breached_at",
        "resolution_breached_at",
    )
    list_filter = ("policy",)
    raw_id_fields = ("ticket",)
