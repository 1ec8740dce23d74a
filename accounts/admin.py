"""Admins can see who has two-factor on and remove a lost authenticator (the user then
enrols again at /desk/security/). Roles are the groups agent / supervisor / admin on the
user's page; teams are on each team."""

from django.contrib import admin

from .models import RecoveryCode, TotpDevice


@admin.register(TotpDevice)
class TotpDeviceAdmin(admin.ModelAdmin):
    list_display = ("user", "confirmed", "confirmed_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username", "user__email")
    fields = ("user", "confirmed", "confirmed_at", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def delete_model(self, request, obj):
        RecoveryCode.objects.filter(user=obj.user).delete()
        super().delete_model(request, obj)
