from django.urls import path

from . import views

urlpatterns = [
    path("", views.inbox, name="desk-inbox"),
    path("tickets/<int:ticket_id>/", views.ticket_detail, name="desk-ticket"),
    path("tickets/<int:ticket_id>/reply/", views.ticket_reply, name="desk-ticket-reply"),
]
