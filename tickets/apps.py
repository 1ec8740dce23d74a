from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import post_save, pre_save

        user_logged_out.connect(_close_sockets, dispatch_uid="tickets.close_sockets_on_logout")
        user = get_user_model()
        pre_save.connect(_remember_access, sender=user, dispatch_uid="tickets.remember_access")
        post_save.connect(_access_changed, sender=user, dispatch_uid="tickets.close_sockets_on_access_change")
        # One execute wrapper watches every connection's writes (`cxdesk.write_watch`): those to
        # what the inbox counts read move the counts' cache generation (after commit); one to
        # the notifications table forgets the bell's count read with the desk user.
        from . import inbox_cache, notifications

        inbox_cache.install()
        notifications.install()


def _close_sockets(sender, request, user, **kwargs) -> None:
    """Channels fixes the user at connect time: tell the user's sockets to close."""
    if user is None:
        return
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(f"agent.{user.pk}", {"type": "desk.logout"})


def _access(user) -> tuple:
    return (user.is_active, user.is_staff, user.password)


def _remember_access(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    old = sender._default_manager.filter(pk=instance.pk).values_list("is_active", "is_staff", "password").first()
    instance._cxdesk_access_before = old


def _access_changed(sender, instance, created=False, raw=False, **kwargs) -> None:
    """Deactivated, no longer staff, or a new password: the user's open desk sockets close
    (after commit), without waiting for the next frame they send."""
    before = getattr(instance, "_cxdesk_access_before", None)
    if raw or created or before is None or tuple(before) == _access(instance):
        return
    from django.db import transaction

    transaction.on_commit(lambda: _close_sockets(sender, None, instance))
