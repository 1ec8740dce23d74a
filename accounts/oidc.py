"""Single sign-on with OpenID Connect (mozilla-django-oidc), on when OIDC_CLIENT_ID is set."""

from __future__ import annotations

from django.conf import settings


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))
