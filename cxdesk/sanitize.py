"""Untrusted HTML in, safe HTML out (nh3), and readable text from HTML."""

from __future__ import annotations

import html as html_lib
import re

import nh3

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "sup", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
_ALLOWED_ATTRS = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "*": {"class"},
}


def sanitize_html(value: str) -> str:
    """Scripts, event handlers, styles, iframes and javascript: URLs are removed; links
    get rel=noopener noreferrer; images may only be cid: (inline parts) or https."""
    if not value:
        return ""
    return nh3.clean(
        value,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRS,
        url_schemes={"http", "https", "mailto", "tel", "cid"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


_IMG = re.compile(r"<img\b[^>]*>", re.I)
_REMOTE_SRC = re.compile(r'\ssrc="(https?://[^"]*)"', re.I)


def block_remote_images(safe_html: str) -> str:
    """Sanitised HTML with remote images disarmed: `src="https://…"` becomes
    `data-remote-src="…"` (a tracking pixel must not learn when and where an agent reads the
    mail). The desk's "Load images" control restores them for one message, through the
    server's image proxy. Input must come from sanitize_html (attributes double-quoted)."""
    return _IMG.sub(lambda m: _REMOTE_SRC.sub(r' data-remote-src="\1"', m.group(0)), safe_html or "")


def has_remote_images(value: str) -> bool:
    return any(_REMOTE_SRC.search(m.group(0)) for m in _IMG.finditer(value or ""))


def remote_image_urls(value: str) -> set[str]:
    """The remote image addresses in (sanitised) HTML, unescaped."""
    return {
        html_lib.unescape(src.group(1))
        for m in _IMG.finditer(sanitize_html(value or ""))
        for src in [_REMOTE_SRC.search(m.group(0))]
        if src
    }


_BLOCK = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6]|/blockquote|hr)\b[^>]*>", re.I)
_DROP = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")


def html_to_text(value: str) -> str:
    """Readable plain text from an HTML-only mail (paragraphs kept, tags dropped)."""
    if not value:
        return ""
    text = _DROP.sub("", value)
    text = _BLOCK.sub("\n", text)
    text = _TAG.sub("", text)
    text = html_lib.unescape(text)
    lines = [re.sub(r"[ \t\xa0]+", " ", line).strip() for line in text.splitlines()]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()
