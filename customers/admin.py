from django.contrib import admin

from .models import Customer, CustomerMerge, Identity, Organization


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ("kind", "address", "display_name", "opted_out_at", "last_seen_at")
    readonly_fields = ("last_seen_at",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "domains", "created_at")
    search_fields = ("name",)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "organization", "merged_into", "created_at")
    list_filter = ("organization", ("merged_into", admin.EmptyFieldListFilter))
    search_fields = ("name", "identities__address")
    list_select_related = ("organization", "merged_into")
    raw_id_fields = ("merged_into",)
    inlines = [IdentityInline]


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("address", "kind", "customer", "opted_out_at", "last_seen_at")
    list_filter = ("kind", ("opted_out_at", admin.EmptyFieldListFilter))
    search_fields = ("address", "display_name", "customer__name")
    list_select_related = ("customer",)
    raw_id_fields = ("customer",)


@admin.register(CustomerMerge)
class CustomerMergeAdmin(admin.ModelAdmin):
    list_display = ("id", "kept", "other", "actor", "created_at", "undone_at")
    list_filter = (("undone_at", admin.EmptyFieldListFilter),)
    search_fields = ("kept__name", "other__name")
    raw_id_fields = ("kept", "other")
    readonly_fields = ("identity_ids", "ticket_ids", "other_snapshot", "kept_snapshot", "created_at", "undone_at")
