from django.contrib import admin

from .models import SurveyResponse


@admin.register(SurveyResponse)
class SurveyResponseAdmin(admin.ModelAdmin):
    list_display = ("ticket", "channel", "csat", "ces", "sent_at", "answered_at")
    list_filter = ("channel", "csat")
    raw_id_fields = ("ticket",)
    exclude = ("token_hash",)
