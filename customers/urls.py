from django.urls import path

from . import views

urlpatterns = [
    path("", views.customer_list, name="desk-customers"),
    path("<int:customer_id>/edit/", views.customer_edit, name="desk-customer-edit"),
    path("<int:customer_id>/", views.customer_detail, name="desk-customer"),
    path("<int:customer_id>/identities/", views.identity_add, name="desk-identity-add"),
    path("<int:customer_id>/language/", views.customer_language, name="desk-customer-language"),
    path("<int:customer_id>/identities/<int:identity_id>/remove/", views.identity_remove, name="desk-identity-remove"),
    path("<int:customer_id>/merge/", views.customer_merge, name="desk-customer-merge"),
    path("<int:customer_id>/export/", views.customer_export, name="desk-customer-export"),
    path("<int:customer_id>/erase/", views.customer_erase, name="desk-customer-erase"),
    path("merges/<int:merge_id>/undo/", views.merge_undo, name="desk-merge-undo"),
]
