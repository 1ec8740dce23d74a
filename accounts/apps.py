from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Staff accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        user_logged_in.connect(_decide_two_factor, dispatch_uid="accounts.decide_two_factor")


def _decide_two_factor(sender, request, user, **kwargs) -> None:
    """Decide at sign-in whether this session needs the second step (no query per request)."""
    if request is None or not hasattr(request, "session"):
        return
    from . import twofactor

    request.session[twofactor.NEEDED_KEY] = bool(
        user.is_staff and (twofactor.required_for(user) or twofactor.has_device(user))
    )
