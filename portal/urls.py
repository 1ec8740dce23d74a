from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="portal-home"),
    path("sign-in/", views.request_sign_in, name="portal-request-sign-in"),
    path("sign-in/code/", views.redeem_code, name="portal-redeem-code"),
    path("sign-in/<str:token>/", views.redeem_link, name="portal-redeem-link"),
    path("sign-out/", views.sign_out, name="portal-sign-out"),
    path("language/", views.language, name="portal-language"),
    path("requests/new/", views.new_request, name="portal-new"),
    path("requests/<int:ticket_id>/", views.ticket_detail, name="portal-ticket"),
    path("requests/<int:ticket_id>/status/", views.ticket_status, name="portal-ticket-status"),
    path("attachments/<int:attachment_id>/", views.attachment, name="portal-attachment"),
]
