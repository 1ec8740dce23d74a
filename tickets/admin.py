from django.contrib import admin

from .models import Attachment, CannedResponse, Message, Tag, Team, Ticket, TicketEvent, TicketMove


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    filter_horizontal = ("members",)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)


class MessageInline(admin.StackedInline):
    model = Message
    extra = 0
    fields = ("direction", "channel", "status", "author", "identity", "body_text", "thread_reason", "created_at")
    readonly_fields = fields
    show_change_link = True


class EventInline(admin.TabularInline):
    model = TicketEvent
    extra = 0
    fields = ("kind", "actor", "data", "created_at")
    readonly_fields = fields
    can_delete = False


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "customer", "status", "priority", "channel", "assignee", "team", "last_message_at")
    list_filter = ("status", "priority", "channel", "team", "inbox")
    search_fields = ("id", "subject", "customer__name", "customer__identities__address")
    list_select_related = ("customer", "assignee", "team")
    raw_id_fields = ("customer", "merged_into")
    readonly_fields = ("reply_token", "created_at", "updated_at")
    date_hierarchy = "created_at"
    inlines = [MessageInline, EventInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "ticket", "direction", "channel", "status", "thread_reason", "created_at")
    list_filter = ("direction", "channel", "status", "thread_reason", "inbox")
    search_fields = ("body_text", "provider_message_id", "email_message_id", "ticket__subject")
    raw_id_fields = ("ticket", "identity", "author")
    list_select_related = ("ticket",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("filename", "content_type", "size", "sha256", "message")
    search_fields = ("filename", "sha256")
    raw_id_fields = ("message",)


@admin.register(TicketEvent)
class TicketEventAdmin(admin.ModelAdmin):
    list_display = ("ticket", "kind", "actor", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("ticket",)


@admin.register(TicketMove)
class TicketMoveAdmin(admin.ModelAdmin):
    list_display = ("kind", "source", "target", "actor", "created_at", "undone_at")
    list_filter = ("kind",)
    raw_id_fields = ("source", "target")


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ("title", "language", "translation_of", "shortcut", "is_active")
    list_filter = ("language", "is_active")
    search_fields = ("title", "body")
    raw_id_fields = ("translation_of",)
