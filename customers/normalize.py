"""Address normalisation, shared by ingest, the API lookup and the desk."""

from __future__ import annotations

import functools
import re
from email.utils import parseaddr

import phonenumbers

from cxdesk.errors import ApplicationError

_LOCAL_ATOM = re.compile(r"^[^@\s\"(),:;<>\[\]\\]+$")
_LOCAL_QUOTED = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"$')
_DOMAIN = re.compile(r"^(?:[^@\s\"(),:;<>\\.]+(?:\.[^@\s\"(),:;<>\\.]+)*|\[[^\[\]\s]+\])$")


def normalize_email(value: str) -> str:
    """Lower-case `local@domain` as RFC 5322 allows it: a quoted local part (with spaces),
    a domain without a dot (`user@intranet`), a trailing dot (`name@yahoo.com.` →
    `name@yahoo.com`), an address in angle brackets or with a display name. A quoted local
    part that needs no quotes loses them (`"ann"@x.org` → `ann@x.org`)."""
    raw = (value or "").strip()
    if "<" in raw and raw.endswith(">"):
        raw = raw[raw.rindex("<") + 1 : -1].strip()
    elif not raw.startswith('"'):
        raw = parseaddr(raw)[1].strip() or raw
    local, at, domain = raw.rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if local.startswith('"') and _LOCAL_QUOTED.match(local):
        inner = local[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if _LOCAL_ATOM.match(inner) and not inner.startswith(".") and ".." not in inner and not inner.endswith("."):
            local = inner
    elif not _LOCAL_ATOM.match(local or " "):
        local = ""
    if not at or not local or not _DOMAIN.match(domain) or len(local) > 128 or len(domain) > 255:
        raise ApplicationError(f"not a valid email address: {value!r}", code="invalid_email")
    return f"{local.lower()}@{domain}"


def normalize_phone(value: str, region: str | None = None) -> str:
    """E.164 from any common notation: '+48 600 100 200', '0048600100200',
    '600 100 200' (with the inbox's default region), 'whatsapp:+48600100200'."""
    raw = (value or "").strip()
    for prefix in ("whatsapp:", "sms:", "tel:"):
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix) :]
    raw = raw.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    elif raw and raw[0].isdecimal() and region is None and len(re.sub(r"\D", "", raw)) > 10:
        raw = "+" + raw  # WhatsApp Cloud API sends wa_id without '+'
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ApplicationError(f"not a valid phone number: {value!r} ({exc})", code="invalid_phone") from None
    if not phonenumbers.is_possible_number(number):
        raise ApplicationError(f"not a valid phone number: {value!r}", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=4096)
def normalize_address(kind: str, value: str, region: str | None = None) -> str:
    """The address as stored, or ApplicationError saying why it is none. Kept for the last
    4,096 addresses asked (a pure function; phonenumbers takes ~0.1 ms a number, and a
    drainer's batch asks it twice per sender: reading the batch's senders, then storing)."""
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, region)
    value = (value or "").strip()
    if not value:
        raise ApplicationError(f"empty {kind} address", code="invalid_address")
    return value
