"""Tracked links in outgoing emails: a signed, expiring token (customer id + message id)
appended to links to the company's site. The web-chat widget on that page hands the
token back; `tracked_link_read` says who it was and which email brought them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing

SALT = "cxdesk.tracked-link"
PARAM = "cx_t"
# A placeholder usable in canned responses and reply bodies: {tracked_link:https://…}
PLACEHOLDER = re.compile(r"\{tracked_link:(https?://[^\s}]+)\}")


@dataclass
class TrackedLink:
    customer_id: int
    message_id: int | None


def tracked_link_token(*, customer_id: int, message_id: int | None) -> str:
    return signing.dumps({"c": customer_id, "m": message_id}, salt=SALT, compress=True)


def tracked_link_url(url: str, *, customer_id: int, message_id: int | None) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != PARAM]
    query.append((PARAM, tracked_link_token(customer_id=customer_id, message_id=message_id)))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def tracked_links_expand(text: str, *, customer_id: int, message_id: int | None) -> str:
    """Replace each {tracked_link:URL} placeholder with the URL carrying a token."""
    return PLACEHOLDER.sub(
        lambda m: tracked_link_url(m.group(1), customer_id=customer_id, message_id=message_id), text or ""
    )


def tracked_link_read(token: str) -> TrackedLink | None:
    """The link's customer and message, or None when forged, malformed or expired."""
    if not token or len(token) > 500:
        return None
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.CXDESK_TRACKED_LINK_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        return None
    message_id = data.get("m")
    return TrackedLink(customer_id=data["c"], message_id=message_id if isinstance(message_id, int) else None)
