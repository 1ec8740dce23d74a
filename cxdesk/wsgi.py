"""The WSGI application.

Provider webhooks (`/hooks/…`: Twilio, Meta, Telegram, the mail services) are machine to
machine: nobody signs in, no cookie is read, nothing is shown in a language. They are served
by a handler of their own whose middleware is the app's without the desk's: no sessions,
sign-in, CSRF (there is no cookie to forge a request with), language, messages, two-factor,
htmx, desk user or static files. The request id, the metrics, the security headers and CSP,
the input checks and the audit context stay. A burst of webhooks is the hottest path the
server has: the desk's middleware was ~15 % of each answer (issue 12). (`make run` serves
everything through ASGI, `cxdesk.asgi`, with the whole stack: the same answers, slower.)"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

HOOKS_PREFIX = "/hooks/"
DESK_ONLY = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "cxdesk.middleware.DeskUserMiddleware",
        "accounts.middleware.StaffLanguageMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "accounts.middleware.TwoFactorMiddleware",
        "django_htmx.middleware.HtmxMiddleware",
    }
)


class HooksHandler(WSGIHandler):
    """Django's handler with `settings.MIDDLEWARE` less `DESK_ONLY`."""

    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        everything = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in everything if path not in DESK_ONLY]
        try:  # read once, here (at start-up, before any request)
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = everything


desk = get_wsgi_application()
hooks = HooksHandler()


def application(environ, start_response):
    handler = hooks if environ.get("PATH_INFO", "").startswith(HOOKS_PREFIX) else desk
    return handler(environ, start_response)
