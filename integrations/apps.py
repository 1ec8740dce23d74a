from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "API keys and webhooks"

    def ready(self) -> None:
        from . import receivers, schema  # noqa: F401 - schema registers the OpenAPI auth extension

        receivers.connect()

        from outbox.services import register

        register("deliver_webhook", "integrations.services.deliver_handler", queue="webhooks")

        from django.contrib.auth import get_user_model

        from cxdesk.memo import watch

        from .models import ApiKey, WebhookSubscription

        watch(WebhookSubscription)  # the active subscriptions
        watch(ApiKey, get_user_model())  # the keys in use, with their users (revoked, deactivated)
