"""Inbox rows as HTML, fast (issue 12): one pass in Python over the page, and each row's HTML
kept per process, keyed by everything it shows.

A row is a pure function of its `selectors.InboxTicket` record (the ticket's, customer's,
assignee's and team's columns it reads), the waiting time as shown ("2 h 05 m": computed
for every row on every request, so the cell never goes stale), whether it is the split
view's current ticket, the language and the URL prefixes. That tuple is the cache key: a
row is rendered again when anything it shows changes, never served stale, and needs no
invalidation. On a miss the row partial (`tickets/_inbox_list.html#row`) renders an
`InboxRow` of precomputed values (no per-row filter, translation, URL reversal or icon tag;
whatever is the same on every row is computed once per call). The desk page, the htmx list,
the split view and the live inbox (tickets/consumers.py) all go through `inbox_rows_html`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.loader import get_template
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from .models import Channel, Ticket
from .selectors import InboxTicket
from .templatetags.desk import avatar, channel_icon, duration, icon

ROW_CACHE_SIZE = 5000  # rows per process (~1 KB each); emptied when full
_cache: dict[tuple, SafeString] = {}
_cache_lock = threading.Lock()


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    _cache.clear()  # tests switch STATIC_URL, languages…: rows rendered before no longer apply


@dataclass(slots=True)
class InboxRow:
    """What the row partial prints, every value computed in Python."""

    pk: int
    url: str
    css: str  # " awaiting", " current"
    select_label: str
    channel: SafeString
    customer: str
    customer_avatar: SafeString
    reference: str
    subject: str
    reply_icon: SafeString  # the last message was ours
    excerpt: str
    waiting: SafeString
    assignee: SafeString
    priority: str
    priority_label: str


def inbox_rows_html(tickets: Iterable[InboxTicket], *, current_id: int = 0) -> list[SafeString]:
    """Each ticket's row, as the row partial renders it (from this process's row cache when
    the row shows the same thing as last time)."""
    now = timezone.now()
    scope = (get_language(), get_script_prefix())
    out = []
    misses: list[tuple[int, tuple, InboxTicket, str]] = []
    for t in tickets:
        at = t.last_customer_message_at
        waiting = duration(now - at) if at and t.last_direction == "inbound" else ""
        key = (t, waiting, t.pk == current_id, scope)
        html = _cache.get(key)
        if html is None:
            misses.append((len(out), key, t, waiting))
        out.append(html)
    if misses:
        template = get_template("tickets/_inbox_list.html#row")
        rows = inbox_rows([t for _i, _k, t, _w in misses], current_id=current_id, waiting=[w for *_x, w in misses])
        with _cache_lock:
            if len(_cache) + len(misses) > ROW_CACHE_SIZE:
                _cache.clear()
            for (i, key, _t, _w), row in zip(misses, rows, strict=True):
                out[i] = _cache[key] = SafeString(template.render({"r": row}))
    return out


def inbox_rows(tickets: list[InboxTicket], *, current_id: int = 0, waiting: list[str] | None = None) -> list[InboxRow]:
    """Display values for `selectors.inbox_page` / `inbox_row` records: what the row template
    used to compute with filters and tags (the HTML is unchanged). `waiting`: each row's
    waiting time as already formatted, or "" (computed here when not given)."""
    select = _("Select %(ref)s")
    no_subject = _("(no subject)")
    # Plain f-strings and html.escape (what django.utils.html.escape does) in the loop:
    # format_html costs more than the rest of a row.
    # (gettext outside the f-strings: xgettext does not look inside them.)
    wait_title = _("Waiting since the customer’s last message")
    wait_open = f'<span class="c-wait" title="{escape(wait_title)}">'
    unassigned_label = _("Unassigned")
    unassigned = SafeString(f"<span>{escape(unassigned_label)}</span>")
    no_wait = SafeString('<span class="c-wait none">—</span>')
    no_icon = SafeString("")
    reply = icon("undo-2", "flip-rtl") + SafeString(" ")
    team_icon = icon("users")
    channels = {value: str(label) for value, label in Channel.choices}
    priorities = {value: str(label) for value, label in Ticket.Priority.choices}
    # reverse() once: the ticket URL with the id swapped in (ids are digits, nothing to quote).
    url = reverse("desk-ticket", args=[0]).rsplit("0/", 1)[0] + "{}/"
    if waiting is None:
        now = timezone.now()
        waiting = [
            duration(now - t.last_customer_message_at)
            if t.last_customer_message_at and t.last_direction == "inbound"
            else ""
            for t in tickets
        ]
    badges: dict[str, SafeString] = {}
    people: dict[int, SafeString] = {}
    rows = []
    for t, wait in zip(tickets, waiting, strict=True):
        inbound = t.last_direction == "inbound"
        badge = badges.get(t.channel)
        if badge is None:
            badge = badges[t.channel] = channel_icon(t.channel, channels.get(t.channel, t.channel))
        if t.assignee_id is not None:
            assignee = people.get(t.assignee_id)
            if assignee is None:
                name = t.assignee_name
                assignee = people[t.assignee_id] = SafeString(f"{avatar(name, 'sm')}<span>{escape(name)}</span>")
        elif t.team_id is not None:
            assignee = SafeString(f"{team_icon}<span>{escape(t.team_name)}</span>")
        else:
            assignee = unassigned
        customer = t.customer
        reference = t.reference
        excerpt = t.excerpt or ""
        rows.append(
            InboxRow(
                pk=t.pk,
                url=url.format(t.pk),
                css=(" awaiting" if inbound else "") + (" current" if t.pk == current_id else ""),
                select_label=select % {"ref": reference},
                channel=badge,
                customer=customer,
                customer_avatar=avatar(customer, "sm"),
                reference=reference,
                subject=t.subject or no_subject,
                reply_icon=reply if t.last_direction == "outbound" else no_icon,
                # Truncator counts characters as the truncatechars filter does; most excerpts
                # are shorter than that already.
                excerpt=excerpt if len(excerpt) <= 120 else Truncator(excerpt).chars(120),
                waiting=SafeString(f"{wait_open}{escape(wait)}</span>") if wait else no_wait,
                assignee=assignee,
                priority=t.priority,
                priority_label=priorities.get(t.priority, t.priority),
            )
        )
    return rows
