from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.inbox, name="desk-inbox"),
    path("tickets/<int:ticket_id>/", views.ticket_detail, name="desk-ticket"),
    path("tickets/<int:ticket_id>/timeline/", views.ticket_timeline, name="desk-ticket-timeline"),
    path("tickets/<int:ticket_id>/messages/<int:message_id>/image/", views.message_image, name="desk-message-image"),
    path("tickets/<int:ticket_id>/reply/", views.ticket_reply, name="desk-ticket-reply"),
    path("tickets/<int:ticket_id>/update/", views.ticket_update, name="desk-ticket-update"),
    path("tickets/<int:ticket_id>/template/", views.ticket_template, name="desk-ticket-template"),
    path("tickets/<int:ticket_id>/merge/", views.ticket_merge, name="desk-ticket-merge"),
    path("tickets/<int:ticket_id>/split/", views.ticket_split, name="desk-ticket-split"),
    path("moves/<int:move_id>/undo/", views.move_undo, name="desk-move-undo"),
    path("status/", views.my_status, name="desk-my-status"),
    path("bulk/", views.bulk, name="desk-bulk"),
    path("views/", views.saved_view_save, name="desk-view-save"),
    path("views/<int:view_id>/delete/", views.saved_view_delete, name="desk-view-delete"),
    path("notifications/", views.notification_list, name="desk-notifications"),
    path("notifications/<int:notification_id>/", views.notification_open, name="desk-notification"),
    path("notifications/read/", views.notifications_read_all, name="desk-notifications-read"),
    path("customers/", include("customers.urls")),
]
