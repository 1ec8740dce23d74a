"""Single sign-on with OpenID Connect (mozilla-django-oidc), on when OIDC_RP_CLIENT_ID is set.

Configure by environment (see docs/accounts.md): `OIDC_RP_CLIENT_ID`, `OIDC_RP_CLIENT_SECRET`,
and either `OIDC_OP_ISSUER` (endpoints from its `/.well-known/openid-configuration`) or the
endpoints themselves (`OIDC_OP_AUTHORIZATION_ENDPOINT`, `OIDC_OP_TOKEN_ENDPOINT`,
`OIDC_OP_USER_ENDPOINT`, `OIDC_OP_JWKS_ENDPOINT`). The code flow uses a nonce and PKCE, and the
id token must be RS256-signed by a key from the provider's JWKS.

Who gets in: an active *staff* user whose email matches the provider's `email` claim, and
only when the provider says `email_verified: true`. Nobody is created unless
`CXDESK_OIDC_CREATE_STAFF=true` (then a new agent, without teams). A sign-in through SSO
counts as two-factor (the provider's own MFA) unless `CXDESK_OIDC_SATISFIES_2FA=false`.
"""

from __future__ import annotations

import logging

import requests
from django.conf import settings
from django.contrib import messages as flash
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from . import twofactor

log = logging.getLogger("cxdesk.accounts.oidc")
BACKEND = "accounts.oidc.StaffOIDCBackend"
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


def _discovery() -> dict:
    issuer = getattr(settings, "OIDC_OP_ISSUER", "").rstrip("/")
    if not issuer:
        return {}
    key = f"cxdesk:oidc:discovery:{issuer}"
    doc = cache.get(key)
    if doc is None:
        response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        doc = response.json()
        cache.set(key, doc, 3600)
    return doc


def get_setting(attr: str, *default):
    """mozilla-django-oidc's settings, with endpoints discovered from OIDC_OP_ISSUER."""
    if attr in _DISCOVERED and not getattr(settings, attr, ""):
        value = _discovery().get(_DISCOVERED[attr])
        if value:
            return value
    return import_from_settings(attr, *default)


class StaffOIDCBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(get_setting)

    def verify_claims(self, claims) -> bool:
        if not claims.get("email"):
            return False
        if getattr(settings, "CXDESK_OIDC_REQUIRE_VERIFIED_EMAIL", True) and claims.get("email_verified") is not True:
            log.warning("SSO refused: the provider did not verify %s", claims.get("email"))
            return False
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(email__iexact=claims.get("email", ""), is_staff=True, is_active=True)

    def create_user(self, claims):
        from .services import role_set

        user = super().create_user(claims)
        user.is_staff = True
        user.first_name = (claims.get("given_name") or "")[:150]
        user.last_name = (claims.get("family_name") or "")[:150]
        user.set_unusable_password()
        user.save()
        role_set(user=user, role="agent")
        return user

    def get_user(self, user_id):
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None


class AuthenticateView(OIDCAuthenticationRequestView):
    """`/desk/sso/start/`: off (404) unless SSO is configured."""

    get_settings = staticmethod(get_setting)

    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request):
        if not enabled():
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except (ImproperlyConfigured, requests.RequestException) as exc:
            log.error("SSO is not usable: %s", exc)
            flash.error(request, _("Single sign-on is not available right now. Sign in with your password."))
            return HttpResponseRedirect(reverse("desk-sign-in"))
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(get_setting)

    @property
    def failure_url(self) -> str:
        return reverse("desk-sign-in")

    def login_failure(self):
        flash.error(
            self.request,
            _("Single sign-on did not find a desk account for this address. Ask an admin, or sign in with a password."),
        )
        return super().login_failure()

    def login_success(self):
        response = super().login_success()
        if getattr(settings, "CXDESK_OIDC_SATISFIES_2FA", True):
            self.request.session[twofactor.SESSION_KEY] = True
        return response
