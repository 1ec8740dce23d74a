from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        user_logged_out.connect(_close_sockets, dispatch_uid="tickets.close_sockets_on_logout")


def _close_sockets(sender, request, user, **kwargs) -> None:
    """Channels fixes the user at connect time: tell the user's sockets to close."""
    if user is None:
        return
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(f"agent.{user.pk}", {"type": "desk.logout"})
