from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self) -> None:
        # Importing the adapters package registers every adapter module.
        from tickets.signals import message_created

        from . import adapters  # noqa: F401
        from .automations import on_message_created

        message_created.connect(on_message_created, dispatch_uid="channels_app.auto_ack")

        from anymail.signals import inbound

        from .anymail_inbound import on_inbound

        inbound.connect(on_inbound, dispatch_uid="channels_app.anymail_inbound")

        from customers.signals import customer_erasing

        from .gdpr import on_customer_erasing

        customer_erasing.connect(on_customer_erasing, dispatch_uid="channels_app.gdpr_erase")
