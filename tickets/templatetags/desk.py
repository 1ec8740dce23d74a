"""Template helpers for the desk: dictionary lookup, channel icons, quoted-history folding."""

from __future__ import annotations

import functools
import re
import zlib

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.loader_tags import BlockNode
from django.templatetags.static import static
from django.urls import get_script_prefix
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.functional import Promise
from django.utils.html import conditional_escape, escape, format_html, linebreaks
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from cxdesk.sanitize import block_remote_images, has_remote_images, sanitize_html

register = template.Library()

# Lucide icon names (static/vendor/lucide/icons.svg) for each channel.
CHANNEL_ICONS = {
    "email": "mail",
    "sms": "message-square",
    "whatsapp": "message-circle",
    "messenger": "message-circle-more",
    "telegram": "send",
    "chat": "messages-square",
    "voice": "phone",
    "portal": "globe",
    "api": "code",
    "desk": "pencil",
}


# --- {% fragment %}: a part of a page rendered once per process for each key ---------------

FRAGMENTS_SIZE = 1000  # entries per process (a few KB each); emptied when full
_fragments: dict[tuple, str] = {}
# Stands for the request's CSRF token while a fragment renders (letters and digits: the same
# escaped or not); the real token is put in its place on every request.
CSRF_STAND_IN = "cxdeskfragmentcsrf7q2x9"


@receiver(setting_changed)
def _fragments_settings_changed(**kwargs) -> None:
    # Static URLs, languages, number formats…: what was rendered before no longer applies.
    _fragments.clear()
    _duration_text.cache_clear()


def _plain(value):
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Promise):
        return str(value)
    return (value.__class__.__name__, str(value))  # a lazy object: what it prints


class FragmentNode(template.Node):
    # Not looked into for {% block %}s (none inside, checked when parsed): `{% extends %}`
    # looks for them in all of its parent's nodes on every render.
    child_nodelists = ()

    def __init__(self, name: str, keys: list, nodelist):
        self.name, self.keys, self.nodelist = name, keys, nodelist

    def render(self, context) -> str:
        token = context.get("csrf_token")
        token = str(token) if token else ""
        if not token or token == "NOTPROVIDED" or CSRF_STAND_IN in token:  # noqa: S105 - a marker
            return self.nodelist.render(context)  # no request context: rendered as written
        key = (
            self.name,
            self.origin.name if self.origin else "",
            get_language(),
            get_script_prefix(),
            *(_plain(expression.resolve(context)) for expression in self.keys),
        )
        html = _fragments.get(key)
        if html is None:
            with context.push(csrf_token=CSRF_STAND_IN):
                html = self.nodelist.render(context)
            if len(_fragments) >= FRAGMENTS_SIZE:
                _fragments.clear()
            _fragments[key] = html
        return mark_safe(html.replace(CSRF_STAND_IN, token))  # noqa: S308 - rendered with autoescape


@register.tag
def fragment(parser, token):
    """`{% fragment "name" key1 key2 … %}…{% endfragment %}`: the block rendered once per
    process for each set of keys (plus the template, the language and the URL prefix) and
    the same HTML given back after that. The keys must determine everything the block shows
    — whatever it reads of the context besides them is taken as the same for every request;
    the CSRF token is the exception, put in on every request. No `{% block %}` inside. Like
    `tickets.inbox_cache.fragment_html`: never stale, no invalidation, but a key left out
    shows one request's HTML to another."""
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError("{% fragment %} takes a quoted name, then its keys")
    nodelist = parser.parse(("endfragment",))
    parser.delete_first_token()
    if nodelist.get_nodes_by_type(BlockNode):
        raise template.TemplateSyntaxError("{% fragment %} cannot hold a {% block %}")
    return FragmentNode(bits[1][1:-1], [parser.compile_filter(bit) for bit in bits[2:]], nodelist)


@register.filter
def get_item(mapping, key):
    return mapping.get(key, "") if hasattr(mapping, "get") else ""


@functools.cache
def _sprite() -> str:
    """The sprite's URL: the same for every icon of every page (cleared when the static
    settings change, in tests)."""
    return static("vendor/lucide/icons.svg")


@receiver(setting_changed)
def _static_changed(*, setting, **kwargs):
    if setting in ("STATIC_URL", "STORAGES", "FORCE_SCRIPT_NAME"):
        _sprite.cache_clear()


@register.simple_tag
def icon(name: str, css: str = "", label: str = "") -> SafeString:
    """An SVG icon from the vendored Lucide sprite; decorative unless given a label."""
    # What format_html did (conditional_escape of each part), without its cost: every page
    # draws dozens of icons.
    aria = f'role="img" aria-label="{conditional_escape(label)}"' if label else 'aria-hidden="true"'
    href = conditional_escape(f"{_sprite()}#{name}")
    return mark_safe(f'<svg class="icon {conditional_escape(css)}" {aria}><use href="{href}"></use></svg>')  # noqa: S308


@register.simple_tag
def channel_icon(channel: str, label: str = "") -> SafeString:
    """The channel's icon in a round badge, titled with the channel's name."""
    name = CHANNEL_ICONS.get(channel, "circle-dot")
    title = label or channel
    return format_html('<span class="chan {}" title="{}">{}</span>', channel, title, icon(name, label=title))


@register.filter
def avatar(who, size: str = "") -> SafeString:
    """Initials in a coloured circle (the colour stable per name)."""
    if who is None or who == "":
        return mark_safe("")  # noqa: S308 - constant
    name = who if isinstance(who, str) else (getattr(who, "get_full_name", lambda: "")() or str(who))
    parts = [w for w in (re.sub(r"^\W+", "", p) for p in re.split(r"[\s@._-]+", name)) if w]
    initials = "".join(p[0] for p in parts[:2]) or "?"
    hue = zlib.crc32(name.encode()) % 12  # a class, not a style attribute: the CSP forbids inline styles
    # f-string and escape(), not format_html: a list page calls this once a row.
    return mark_safe(  # noqa: S308 - escaped
        f'<span class="avatar hue-{hue} {escape(size)}" aria-hidden="true">{escape(initials.upper())}</span>'
    )


@register.filter
def duration(value) -> str:
    """Seconds or a timedelta as "2 h 05 m" / "3 d 4 h" / "45 s"."""
    if value is None or value == "":
        return "—"
    seconds = int(value.total_seconds() if hasattr(value, "total_seconds") else float(value))
    seconds = max(seconds, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    # Only the parts shown are in the key (the inbox asks for a duration on every row).
    if days:
        return _duration_text(get_language(), "d", days, hours)
    if hours:
        return _duration_text(get_language(), "h", hours, minutes)
    if minutes:
        return _duration_text(get_language(), "m", minutes, 0)
    return _duration_text(get_language(), "s", secs, 0)


@functools.lru_cache(maxsize=4096)
def _duration_text(language: str | None, unit: str, big: int, small: int) -> str:
    """`duration`'s text, the same for every request in that language: kept per process
    (emptied when the settings change: number formats)."""
    # Unit abbreviations are translated (Russian "ч"/"мин", Persian "ساعت"…), numbers localised.
    if unit == "d":
        return _("%(d)s d %(h)s h") % {"d": number_format(big), "h": number_format(small)}
    if unit == "h":
        return _("%(h)s h %(m)s m") % {"h": number_format(big), "m": f"{small:02d}"}
    if unit == "m":
        return _("%(m)s m") % {"m": number_format(big)}
    return _("%(s)s s") % {"s": number_format(big)}


@register.filter
def since(value) -> str:
    """Time elapsed since a datetime, as a short duration."""
    if not value:
        return "—"
    return duration(timezone.now() - value)


@register.filter
def percent(value, digits: int = 0) -> str:
    """A rate (0..1) as a percentage: 0.873 → "87 %"."""
    if value is None or value == "":
        return "—"
    return _("%(n)s %%") % {"n": number_format(float(value) * 100, int(digits), use_l10n=True)}


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
        return mark_safe(block_remote_images(sanitize_html(html)))  # noqa: S308 - sanitised
    head, tail = sanitize_html(html[: match.start()]), sanitize_html(html[match.start() :])
    return mark_safe(block_remote_images(head + _FOLD.format(tail)))  # noqa: S308 - sanitised


@register.filter
def remote_images(html: str) -> bool:
    """True when the message has remote images (blocked until an agent loads them)."""
    return has_remote_images(sanitize_html(html or ""))


@register.filter
def querystring_of(mapping) -> str:
    """A dict of filters as a query string (for saved views' links)."""
    from urllib.parse import urlencode

    return urlencode({k: v for k, v in (mapping or {}).items() if v})


@register.filter
def choice_label(value) -> str:
    """An event's old/new value shown in the reader's language: a status, priority or
    channel code becomes its label; anything else (names, tags) stays as written."""
    if value in (None, ""):
        return ""
    from ..models import Channel, Ticket

    for choices in (Ticket.Status, Ticket.Priority, Channel):
        if isinstance(value, str) and value in choices.values:
            return str(choices(value).label)
    return value if isinstance(value, str) else str(value)
