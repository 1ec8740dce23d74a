"""Two-factor enforcement for the desk's pages (and the Django admin).

A signed-in staff user whose role requires two-factor (CXDESK_2FA_REQUIRED_ROLES), or who
enrolled, and whose session has not passed the second step, is sent to the sign-in page
(enrolled: to type a code) or to the Security page (not enrolled yet). The API has the same
rule in `accounts.auth.SessionAuthentication`; API keys are not affected."""

from __future__ import annotations

from django.contrib.auth import logout
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from . import twofactor

GUARDED = ("/desk/", "/admin/")
OPEN = ("/desk/sign-in/", "/desk/sign-out/", "/desk/security/")


class TwoFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if (
            path.startswith(GUARDED)
            and not path.startswith(OPEN)
            and request.user.is_authenticated
            and not twofactor.session_ok(request)
        ):
            if twofactor.has_device(request.user):
                logout(request)
                return redirect(f"{reverse('desk-sign-in')}?{urlencode({'next': request.get_full_path()})}")
            return redirect("desk-security")
        return self.get_response(request)


class StaffLanguageMiddleware:
    """A staff member's desk language (their profile, /desk/security/) wins over the cookie
    and the browser's Accept-Language that LocaleMiddleware looked at; without one, those
    decide. Placed after AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.utils import translation

        from cxdesk.i18n import resolve_language

        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            code = getattr(user, "desk_language", None)  # read already (cxdesk.middleware.DeskUserMiddleware)
            if code is None:
                from .models import StaffProfile

                code = StaffProfile.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
            if code:
                translation.activate(resolve_language(code))
                request.LANGUAGE_CODE = translation.get_language()
        return self.get_response(request)
