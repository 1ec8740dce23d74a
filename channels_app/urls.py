from django.urls import path

from .webhooks import provider_webhook

urlpatterns = [
    path("<slug:route>/<int:inbox_id>/", provider_webhook, name="provider-webhook"),
    path("<slug:route>/<int:inbox_id>/status/", provider_webhook, name="provider-webhook-status"),
]
