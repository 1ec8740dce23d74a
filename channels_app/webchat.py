"""Web chat, the service side: one protocol for both transports.

The widget sends small JSON frames (`{"type": …}`); `dispatch()` validates each one,
calls the service for it and returns the frames to send back. The websocket consumer
(`consumers.WebchatConsumer`) and the HTTP fallback (`webchat_views`) are thin callers,
so both transports behave the same. Nothing here raises on bad input: a bad frame gets
`{"type": "error", "code", "message"}`.

The visitor is named by a signed token (django.core.signing: visitor id + inbox id), kept
in the browser's localStorage; the id alone is never accepted. A visitor is anonymous
until they write (a `webchat` identity and a new customer), give an address (an unknown
one is added to their customer; one that belongs to someone else only after the one-time
code sent to it), or open a tracked email link (customers.tracking).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from customers.models import Customer, Identity, PageView
from customers.normalize import normalize_address
from customers.services import (
    customer_language_set,
    identity_add,
    live_customer,
    merge_customers,
    page_view_record,
    page_views_link,
)
from customers.tracking import tracked_link_read
from cxdesk.errors import ApplicationError
from cxdesk.i18n import clean_language, in_language
from cxdesk.realtime import group_send
from tickets.models import Message, Ticket
from tickets.services import message_set_status

from .adapters.webchat import INVITATION_RULES, invitation_rules, visitor_seen
from .models import Channel, ChatInvitation, ChatVisitor, Inbox
from .services import IngestResult, ingest
from .types import InboundAttachment, InboundMessage, SenderRef

log = logging.getLogger(__name__)

VISITOR_SALT = "cxdesk.webchat.visitor"
TOKEN_MAX_AGE = 365 * 24 * 3600
CODE_TTL = 15 * 60
CODE_ATTEMPTS = 5
HISTORY_LIMIT = 100


@dataclass
class Session:
    inbox: Inbox
    visitor: ChatVisitor | None = None


# --- tokens ---------------------------------------------------------------------------


def visitor_token(visitor: ChatVisitor) -> str:
    return signing.dumps({"v": visitor.visitor_id, "i": visitor.inbox_id}, salt=VISITOR_SALT)


def visitor_from_token(*, inbox: Inbox, token: str) -> ChatVisitor | None:
    if not isinstance(token, str) or not token or len(token) > 300:
        return None
    try:
        data = signing.loads(token, salt=VISITOR_SALT, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("i") != inbox.pk:
        return None
    return (
        ChatVisitor.objects.select_related("identity__customer").filter(inbox=inbox, visitor_id=data.get("v")).first()
    )


def visitor_customer(visitor: ChatVisitor) -> Customer | None:
    if visitor.identity_id is None:
        return None
    return live_customer(visitor.identity.customer)


# --- services -------------------------------------------------------------------------


@transaction.atomic
def chat_language_set(*, visitor: ChatVisitor, language: str) -> str:
    """The widget's language switcher: the visitor's language, and their customer's when
    identified (automatic messages follow it)."""
    code = clean_language(language)
    if not code:
        raise ApplicationError("unknown language", code="invalid", fields={"lang": ["unknown"]})
    if code != visitor.language:
        visitor.language = code
        visitor.save(update_fields=["language", "last_seen_at"])
    customer = visitor_customer(visitor)
    if customer is not None:
        customer_language_set(customer=customer, language=code)
    return code


@transaction.atomic
def chat_session_start(
    *, inbox: Inbox, token: str = "", link: str = "", language: str = ""
) -> tuple[ChatVisitor, bool]:
    """The visitor named by `token`, or a new one. `link` is a tracked email link's token:
    it identifies the customer and remembers which email brought them."""
    visitor = visitor_from_token(inbox=inbox, token=token) if token else None
    created = visitor is None
    if visitor is None:
        visitor = ChatVisitor.objects.create(inbox=inbox, visitor_id=secrets.token_hex(16))
    if language and language != visitor.language:
        visitor.language = language[:8]
        visitor.save(update_fields=["language", "last_seen_at"])
    tracked = tracked_link_read(link) if link else None
    if tracked is not None:
        customer = Customer.objects.filter(pk=tracked.customer_id).first()
        if customer is not None:
            _link_to_customer(visitor, live_customer(customer))
            visitor.verified = True
            visitor.came_from_message_id = (
                tracked.message_id if Message.objects.filter(pk=tracked.message_id).exists() else None
            )
            visitor.save(update_fields=["verified", "came_from_message", "last_seen_at"])
    return visitor, created


def _ensure_identity(visitor: ChatVisitor) -> Identity:
    if visitor.identity_id is None:
        from customers.services import identity_resolve

        identity, _created = identity_resolve(kind="webchat", address=visitor.visitor_id, display_name=visitor.name)
        visitor.identity = identity
        visitor.save(update_fields=["identity", "last_seen_at"])
        page_views_link(visitor_id=visitor.visitor_id, customer=identity.customer)
    return visitor.identity


def _link_to_customer(visitor: ChatVisitor, customer: Customer) -> None:
    """Make `customer` the visitor's: a fresh identity on it, or the anonymous customer
    the visitor had so far merged into it (tickets, identities, pages move)."""
    if visitor.identity_id is None:
        existing = Identity.objects.filter(kind="webchat", address=visitor.visitor_id).first()
        visitor.identity = existing or Identity.objects.create(
            customer=customer, kind="webchat", address=visitor.visitor_id, display_name=visitor.name[:200]
        )
        visitor.save(update_fields=["identity", "last_seen_at"])
    current = live_customer(visitor.identity.customer)
    if current.pk != customer.pk:
        merge_customers(keep=customer, other=current)
        visitor.identity.refresh_from_db()
    page_views_link(visitor_id=visitor.visitor_id, customer=customer)


def chat_message_receive(
    *, visitor: ChatVisitor, text: str, client_id: str, attachments: list[InboundAttachment] | None = None
) -> IngestResult:
    """A visitor's message into the ingest pipeline (once per client_id)."""
    text = (text or "").strip()
    if not text and not attachments:
        raise ApplicationError(_("Write a message first."), code="empty_body", fields={"text": ["required"]})
    if len(text) > settings.CXDESK_WEBCHAT_MAX_TEXT:
        raise ApplicationError(
            _("That message is too long (at most %(n)s characters).") % {"n": settings.CXDESK_WEBCHAT_MAX_TEXT},
            code="too_long",
            fields={"text": ["too long"]},
        )
    if not isinstance(client_id, str) or not 1 <= len(client_id) <= 64:
        raise ApplicationError("client_id is 1–64 characters", code="invalid", fields={"client_id": ["required"]})
    with transaction.atomic():
        identity = _ensure_identity(visitor)
    metadata: dict[str, Any] = {"webchat_visitor": visitor.visitor_id}
    if visitor.came_from_message_id:
        metadata["came_from_message"] = visitor.came_from_message_id
    return ingest(
        InboundMessage(
            inbox=visitor.inbox,
            channel=Channel.CHAT,
            sender=SenderRef(kind="webchat", address=identity.address, display_name=visitor.name),
            provider_message_id=f"webchat:{visitor.visitor_id}:{client_id}",
            text=text,
            attachments=attachments or [],
            metadata=metadata,
            language=visitor.language,
        )
    )


def visitor_tickets(visitor: ChatVisitor):
    """The tickets this visitor may read in the widget: those their own chat identity wrote in."""
    if visitor.identity_id is None:
        return Ticket.objects.none()
    return Ticket.objects.filter(messages__identity_id=visitor.identity_id).distinct()


def visitor_ticket(visitor: ChatVisitor) -> Ticket | None:
    return visitor_tickets(visitor).order_by("-last_message_at", "-id").first()


def chat_history(*, visitor: ChatVisitor, after: int = 0) -> list[dict]:
    """The visitor's public messages (no notes, ever), oldest first, the last 100."""
    ticket = visitor_ticket(visitor)
    if ticket is None:
        return []
    qs = (
        Message.objects.filter(ticket=ticket, pk__gt=after)
        .exclude(direction=Message.Direction.NOTE)
        .select_related("author")
        .prefetch_related("attachments")
        .order_by("-id")[:HISTORY_LIMIT]
    )
    return [message_frame(m, visitor) for m in reversed(list(qs))]


FILE_SALT = "cxdesk.webchat.file"
FILE_MAX_AGE = 24 * 3600


def attachment_url(visitor: ChatVisitor, attachment_id: int) -> str:
    """A link only this visitor's widget gets (signed: visitor + attachment; one day)."""
    token = signing.dumps({"a": attachment_id, "v": visitor.visitor_id}, salt=FILE_SALT)
    return f"{settings.PUBLIC_URL}/chat/{visitor.inbox_id}/file/{token}/"


def attachment_for_visitor(*, inbox: Inbox, token: str):
    """The attachment a signed link names, if it is on a public message of that visitor's chats."""
    from tickets.models import Attachment

    try:
        data = signing.loads(token, salt=FILE_SALT, max_age=FILE_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("a"), int):
        return None
    visitor = ChatVisitor.objects.select_related("identity").filter(inbox=inbox, visitor_id=data.get("v")).first()
    if visitor is None:
        return None
    return (
        Attachment.objects.filter(pk=data["a"], message__ticket__in=visitor_tickets(visitor))
        .exclude(message__direction=Message.Direction.NOTE)
        .first()
    )


def message_frame(message: Message, visitor: ChatVisitor | None = None) -> dict:
    author = ""
    if message.author_id:
        author = message.author.first_name or message.author.username
    return {
        "type": "message",
        "id": message.pk,
        "from": "visitor" if message.direction == Message.Direction.INBOUND else "agent",
        "text": message.body_text,
        "author": author,
        "at": message.created_at.isoformat(),
        "status": message.status,
        "attachments": [
            {"name": a.filename, "size": a.size, **({"url": attachment_url(visitor, a.pk)} if visitor else {})}
            for a in message.attachments.all()
        ],
    }


def visitor_message(*, visitor: ChatVisitor, message_id: int) -> dict | None:
    """One outbound message for the visitor's socket, only if it is theirs and public."""
    if visitor.identity_id is None:
        return None
    message = (
        Message.objects.filter(pk=message_id, ticket__in=visitor_tickets(visitor))
        .exclude(direction=Message.Direction.NOTE)
        .select_related("author")
        .prefetch_related("attachments")
        .first()
    )
    return message_frame(message, visitor) if message else None


def chat_mark_read(*, visitor: ChatVisitor, message_id: int) -> int:
    """The visitor saw agent messages up to `message_id`: they become `read`."""
    ticket = visitor_ticket(visitor)
    if ticket is None:
        return 0
    changed = 0
    for message in Message.objects.filter(
        ticket=ticket, direction=Message.Direction.OUTBOUND, pk__lte=message_id
    ).exclude(status__in=[Message.Status.READ, Message.Status.FAILED, Message.Status.QUEUED]):
        changed += message_set_status(message=message, status=Message.Status.READ)
    return changed


TYPING_EVERY = 3  # seconds: a visitor's keystrokes reach the desk at most this often


def chat_typing(*, visitor: ChatVisitor) -> bool:
    """Tell the agents on the visitor's ticket that they are typing (coalesced)."""
    ticket = visitor_ticket(visitor)
    if ticket is None or not cache.add(f"cxdesk:webchat:typing:{visitor.visitor_id}", 1, TYPING_EVERY):
        return False
    group_send(f"ticket.{ticket.pk}", "visitor.typing", ticket_id=ticket.pk)
    return True


# --- identification -------------------------------------------------------------------


def _code_key(visitor: ChatVisitor) -> str:
    return f"cxdesk:webchat:code:{visitor.visitor_id}"


def _hash(code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), code.encode(), hashlib.sha256).hexdigest()


def chat_identify(*, visitor: ChatVisitor, address: str, name: str = "") -> str:
    """The visitor gives a name and an email (or phone). Returns "linked" when the address
    was unknown (added to their customer) or already theirs, "code_sent" when it belongs
    to another customer: the visitor proves it with the code before anything is linked."""
    address = (address or "").strip()
    name = (name or "").strip()[:200]
    if len(address) > 320:
        raise ApplicationError(_("Enter an email address or a phone number."), code="invalid_address")
    kind = "email" if "@" in address else "phone"
    if address:
        try:
            normalized = normalize_address(kind, address, visitor.inbox.default_region)
        except ApplicationError:
            raise ApplicationError(
                _("Enter an email address or a phone number."),
                code="invalid_address",
                fields={"address": ["invalid"]},
            ) from None
    with transaction.atomic():
        visitor = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
        if name:
            visitor.name = name
            visitor.save(update_fields=["name", "last_seen_at"])
        if not address:
            if visitor.identity_id and name:
                Customer.objects.filter(pk=visitor.identity.customer_id, name="").update(name=name)
            return "linked"
        identity = _ensure_identity(visitor)
        customer = live_customer(identity.customer)
        if name and not customer.name:
            customer.name = name
            customer.save(update_fields=["name", "updated_at"])
        owner = Identity.objects.filter(kind=kind, address=normalized).first()
        if owner is None:
            identity_add(customer=customer, kind=kind, address=normalized)
            return "linked"
        if live_customer(owner.customer).pk == customer.pk:
            return "linked"
        visitor.pending_address = f"{kind}:{normalized}"
        visitor.save(update_fields=["pending_address", "last_seen_at"])
    if cache.get(f"{_code_key(visitor)}:sent", 0) >= 5:
        raise ApplicationError(_("Too many codes asked for; try again later."), code="rate_limited", status=429)
    code = f"{secrets.randbelow(10**6):06d}"
    cache.set(_code_key(visitor), {"hash": _hash(code), "address": visitor.pending_address, "tries": 0}, CODE_TTL)
    cache.set(f"{_code_key(visitor)}:sent", cache.get(f"{_code_key(visitor)}:sent", 0) + 1, CODE_TTL)
    _send_code(kind, normalized, code, language=visitor.language)
    return "code_sent"


def _send_code(kind: str, address: str, code: str, *, language: str = "") -> None:
    with in_language(language):  # the widget's language, wherever the code is asked from
        text = _("Your code to continue the chat: %(code)s (valid for 15 minutes).") % {"code": code}
        subject = _("Your chat code")
    if kind == "email":
        transaction.on_commit(lambda: send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [address]))
        return
    from .outbound import system_sms_send

    transaction.on_commit(lambda: system_sms_send(to=address, text=text))


@transaction.atomic
def chat_verify(*, visitor: ChatVisitor, code: str) -> bool:
    """Check the one-time code; on success the visitor becomes the address's customer."""
    key = _code_key(visitor)
    record = cache.get(key)
    if not record:
        raise ApplicationError(_("That code has expired; ask for a new one."), code="code_expired")
    if record["tries"] >= CODE_ATTEMPTS:
        cache.delete(key)
        raise ApplicationError(_("Too many wrong codes; ask for a new one."), code="rate_limited", status=429)
    if not hmac.compare_digest(record["hash"], _hash((code or "").strip())):
        record["tries"] += 1
        cache.set(key, record, CODE_TTL)
        raise ApplicationError(_("That code is not right."), code="wrong_code", fields={"code": ["wrong"]})
    cache.delete(key)
    kind, _sep, address = record["address"].partition(":")
    owner = Identity.objects.select_related("customer").filter(kind=kind, address=address).first()
    visitor = ChatVisitor.objects.select_for_update(of=("self",)).select_related("identity").get(pk=visitor.pk)
    if owner is None:
        identity_add(customer=live_customer(_ensure_identity(visitor).customer), kind=kind, address=address)
    else:
        _link_to_customer(visitor, live_customer(owner.customer))
    visitor.pending_address = ""
    visitor.verified = True
    visitor.save(update_fields=["pending_address", "verified", "last_seen_at"])
    return True


# --- the trail and invitations -----------------------------------------------------------


def chat_page_view(*, visitor: ChatVisitor, url: str, title: str = "", referrer: str = "") -> int:
    """Record one page (URL, title, referrer: nothing typed). Returns how many times this
    visitor has seen that URL (for the "returning" invitation rule)."""
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or len(url) > 2000:
        raise ApplicationError("url must be an http(s) URL", code="invalid", fields={"url": ["invalid"]})
    customer = visitor_customer(visitor)
    with transaction.atomic():
        page_view_record(
            url=url,
            title=title if isinstance(title, str) else "",
            referrer=referrer if isinstance(referrer, str) else "",
            customer=customer,
            visitor_id=visitor.visitor_id,
            email_message_id=visitor.came_from_message_id if "cx_t=" in url else None,
        )
    return PageView.objects.filter(visitor_id=visitor.visitor_id, url=url).count()


def rule_matches(rule: dict, url: str) -> bool:
    pattern = rule.get("url") or "*"
    path = urlsplit(url).path or "/"
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(url, pattern)


@transaction.atomic
def invitation_record(*, visitor: ChatVisitor, rule_index: int, url: str) -> ChatInvitation:
    rules = invitation_rules(visitor.inbox)
    if not isinstance(rule_index, int) or not 0 <= rule_index < len(rules):
        raise ApplicationError("no such invitation rule", code="invalid", fields={"rule": ["unknown"]})
    rule = rules[rule_index].get("rule")
    if rule not in INVITATION_RULES:
        raise ApplicationError("no such invitation rule", code="invalid", fields={"rule": ["unknown"]})
    return ChatInvitation.objects.create(
        visitor=visitor, rule=rule, url=(url or "")[:2000] if isinstance(url, str) else ""
    )


@transaction.atomic
def invitation_decide(*, visitor: ChatVisitor, invitation_id: int, accepted: bool) -> None:
    updated = ChatInvitation.objects.filter(
        pk=invitation_id, visitor=visitor, outcome=ChatInvitation.Outcome.SHOWN
    ).update(
        outcome=ChatInvitation.Outcome.ACCEPTED if accepted else ChatInvitation.Outcome.IGNORED,
        decided_at=timezone.now(),
    )
    if not updated:
        raise ApplicationError("no open invitation with that id", code="not_found", status=404)


# --- the protocol -----------------------------------------------------------------------


def error_frame(code: str, message: str, fields: dict | None = None) -> dict:
    return {"type": "error", "code": code, "message": message, "fields": fields or {}}


def session_frame(visitor: ChatVisitor) -> dict:
    came_from = None
    if visitor.came_from_message_id:
        came_from = visitor.came_from_message_id
    ticket = visitor_ticket(visitor)
    return {
        "type": "session",
        "token": visitor_token(visitor),
        "name": visitor.name,
        "identified": visitor.verified or bool(visitor.identity_id and _has_address(visitor)),
        "pending": bool(visitor.pending_address),
        "came_from_email": bool(came_from),
        "ticket": ticket.reference if ticket else None,
        "messages": chat_history(visitor=visitor),
    }


def _has_address(visitor: ChatVisitor) -> bool:
    return Identity.objects.filter(customer_id=visitor.identity.customer_id, kind__in=["email", "phone"]).exists()


def dispatch(session: Session, frame: Any) -> list[dict]:
    """Handle one frame from the widget; never raises for bad input."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return [error_frame("invalid", "a frame is a JSON object with a type")]
    kind = frame["type"]
    try:
        if kind == "start":
            visitor, _created = chat_session_start(
                inbox=session.inbox,
                token=_str(frame.get("token")),
                link=_str(frame.get("link")),
                language=_str(frame.get("lang"))[:8],
            )
            session.visitor = visitor
            return [session_frame(visitor)]
        visitor = session.visitor
        if visitor is None:
            return [error_frame("no_session", "send a start frame first")]
        if kind == "message":
            result = chat_message_receive(
                visitor=visitor, text=_str(frame.get("text")), client_id=_str(frame.get("client_id"))
            )
            visitor.refresh_from_db()
            session.visitor = visitor
            return [
                {"type": "ack", "client_id": frame.get("client_id"), "id": result.message.pk},
                message_frame(result.message, visitor),
            ]
        if kind == "language":
            code = chat_language_set(visitor=visitor, language=_str(frame.get("lang"))[:16])
            return [{"type": "language", "lang": code}]
        if kind == "read":
            message_id = frame.get("id")
            if not isinstance(message_id, int):
                return [error_frame("invalid", "read takes an integer id", {"id": ["invalid"]})]
            chat_mark_read(visitor=visitor, message_id=message_id)
            return []
        if kind == "identify":
            status = chat_identify(visitor=visitor, address=_str(frame.get("address")), name=_str(frame.get("name")))
            session.visitor = ChatVisitor.objects.select_related("identity").get(pk=visitor.pk)
            return [{"type": "identify", "status": status}]
        if kind == "verify":
            chat_verify(visitor=visitor, code=_str(frame.get("code")))
            session.visitor = ChatVisitor.objects.select_related("identity").get(pk=visitor.pk)
            return [{"type": "identify", "status": "verified"}, session_frame(session.visitor)]
        if kind == "page":
            visits = chat_page_view(
                visitor=visitor,
                url=_str(frame.get("url")),
                title=_str(frame.get("title")),
                referrer=_str(frame.get("referrer")),
            )
            return [{"type": "page", "visits": visits}]
        if kind == "invitation":
            invitation = invitation_record(visitor=visitor, rule_index=frame.get("rule"), url=_str(frame.get("url")))
            return [{"type": "invitation", "id": invitation.pk}]
        if kind == "invitation_outcome":
            invitation_id = frame.get("id")
            if not isinstance(invitation_id, int):
                return [error_frame("invalid", "invitation_outcome takes an integer id", {"id": ["invalid"]})]
            invitation_decide(visitor=visitor, invitation_id=invitation_id, accepted=frame.get("accepted") is True)
            return []
        if kind == "history":
            after = frame.get("after", 0)
            return [
                {
                    "type": "history",
                    "messages": chat_history(visitor=visitor, after=after if isinstance(after, int) else 0),
                }
            ]
        if kind == "typing":
            chat_typing(visitor=visitor)
            return []
        if kind == "ping":
            visitor_seen(visitor.visitor_id)  # the desk's "is the visitor still here?"
            return [{"type": "pong"}]
    except ApplicationError as exc:
        return [error_frame(exc.code, exc.message, exc.fields)]
    return [error_frame("invalid", f"unknown frame type {kind[:40]!r}")]


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
