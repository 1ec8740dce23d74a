from django.contrib import admin

from .models import AgentProfile, RoutingConfig, Rule


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "status", "channels", "max_concurrent")
    list_filter = ("status",)
    search_fields = ("user__username",)


@admin.register(RoutingConfig)
class RoutingConfigAdmin(admin.ModelAdmin):
    list_display = ("team", "inbox", "strategy", "last_assigned")


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ("name", "trigger", "position", "is_active")
    list_filter = ("trigger", "is_active")
    list_editable = ("position", "is_active")
