"""TOTP (pyotp) and recovery codes for staff, and when two-factor is required.

`CXDESK_2FA_REQUIRED_ROLES` (env, comma-separated: e.g. `admin,supervisor`) lists the roles
that must use two-factor; a user who enrolled is always asked for a code. The session
remembers a completed second step under SESSION_KEY."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

import pyotp
import segno
from django.conf import settings

from .roles import user_role

SESSION_KEY = "cxdesk_2fa_verified"
NEEDED_KEY = "cxdesk_2fa_needed"  # computed once per session (no query on every request)
PENDING_KEY = "cxdesk_2fa_pending"  # {"user": id, "backend": path, "next": url, "at": epoch}
ISSUER = "cxdesk"
RECOVERY_CODES = 10


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(*, secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """An inline <svg> of the QR code, made here (no external image service)."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#1d2430", light="#fff", omitsize=False)


def totp_match(*, secret: str, code: str, last_step: int, at: float | None = None) -> int | None:
    """The time step the code belongs to (±1 step of drift), or None; a step at or
    before `last_step` is refused (replay)."""
    code = "".join(code.split())
    if not code.isdecimal() or len(code) != 6:
        return None
    now = time.time() if at is None else at
    totp = pyotp.TOTP(secret)
    step_now = int(now // totp.interval)
    for step in (step_now, step_now - 1, step_now + 1):
        if step > last_step and secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like `k7m2q-xd4pa` (50 random bits each)."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def recovery_hash(code: str) -> str:
    normalized = "".join(code.lower().split()).replace("-", "")
    return hashlib.sha256(normalized.encode()).hexdigest()


def required_roles() -> set[str]:
    value = getattr(settings, "CXDESK_2FA_REQUIRED_ROLES", "")
    if isinstance(value, str):
        value = value.split(",")
    return {v.strip() for v in value if v.strip()}


def has_device(user) -> bool:
    from .models import TotpDevice

    return TotpDevice.objects.filter(user=user, confirmed=True).exists()


def required_for(user) -> bool:
    roles = required_roles()
    return bool(roles) and user_role(user) in roles


def scope_ok(scope) -> bool:
    """`session_ok` for a websocket scope (Channels' AuthMiddlewareStack puts the session
    and user there); a scope without a session (tests) is judged by the user alone."""
    user = scope.get("user")
    session = scope.get("session")
    if user is None or not user.is_authenticated or not user.is_staff:
        return True
    if session is not None and session.get(SESSION_KEY):
        return True
    needed = session.get(NEEDED_KEY) if session is not None else None
    if needed is None:
        needed = required_for(user) or has_device(user)
    return not needed


def session_ok(request) -> bool:
    """May this session-authenticated staff user act? True unless two-factor applies to
    them (required by role, or enrolled) and this session has not passed it."""
    user = request.user
    if not (user.is_authenticated and user.is_staff):
        return True
    session = request.session
    if session.get(SESSION_KEY):
        return True
    needed = session.get(NEEDED_KEY)
    if needed is None:
        # Decided once per session, at its first request: a role made to require
        # two-factor, or an enrolment made in another session, applies from the next sign-in.
        needed = session[NEEDED_KEY] = required_for(user) or has_device(user)
    return not needed
