"""Template helpers for the desk: dictionary lookup, channel icons, quoted-history folding."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape, linebreaks
from django.utils.safestring import SafeString, mark_safe

from channels_app.sanitize import sanitize_html

register = template.Library()

CHANNEL_ICONS = {
    "email": "✉",
    "sms": "SMS",
    "whatsapp": "WA",
    "messenger": "FB",
    "telegram": "TG",
    "portal": "Web",
    "chat": "Chat",
    "api": "API",
    "desk": "✎",
}


@register.filter
def get_item(mapping, key):
    return mapping.get(key, "") if hasattr(mapping, "get") else ""


@register.filter
def channel_icon(channel: str) -> str:
    return CHANNEL_ICONS.get(channel, "•")


@register.filter
def person(user) -> str:
    return (user.get_full_name() or user.username) if user else ""


# Where quoted history starts in a mail: the attribution line ("On … wrote:"), Outlook's
# separator, or the first quote block.
_TEXT_QUOTE = re.compile(
    r"^(>|On .{1,300} wrote:\s*$|-{2,}\s*Original Message\s*-{2,}|From: .+$|W dniu .{1,200} pisze:\s*$)",
    re.M,
)
_HTML_QUOTE = re.compile(
    r'<(blockquote|div class="(gmail_quote|moz-cite-prefix|OutlookMessageHeader)[^"]*")[^>]*>'
    r"|<p[^>]*>\s*On .{1,300}? wrote:\s*</p>",
    re.I | re.S,
)
_FOLD = '<details class="quoted"><summary>Quoted history</summary>{}</details>'


@register.filter
def fold_quotes_text(text: str) -> SafeString:
    """Plain text as paragraphs, with the quoted history of a reply folded away."""
    text = text or ""
    match = _TEXT_QUOTE.search(text)
    if match is None or not text[: match.start()].strip():
        return mark_safe(linebreaks(escape(text)))  # noqa: S308 - escaped above
    head, tail = text[: match.start()], text[match.start() :]
    return mark_safe(linebreaks(escape(head)) + _FOLD.format(linebreaks(escape(tail))))  # noqa: S308


@register.filter
def fold_quotes_html(html: str) -> SafeString:
    """Stored email HTML (already sanitised on ingest) with its quoted history folded.
    Both halves are re-sanitised so that cutting at the quote leaves balanced markup."""
    html = html or ""
    match = _HTML_QUOTE.search(html)
    if match is None or not re.sub(r"<[^>]+>|\s|&nbsp;", "", html[: match.start()]):
        return mark_safe(sanitize_html(html))  # noqa: S308 - sanitised
    head, tail = sanitize_html(html[: match.start()]), sanitize_html(html[match.start() :])
    return mark_safe(head + _FOLD.format(tail))  # noqa: S308 - sanitised
