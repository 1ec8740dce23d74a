"""Email: RFC 5322 in (ingest_mail, the inbound API, IMAP, ESP webhooks), SMTP/ESP out
through Django's email backends."""

from __future__ import annotations

import email
import email.policy
import functools
import hashlib
import logging
import re
from email.errors import HeaderParseError
from email.headerregistry import Address, HeaderRegistry
from email.message import EmailMessage
from email.utils import formataddr, make_msgid, parsedate_to_datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives

from customers.normalize import normalize_email
from cxdesk.errors import ApplicationError
from cxdesk.i18n import first_accepted
from cxdesk.sanitize import html_to_text

from ..mail_decode import decode_bytes, decode_header, header_addresses, parse_mailbox
from ..models import Channel, Inbox
from ..types import InboundAttachment, InboundMessage, OutboundMessage, SenderRef, SendError
from . import register
from .base import Adapter

log = logging.getLogger(__name__)

_MSGID_RE = re.compile(r"<[^<>\s]+>")


class _ParsedOnce(HeaderRegistry):
    """The default policy's header classes, each (name, value) parsed once per process (the
    last few thousand kept): a parsed header is immutable, a mail asks for its Content-Type
    several times (walking the MIME tree, the charset, the auto-submitted check) and many
    mails share theirs. Parsing headers was a third of parsing a mail."""

    def __init__(self) -> None:
        super().__init__()
        self._parse = functools.lru_cache(maxsize=4096)(super().__call__)

    def __call__(self, name: str, value: str):
        return self._parse(name, value)


POLICY = email.policy.default.clone(header_factory=_ParsedOnce())


def _header(msg: EmailMessage, name: str) -> str:
    """A header as text, never raising on broken encodings."""
    try:
        value = msg.get(name)
    except Exception:  # malformed header the policy cannot parse
        value = msg.get_all(name, failobj=[""])[0] if hasattr(msg, "get_all") else ""
    if value is None:
        return ""
    try:
        return str(value).strip()
    except Exception:
        return repr(value)


def _raw_headers(msg: EmailMessage) -> dict[str, str]:
    """The first raw value of each header (lower-case name), as written on the wire."""
    found: dict[str, str] = {}
    for name, value in msg.raw_items():
        found.setdefault(name.lower(), value if isinstance(value, str) else str(value))
    return found


def _msgids(value: str) -> list[str]:
    return _MSGID_RE.findall(value or "")


def _part_text(part) -> str:
    """Decoded text of a part as its writer meant it (see mail_decode.decode_bytes)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a payload the parser cannot decode: read it raw
        payload = None
    if payload is None:
        raw = part.get_payload()
        payload = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""
    try:
        charset = part.get_content_charset() or part.get_param("charset") or ""
    except Exception:  # noqa: BLE001
        charset = ""
    return decode_bytes(payload, str(charset))


def _clean_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _eml_name(subject: str) -> str:
    stem = re.sub(r"[^\w\- ]+", "", subject or "", flags=re.UNICODE).strip()[:80]
    return f"{stem or 'forwarded message'}.eml"


class _Body:
    """Walks a MIME tree: readable text, HTML, attachments. Forwarded messages
    (message/rfc822) become an .eml attachment and their text stays readable inline."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.html: list[str] = []
        self.attachments: list[InboundAttachment] = []

    def walk(self, part, depth: int = 0) -> None:
        if depth > 20:
            return  # pathological nesting
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            self._forwarded(part, depth)
        elif part.is_multipart():
            for child in part.iter_parts():
                self.walk(child, depth + 1)
        else:
            self._leaf(part, ctype)

    def _forwarded(self, part, depth: int) -> None:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if inner is None:
            return
        content = b""
        for policy in (email.policy.default, email.policy.compat32):
            try:
                content = inner.as_bytes(policy=policy)
                break
            except Exception:  # noqa: S112 - a header the generator cannot fold back: try the lenient policy
                continue
        inner_headers = _raw_headers(inner)
        subject = decode_header(inner_headers.get("subject", ""))
        self.attachments.append(
            InboundAttachment(
                filename=part.get_filename() or _eml_name(subject),
                content_type="message/rfc822",
                content=content,
            )
        )
        sub = _Body()
        sub.walk(inner, depth + 1)
        heading = "---------- Forwarded message ----------\n" + "".join(
            f"{name}: {value}\n"
            for name in ("From", "Date", "Subject", "To")
            if (value := decode_header(inner_headers.get(name.lower(), "")))
        )
        inner_text = "\n\n".join(t.strip("\r\n") for t in sub.text if t.strip())
        if not inner_text.strip() and sub.html:
            inner_text = html_to_text("\n".join(sub.html))
        self.text.append(heading + "\n" + inner_text)
        self.attachments.extend(sub.attachments)

    def _leaf(self, part, ctype: str) -> None:
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if ctype == "text/calendar" and not filename:
            filename = "invite.ics"
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            content = part.get_payload(decode=True)
            if content is None:
                content = b""
            if ctype == "application/pgp-signature" and not filename:
                filename = "signature.asc"
            self.attachments.append(
                InboundAttachment(
                    filename=filename or "",
                    content_type=ctype,
                    content=content,
                    content_id=_header(part, "Content-ID"),
                    inline=disposition == "inline" or (bool(_header(part, "Content-ID")) and disposition is None),
                )
            )
        elif ctype == "text/html":
            self.html.append(_part_text(part))
        else:
            self.text.append(_part_text(part))


# Where a sender is looked for, in order, when From has no usable address.
SENDER_HEADERS = ("from", "reply-to", "sender", "return-path")


def _nul_free(text: str) -> str:
    return text.replace("\x00", "") if "\x00" in text else text


def find_sender(msg: EmailMessage, headers: dict[str, str]) -> tuple[str, str, str, str]:
    """(display name, normalised address, original address, header it came from).

    From first; when From is empty, `Name <>` or not an address, the first usable
    Reply-To, Sender, Return-Path, then the mbox envelope line. Raises ValueError when
    there is none at all."""
    first_name = ""
    for header in SENDER_HEADERS:
        name, address = parse_mailbox(_nul_free(headers.get(header, "")))
        first_name = first_name or name
        if not address:
            continue
        try:
            return name or first_name, normalize_email(address), address, header
        except ApplicationError:
            continue
    envelope = (msg.get_unixfrom() or "").split()
    if len(envelope) > 1 and "@" in envelope[1]:
        try:
            return first_name, normalize_email(envelope[1]), envelope[1], "envelope"
        except ApplicationError:
            pass
    raise ValueError(f"no sender address in From: {headers.get('from', '')!r} (nor Reply-To, Sender, Return-Path)")


def parse_raw(raw: bytes, inbox: Inbox) -> InboundMessage:
    """Parse RFC 5322 bytes into an InboundMessage. Raises ValueError when there is no
    usable sender (everything else degrades gracefully)."""
    msg = email.message_from_bytes(raw, policy=POLICY)
    headers = _raw_headers(msg)
    name, address, original, sender_header = find_sender(msg, headers)

    body = _Body()
    try:
        body.walk(msg)
    except Exception as exc:  # a MIME tree the parser mangled: keep the raw body as text
        log.warning("MIME structure of a mail from %s not fully readable: %s", address, exc)
        raw_body = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[-1] if b"\n\n" in raw.replace(b"\r", b"") else b""
        body.text = [decode_bytes(raw_body, "")]
    text_parts, html_parts, attachments = body.text, body.html, body.attachments
    message_id = (_msgids(headers.get("message-id", "")) or [""])[0]
    subject = _nul_free(decode_header(headers.get("subject", ""))).replace("\r", "").replace("\n", " ")
    text = _nul_free(_clean_text("\n\n".join(t.strip("\r\n") for t in text_parts if t.strip())))
    html = _nul_free("\n".join(html_parts))
    digest = content_digest(
        address=address, subject=subject, date=headers.get("date", ""), text=text, html=html, attachments=attachments
    )
    # No Message-ID: a digest of the bytes still makes a repeat delivery a duplicate.
    provider_id = message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
    received_at = None
    try:
        date = _header(msg, "Date")
        received_at = parsedate_to_datetime(date) if date else None
        if received_at is not None and received_at.tzinfo is None:
            received_at = None
    except (TypeError, ValueError, IndexError):
        received_at = None
    to_addrs = header_addresses(headers.get("to", "")) + header_addresses(headers.get("cc", ""))
    delivered = header_addresses(headers.get("delivered-to", ""))
    metadata: dict = {"to": to_addrs[:20]}
    if sender_header != "from":
        metadata["sender_header"] = sender_header
    if original != address:
        metadata["sender_original"] = original[:320]
    return InboundMessage(
        inbox=inbox,
        channel=Channel.EMAIL,
        sender=SenderRef(kind="email", address=address, display_name=_nul_free(name)),
        provider_message_id=provider_id[:255],
        content_digest=digest if message_id else "",
        subject=subject,
        text=text,
        html=html,
        attachments=attachments,
        email_message_id=message_id,
        in_reply_to=(_msgids(headers.get("in-reply-to", "")) or [""])[0],
        references=_msgids(headers.get("references", "")),
        reply_token=reply_token_from(to_addrs + delivered, inbox),
        auto_submitted=is_auto_submitted(msg, address),
        received_at=received_at,
        metadata=metadata,
        # RFC 3282 Content-Language, or Accept-Language (RFC 3282 §4 / some clients send it).
        language=first_accepted(headers.get("content-language") or headers.get("accept-language") or ""),
    )


def content_digest(*, address: str, subject: str, date: str, text: str, html: str, attachments) -> str:
    """What makes two deliveries the same mail: sender, subject, date, body and attachments —
    not the transport headers that differ between routes (Received, Delivered-To)."""
    h = hashlib.sha256()
    for part in (address, subject, " ".join(date.split()), text, html):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    for att in attachments:
        h.update(hashlib.sha256(att.content or att.url.encode()).digest())
    return h.hexdigest()[:32]


def reply_token_from(addresses: list[str], inbox: Inbox) -> str:
    """support+<token>@example.com → <token> (plus-addressing on the inbox's address)."""
    base = (inbox.config.get("address") or "").lower()
    local, _, domain = base.partition("@")
    for addr in addresses:
        addr = addr.lower()
        a_local, _, a_domain = addr.partition("@")
        if "+" in a_local and (not domain or a_domain == domain):
            head, _, token = a_local.partition("+")
            if not local or head == local:
                return token
    return ""


_NOREPLY = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounce[s]?)([+\-.].*)?@", re.I)


def is_auto_submitted(msg: EmailMessage, sender: str) -> bool:
    """Machine-generated mail that must never get an automatic answer (RFC 3834)."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if _header(msg, "Precedence").lower() in ("bulk", "junk", "list", "auto_reply"):
        return True
    if any(
        _header(msg, h)
        for h in ("List-Id", "List-Unsubscribe", "X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")
    ):
        return True
    if msg.get_content_type() == "multipart/report":
        return True
    # A null reverse-path is what MTAs and autoresponders send with (RFC 3834 §3.3).
    if any(re.fullmatch(r"\s*<\s*>\s*", str(v)) for _n, v in msg.raw_items() if _n.lower() == "return-path"):
        return True
    return bool(_NOREPLY.match(sender or ""))


_LINE_BREAKS = re.compile(r"[\r\n\x00\u2028\u2029\x0b\x0c\x85]+")


def one_line(value: str) -> str:
    """A header value that cannot start a new header: line breaks become spaces."""
    return _LINE_BREAKS.sub(" ", str(value or "")).strip()


def mailbox(name: str, address: str) -> str:
    """`Name <local@domain>` built with email.headerregistry.Address (a name with `<`,
    `,`, quotes or non-ASCII is quoted or encoded, never parsed as an address). Raises
    ValueError for an address that is not one."""
    address = one_line(address)
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    if len(local) > 1 and local[0] == local[-1] == '"':
        local = local[1:-1].replace('\\"', '"')
    try:
        addr = Address(display_name=one_line(name), username=local, domain=domain)
        addr_spec = addr.addr_spec
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise ValueError(f"not an address: {address!r} ({exc})") from None
    return formataddr((addr.display_name, addr_spec)) if addr.display_name else addr_spec


@register
class EmailAdapter(Adapter):
    kind = "email"
    channels = (Channel.EMAIL,)
    identity_kind = "email"
    config_schema = {
        "address": "The support address customers write to (support@example.com).",
        "from_name": "Display name on outgoing mail.",
        "auto_ack": "Send an automatic acknowledgement for new tickets (true/false).",
        "imap_host": "IMAP server for polling (TLS).",
        "imap_port": "IMAP port (993).",
        "imap_user": "IMAP user name.",
        "imap_folder": "Folder to poll (INBOX).",
        "imap_move_to": "Folder to move taken mail to (optional; default: leave it, flagged \\Seen).",
        "imap_ssl": "IMAP over TLS (default true; false only for a loopback test server).",
        "imap_last_uid": "Kept by the poller: the last UID taken.",
        "imap_uidvalidity": "Kept by the poller: the folder's UIDVALIDITY.",
        "auto_ack_template": "Acknowledgement text; placeholders {name} {reference} {subject} {portal_url}.",
        "default_region": "Region for phone numbers written without a country code.",
    }
    required_config = ("address",)
    secret_schema = {"imap_password": "IMAP password."}
    supports_html = True
    supports_attachments = True

    def from_address(self, inbox: Inbox) -> str:
        address = inbox.config.get("address") or settings.DEFAULT_FROM_EMAIL
        return mailbox(inbox.config.get("from_name") or "", address)

    def reply_address(self, inbox: Inbox, token: str) -> str:
        address = inbox.config.get("address") or settings.DEFAULT_FROM_EMAIL
        local, _, domain = address.partition("@")
        return f"{local}+{token}@{domain}" if token else address

    def new_message_id(self, inbox: Inbox) -> str:
        domain = (inbox.config.get("address") or settings.DEFAULT_FROM_EMAIL).partition("@")[2] or "cxdesk.localhost"
        return make_msgid(domain=domain)

    def build(self, out: OutboundMessage) -> EmailMultiAlternatives:
        """The outgoing mail. Every header value we write is one line (CR/LF and NUL
        removed) and every address is built as an address, never by string formatting,
        so a customer name like `Support <x@evil>` or one with a line break stays a name."""
        headers = {one_line(k): one_line(v) for k, v in {"Message-ID": out.email_message_id, **out.headers}.items()}
        if out.in_reply_to:
            headers["In-Reply-To"] = one_line(out.in_reply_to)
        if out.references:
            headers["References"] = one_line(" ".join(out.references))
        try:
            to = mailbox(out.to_name, out.to)
            reply_to = [mailbox("", out.reply_to)] if out.reply_to else None
        except ValueError as exc:
            raise SendError(f"invalid address: {exc}", permanent=True) from exc
        mail = EmailMultiAlternatives(
            subject=one_line(out.subject),
            body=out.text,
            from_email=self.from_address(out.inbox),
            to=[to],
            reply_to=reply_to,
            headers=headers,
        )
        if out.html:
            mail.attach_alternative(out.html, "text/html")
        for att in out.attachments:
            with open(att.path, "rb") as fh:
                mail.attach(one_line(att.filename) or "attachment", fh.read(), one_line(att.content_type))
        return mail

    def send(self, out: OutboundMessage) -> str:
        import smtplib

        try:
            self.build(out).send(fail_silently=False)
        except smtplib.SMTPResponseException as exc:
            raise SendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", permanent=500 <= exc.smtp_code < 600) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            # Per recipient: 4xx (greylisting 451, mailbox busy) is temporary, 5xx permanent.
            codes = [code for code, _ in exc.recipients.values()]
            permanent = bool(codes) and all(500 <= code < 600 for code in codes)
            raise SendError(f"recipient refused: {exc.recipients}", permanent=permanent) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError(f"SMTP unavailable: {exc}") from exc
        return out.email_message_id

    def deliver(self, out: OutboundMessage) -> str:
        # Email's development transport is Django's file backend (EMAIL_BACKEND), so
        # the same code path runs in `make run` and production.
        return self.send(out)
