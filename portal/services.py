"""Portal sign-in without a password: a single-use magic link by email, or a one-time
code by SMS. Same answer whether or not the address is known; rate-limited; hashed."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer, Identity, PortalToken
from customers.normalize import normalize_address
from cxdesk.errors import ApplicationError
from cxdesk.i18n import for_customer

log = logging.getLogger(__name__)
TTL = timedelta(minutes=15)
MAX_REQUESTS = 5  # per address and per IP, per TTL
MAX_CODE_ATTEMPTS = 5


def _hash(secret: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def _limited(key: str) -> bool:
    count = cache.get_or_set(key, 0, int(TTL.total_seconds()))
    if count >= MAX_REQUESTS:
        return True
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, int(TTL.total_seconds()))
    return False


def portal_request_sign_in(*, address: str, ip: str, base_url: str) -> str:
    """Send a link (email) or a code (phone) if the address is a known identity. Returns
    the kind asked for ("link" or "code") — never whether the address exists."""
    address = (address or "").strip()
    kind = "email" if "@" in address else "phone"
    try:
        normalized = normalize_address(kind, address, settings.CXDESK_DEFAULT_REGION)
    except ApplicationError:
        raise ApplicationError(_("Enter an email address or a phone number."), code="invalid_address") from None
    if _limited(f"portal:ip:{ip}") or _limited(f"portal:addr:{normalized}"):
        raise ApplicationError(
            _("Too many sign-in requests; try again in 15 minutes."), code="rate_limited", status=429
        )
    identity = (
        Identity.objects.select_related("customer")
        .filter(kind=kind, address=normalized, customer__merged_into=None)
        .first()
    )
    if identity is None:
        log.info("portal sign-in for an unknown %s", kind)
        return "link" if kind == "email" else "code"
    if kind == "email":
        token = secrets.token_urlsafe(32)
        _store(identity, PortalToken.Kind.LINK, token)
        link = f"{base_url}/portal/sign-in/{token}/"
        with for_customer(identity.customer):
            subject = _("Your sign-in link")
            body = _("Open this link to see your requests (valid for 15 minutes, once):")
        body = f"{body}\n\n{link}\n"
        transaction.on_commit(lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [identity.address]))
        return "link"
    code = f"{secrets.randbelow(10**6):06d}"
    _store(identity, PortalToken.Kind.CODE, code)
    transaction.on_commit(lambda: _send_code(identity, code))
    return "code"


def _store(identity: Identity, kind: str, secret: str) -> PortalToken:
    return PortalToken.objects.create(
        identity=identity, kind=kind, token_hash=_hash(secret), expires_at=timezone.now() + TTL
    )


def _send_code(identity: Identity, code: str) -> None:
    from channels_app.outbound import system_sms_send

    with for_customer(identity.customer):
        text = _("Your sign-in code: %(code)s") % {"code": code}
    system_sms_send(to=identity.address, text=text)


@transaction.atomic
def portal_redeem_link(*, token: str) -> Customer | None:
    record = (
        PortalToken.objects.select_for_update()
        .select_related("identity__customer")
        .filter(token_hash=_hash(token), kind=PortalToken.Kind.LINK)
        .first()
    )
    return _redeem(record)


@transaction.atomic
def portal_redeem_code(*, address: str, code: str) -> Customer | None:
    try:
        normalized = normalize_address("phone", address, settings.CXDESK_DEFAULT_REGION)
    except ApplicationError:
        return None
    record = (
        PortalToken.objects.select_for_update()
        .select_related("identity__customer")
        .filter(identity__kind="phone", identity__address=normalized, kind=PortalToken.Kind.CODE, used_at=None)
        .order_by("-created_at")
        .first()
    )
    if record is None:
        return None
    if not hmac.compare_digest(record.token_hash, _hash(code.strip())):
        record.attempts += 1
        if record.attempts >= MAX_CODE_ATTEMPTS:
            record.used_at = timezone.now()  # burn it: no brute force
        record.save(update_fields=["attempts", "used_at"])
        return None
    return _redeem(record)


def _redeem(record: PortalToken | None) -> Customer | None:
    if record is None or record.used_at is not None or record.expires_at < timezone.now():
        return None
    record.used_at = timezone.now()
    record.save(update_fields=["used_at"])
    from customers.services import live_customer

    return live_customer(record.identity.customer)
