"""Staff sign-in (password, then a TOTP / recovery code when enrolled), sign-out,
password reset pages, the security page (two-factor enrolment) and `/`."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from cxdesk.errors import ApplicationError
from cxdesk.i18n import language_chosen, safe_next

from . import oidc, services, throttle, twofactor
from .models import StaffProfile, TotpDevice
from .roles import user_role

PENDING_SECONDS = 300
BAD_CREDENTIALS = "Please enter a correct username and password. Both fields may be case-sensitive."


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return settings.LOGIN_REDIRECT_URL


def home(request: HttpRequest) -> HttpResponse:
    """`/`: staff to the desk, everyone else to the customer portal."""
    if request.user.is_authenticated and request.user.is_staff:
        return redirect("/desk/")
    return redirect("/portal/")


def _render_sign_in(request: HttpRequest, *, step: str = "password", error: str = "", status: int = 200, **extra):
    context = {
        "step": step,
        "error": error,
        "next": _next(request),
        "username": extra.pop("username", ""),
        "sso": oidc.enabled(),
        **extra,
    }
    return render(request, "accounts/sign_in.html", context, status=status)


def _locked(request: HttpRequest, slot: throttle.Slot, username: str) -> HttpResponse:
    user_login_failed.send(sender=__name__, credentials={"username": username, "reason": "throttled"}, request=request)
    message = _("Too many failed sign-in attempts. Try again in %(minutes)d minutes.") % {"minutes": slot.minutes}
    return _render_sign_in(request, error=message, status=429, username=username)


@sensitive_post_parameters("password", "code")
@csrf_protect
@never_cache
def sign_in(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        if request.user.is_authenticated and request.user.is_staff and twofactor.session_ok(request):
            return redirect(_next(request))
        if request.GET.get("step") == "code" and _pending(request):
            return _render_sign_in(request, step="code")
        return _render_sign_in(request)
    if request.POST.get("step") == "code":
        return _sign_in_code(request)
    username = (request.POST.get("username") or "").strip()[:150]
    password = request.POST.get("password") or ""
    if not username or not password:
        return _render_sign_in(request, error=_(BAD_CREDENTIALS), status=400, username=username)
    slot = throttle.attempt_begin(username=username, ip=throttle.client_ip(request))
    if slot.locked:
        return _locked(request, slot, username)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_staff:
        if user is not None:  # a valid non-staff account: not for the desk; counted as a failure
            user_login_failed.send(
                sender=__name__, credentials={"username": username, "reason": "not_staff"}, request=request
            )
        return _render_sign_in(request, error=_(BAD_CREDENTIALS), status=400, username=username)
    throttle.attempt_succeeded(slot)
    if twofactor.has_device(user):
        request.session.cycle_key()
        request.session[twofactor.PENDING_KEY] = {
            "user": user.pk,
            "backend": user.backend,
            "next": _next(request),
            "at": time.time(),
        }
        return _render_sign_in(request, step="code")
    return _complete(request, user, backend=user.backend, next_url=_next(request), verified=False)


def _pending(request: HttpRequest) -> dict | None:
    pending = request.session.get(twofactor.PENDING_KEY)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    return pending


def _sign_in_code(request: HttpRequest) -> HttpResponse:
    from django.contrib.auth import get_user_model

    pending = _pending(request)
    if pending is None:
        request.session.pop(twofactor.PENDING_KEY, None)
        return _render_sign_in(request, error=_("Your sign-in expired. Please sign in again."), status=400)
    user = get_user_model().objects.filter(pk=pending["user"], is_active=True, is_staff=True).first()
    if user is None:
        request.session.pop(twofactor.PENDING_KEY, None)
        return _render_sign_in(request, error=_(BAD_CREDENTIALS), status=400)
    slot = throttle.attempt_begin(username=f"#{user.pk}", ip=throttle.client_ip(request), scope="code")
    if slot.locked:
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username(), "reason": "throttled"}, request=request
        )
        message = _("Too many wrong codes. Try again in %(minutes)d minutes.") % {"minutes": slot.minutes}
        return _render_sign_in(request, step="code", error=message, status=429)
    kind = services.second_factor_verify(user=user, code=request.POST.get("code") or "")
    if kind is None:
        user_login_failed.send(
            sender=__name__, credentials={"username": user.get_username(), "reason": "bad_code"}, request=request
        )
        return _render_sign_in(
            request, step="code", error=_("That code is not right. Try again or use a recovery code."), status=400
        )
    throttle.attempt_succeeded(slot)
    del request.session[twofactor.PENDING_KEY]
    if kind == "recovery":
        flash.warning(request, _("You used a recovery code. Each code works once; make new ones on the Security page."))
    return _complete(request, user, backend=pending["backend"], next_url=pending["next"], verified=True)


def _complete(request: HttpRequest, user, *, backend: str, next_url: str, verified: bool) -> HttpResponse:
    login(request, user, backend=backend)
    if verified:
        request.session[twofactor.SESSION_KEY] = True
    elif twofactor.required_for(user):
        flash.info(request, _("Your role requires two-factor sign-in. Set it up to continue."))
        return redirect("desk-security")
    return redirect(next_url)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    flash.info(request, _("You are signed out."))
    return redirect("desk-sign-in")


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset flow; requests are counted like sign-ins (per address and per IP), so
    the form cannot be used to flood someone's mailbox."""

    template_name = "accounts/password_reset.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        slot = throttle.attempt_begin(
            username=form.cleaned_data["email"], ip=throttle.client_ip(self.request), scope="reset"
        )
        if slot.locked:
            form.add_error(
                "email", _("Too many reset requests. Try again in %(minutes)d minutes.") % {"minutes": slot.minutes}
            )
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        return super().form_valid(form)


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


def _staff_required(view):
    @login_required
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            return redirect("/portal/")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


@_staff_required
@sensitive_post_parameters("code")
@never_cache
def security(request: HttpRequest) -> HttpResponse:
    """The agent's own security page: role and teams, two-factor set-up and removal."""
    user = request.user
    device = TotpDevice.objects.filter(user=user).first()
    context: dict = {
        "role": user_role(user),
        "teams": user.teams.order_by("name"),
        "device": device,
        "required": twofactor.required_for(user),
        "codes_left": user.recovery_codes.filter(used_at=None).count() if device and device.confirmed else 0,
        "desk_language": StaffProfile.objects.filter(user=user).values_list("language", flat=True).first() or "",
    }
    action = request.POST.get("action") if request.method == "POST" else None
    try:
        if action == "start":
            device = services.totp_enrol_start(user=user)
            context["device"] = device
        elif action == "confirm":
            codes = services.totp_enrol_confirm(user=user, code=request.POST.get("code") or "")
            request.session[twofactor.SESSION_KEY] = True
            context.update(device=TotpDevice.objects.get(user=user), recovery_codes=codes, codes_left=len(codes))
        elif action == "remove" and context["required"]:
            raise ApplicationError(_("Your role requires two-factor sign-in."), code="required")
        elif action in ("regenerate", "remove"):
            if services.second_factor_verify(user=user, code=request.POST.get("code") or "") != "totp":
                raise ApplicationError(_("Type a current code from your authenticator app."), code="bad_code")
            if action == "regenerate":
                codes = services.recovery_codes_regenerate(user=user)
                context.update(recovery_codes=codes, codes_left=len(codes))
            else:
                services.totp_remove(user=user)
                request.session.pop(twofactor.SESSION_KEY, None)
                request.session.pop(twofactor.NEEDED_KEY, None)
                flash.info(request, _("Two-factor sign-in is off."))
                return redirect("desk-security")
    except ApplicationError as exc:
        context["error"] = exc.message
        device = TotpDevice.objects.filter(user=user).first()
        context["device"] = device
    device = context["device"]
    if device is not None and not device.confirmed:
        uri = twofactor.provisioning_uri(secret=device.secret, account=user.email or user.get_username())
        context.update(qr_svg=twofactor.qr_svg(uri), secret=device.secret)
    status = 400 if context.get("error") else 200
    return render(request, "accounts/security.html", context, status=status)


@_staff_required
@require_POST
def desk_language(request: HttpRequest) -> HttpResponse:
    """The agent's desk language (their profile): every desk page, live fragment and bell
    notification renders in it; blank follows the browser."""
    try:
        code = services.staff_language_set(user=request.user, language=request.POST.get("language", ""))
    except ApplicationError as exc:
        flash.error(request, exc.message)
        return redirect("desk-security")
    return language_chosen(request, redirect(safe_next(request, reverse("desk-security"))), code)


def security_url() -> str:
    return reverse("desk-security")


@_staff_required
@never_cache
def staff(request: HttpRequest) -> HttpResponse:
    """Admins: every staff user's role and teams (404 for everyone else)."""
    from django.contrib.auth import get_user_model
    from django.http import Http404

    from tickets.models import Team

    from .roles import ROLES, is_admin, role_from_groups

    if not is_admin(request.user):
        raise Http404("no such page")
    User = get_user_model()
    if request.method == "POST":
        member = User.objects.filter(pk=request.POST.get("user"), is_staff=True).first()
        if member is None:
            raise Http404("no such staff user")
        team_ids = [int(t) for t in request.POST.getlist("teams") if t.isdecimal()]
        try:
            services.staff_access_set(
                user=member, role=request.POST.get("role", ""), team_ids=team_ids, by=request.user
            )
            flash.success(request, _("Saved %(name)s.") % {"name": member.get_username()})
        except ApplicationError as exc:
            flash.error(request, exc.message)
        return redirect("desk-staff")
    people = list(
        User.objects.filter(is_staff=True, is_active=True).prefetch_related("groups", "teams").order_by("username")
    )
    rows = [
        {"user": person, "role": role_from_groups(person), "teams": {t.pk for t in person.teams.all()}}
        for person in people
    ]
    return render(
        request,
        "accounts/staff.html",
        {"rows": rows, "roles": ROLES, "teams": list(Team.objects.order_by("name"))},
    )
