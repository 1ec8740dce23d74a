from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self) -> None:
        # Importing the adapters package registers every adapter module.
        from tickets.adapter_registry import adapter_lookup_install
        from tickets.signals import message_created

        from . import adapters

        adapter_lookup_install(adapters.get_adapter)
        from .automations import on_message_created

        message_created.connect(on_message_created, dispatch_uid="channels_app.auto_ack")

        from django.db.models.signals import post_delete, post_save

        from tickets.models import Inbox

        from .selectors import inbox_forget

        post_save.connect(inbox_forget, sender=Inbox, dispatch_uid="channels_app.inbox_forget")
        post_delete.connect(inbox_forget, sender=Inbox, dispatch_uid="channels_app.inbox_forget_deleted")

        from outbox.services import register

        register("send_message", "channels_app.outbound.send_handler", queue="outbound")
        register("auto_ack", "channels_app.automations.auto_ack_handler", queue="inbound")
        register("fetch_media", "channels_app.media.fetch_handler", queue="inbound")
        register("apply_status", "channels_app.services.parked_status_handler", queue="inbound")
        register("webhook_process", "channels_app.webhook_queue.webhook_process_handler", queue="inbound")

        from anymail.signals import inbound

        from .anymail_inbound import on_inbound

        inbound.connect(on_inbound, dispatch_uid="channels_app.anymail_inbound")

        from django.core import checks

        from .esp_webhooks import check_webhook_secret

        checks.register(check_webhook_secret, checks.Tags.security)

        from customers.signals import customer_erasing

        from .gdpr import on_customer_erasing

        customer_erasing.connect(on_customer_erasing, dispatch_uid="channels_app.gdpr_erase")
