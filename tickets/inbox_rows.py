"""What an inbox row shows, computed in Python in one pass over the page (issue 12).

The row partial (`tickets/_inbox_list.html#row`) prints these values and nothing else: no
per-row filter, translation, URL reversal or icon tag. Whatever is the same on every row (the
translated labels, the sprite URL, a channel's badge, an agent's avatar) is computed once per
page. The desk page, the htmx list, the split view and the live inbox (tickets/consumers.py)
all render rows through `inbox_rows`, so they stay the same HTML."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from .models import Channel, Ticket
from .selectors import InboxTicket
from .templatetags.desk import avatar, channel_icon, duration, icon


@dataclass(slots=True)
class InboxRow:
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


def inbox_rows(tickets: Iterable[InboxTicket], *, current_id: int = 0) -> list[InboxRow]:
    """Display values for `selectors.inbox_page` / `inbox_row` records, the same the row
    template used to compute with filters and tags (HTML unchanged)."""
    from django.urls import reverse

    select = _("Select %(ref)s")
    no_subject = _("(no subject)")
    # Plain f-strings and html.escape (what django.utils.html.escape does) in the loop:
    # format_html costs more than the rest of a row.
    wait_open = f'<span class="c-wait" title="{escape(_("Waiting since the customer’s last message"))}">'
    unassigned = SafeString(f"<span>{escape(_('Unassigned'))}</span>")
    no_wait = SafeString('<span class="c-wait none">—</span>')
    no_icon = SafeString("")
    reply = icon("undo-2", "flip-rtl") + SafeString(" ")
    team_icon = icon("users")
    channels = {value: str(label) for value, label in Channel.choices}
    priorities = {value: str(label) for value, label in Ticket.Priority.choices}
    # reverse() once: the ticket URL with the id swapped in (ids are digits, nothing to quote).
    url = reverse("desk-ticket", args=[0]).rsplit("0/", 1)[0] + "{}/"
    now = timezone.now()
    badges: dict[str, SafeString] = {}
    people: dict[int, SafeString] = {}
    rows = []
    for t in tickets:
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
        if inbound and t.last_customer_message_at:
            waiting = SafeString(f"{wait_open}{escape(duration(now - t.last_customer_message_at))}</span>")
        else:
            waiting = no_wait
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
                waiting=waiting,
                assignee=assignee,
                priority=t.priority,
                priority_label=priorities.get(t.priority, t.priority),
            )
        )
    return rows
