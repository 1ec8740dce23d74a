"""DRF session authentication that honours two-factor (API keys are not affected)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from . import twofactor


class SessionAuthentication(authentication.SessionAuthentication):
    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None:
            return None
        if not twofactor.session_ok(request._request):
            raise exceptions.AuthenticationFailed(
                "two-factor verification required: finish signing in at /desk/sign-in/", code="2fa_required"
            )
        return result


class SessionScheme(OpenApiAuthenticationExtension):
    """The OpenAPI description of the session cookie (the desk's own API calls)."""

    target_class = "accounts.auth.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
