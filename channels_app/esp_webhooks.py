"""ESP webhooks (/hooks/anymail/…) refuse to run unauthenticated.

django-anymail checks the basic-auth `ANYMAIL_WEBHOOK_SECRET` when it is set, and only
warns when it is not — so anyone could post mail into the desk. Here every anymail
webhook answers 403 until the secret is set, unless `CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED`
says so explicitly (a test install behind a private network). `manage.py check` warns when they
accept mail unauthenticated (and notes that they are off without the secret)."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.core import checks
from django.http import JsonResponse
from django.urls import URLPattern

from cxdesk.errors import ApplicationError

from .email_inbound import mail_body_read


def webhook_secret_set() -> bool:
    return bool((getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET"))


def _guard(view):
    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not webhook_secret_set() and not settings.CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED:
            return JsonResponse(
                {
                    "error": {
                        "code": "webhook_not_configured",
                        "message": "ESP webhooks are refused until ANYMAIL_WEBHOOK_SECRET is set",
                        "fields": {},
                    }
                },
                status=403,
            )
        if request.method == "POST":
            try:
                mail_body_read(request)  # under the mail cap, not DATA_UPLOAD_MAX_MEMORY_SIZE
            except ApplicationError as exc:
                return JsonResponse(exc.as_dict(), status=exc.status_code)
        return view(request, *args, **kwargs)

    return guarded


def urlpatterns() -> tuple[list[URLPattern], str]:
    """anymail's URL patterns with every view guarded (for `include()`)."""
    from anymail import urls

    guarded = [URLPattern(p.pattern, _guard(p.callback), p.default_args, p.name) for p in urls.urlpatterns]
    return guarded, urls.app_name


def check_webhook_secret(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if webhook_secret_set():
        return []
    if settings.CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED:
        return [
            checks.Warning(
                "ESP inbound webhooks (/hooks/anymail/…) accept mail from anyone.",
                hint="Set ANYMAIL_WEBHOOK_SECRET=user:password and put it in the ESP's webhook URL; "
                "then drop CXDESK_ANYMAIL_ALLOW_UNAUTHENTICATED.",
                id="cxdesk.W101",
            )
        ]
    # Safe (refused), so only a note: an install without an ESP need not set anything.
    return [
        checks.Info(
            "ANYMAIL_WEBHOOK_SECRET is not set: ESP inbound webhooks (/hooks/anymail/…) answer 403.",
            hint="Set ANYMAIL_WEBHOOK_SECRET=user:password if mail reaches cxdesk through an ESP (docs/email.md).",
            id="cxdesk.I102",
        )
    ]
