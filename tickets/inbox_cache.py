"""The inbox page's sidebar (saved views and counts) and choices, cached until a write moves
their generation, and the page's fragments (issue 12).

The counts (built-in views and saved views, capped, see `selectors.INBOX_COUNT_CAP`) cost two
statements on every page, and the saved views and the filter and bulk-action choices
(inboxes, staff, teams) four queries more. They are kept in the cache (Redis in production,
shared by every process) — the sidebar per agent, the choices once — under a **generation**:
one integer in the cache that moves after every committed write to the tables they read. A
page whose generation is still the one its entries were read under shows them (one cache
round trip); after any change it reads again. `CXDESK_INBOX_COUNTS_TTL` (seconds) bounds an
entry's life whatever happens: it is the backstop for what no write announces — time (a
saved view of tickets whose SLA falls due within the hour), writes made outside this code
(psql, another application), a Redis outage during a bump. `0` turns the cache off.

How the generation moves: every database connection gets an execute wrapper (installed by
`tickets.apps`) that looks at each statement; an INSERT, UPDATE, DELETE or TRUNCATE of a
watched table (tickets, their tags, messages, SLA clocks, customers and identities: what the
views' filters and search read; teams, their members and inboxes: what an agent's scope
reads; saved views; users: the staff choices — the agent's role is part of the sidebar
entry's key) bumps the generation **after the
transaction commits** (right away in autocommit), once per transaction. Never before the
commit: a reader counting between the bump and the commit would store the old counts under
the new generation. Every write path is covered, `QuerySet.update()` and raw SQL included,
because the wrapper sees the SQL rather than model signals. Between a commit and its bump
(the commit hooks' run) a page may still get the counts from before; the live inbox pushes
fresh ones right after. Without Redis (locmem) the generation is per process: the cache is
used then only when Celery runs in the process too (see `_sees_every_write`).

The list rows are never cached here: they are read on every request (`tickets.inbox_rows`
caches only the HTML of a row, keyed by everything the row shows; `selectors` keeps compiled
statements, never results).

Reads inside a transaction (`atomic`) bypass the cache both ways: a transaction may see its
own uncommitted writes, which must not be stored for others, and may hold an older snapshot.
The live inbox (`tickets.consumers`) counts afresh after each change and stores what it read.

The page's fragments (`fragment_html`, below) are another matter: rendered HTML kept per
process under a key holding everything they show, read on the request — never stale.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import NamedTuple

from django.conf import settings
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connections
from django.dispatch import receiver
from django.template.loader import get_template
from django.urls import get_script_prefix
from django.utils.safestring import SafeString
from django.utils.translation import get_language

from accounts.roles import user_role
from cxdesk import write_watch
from cxdesk.cache import count
from cxdesk.write_watch import is_write

log = logging.getLogger(__name__)

GENERATION_KEY = "cxdesk:inbox-counts:generation"
ENTRY_KEY = "cxdesk:inbox-sidebar:agent:{}"
CHOICES_KEY = "cxdesk:inbox-choices"
DEFAULT_TTL = 15  # seconds (settings.CXDESK_INBOX_COUNTS_TTL)


def ttl() -> int:
    return int(getattr(settings, "CXDESK_INBOX_COUNTS_TTL", DEFAULT_TTL))


# --- the generation ---------------------------------------------------------------------


def generation() -> int:
    """The current generation (created when missing: a fresh value, never one used before)."""
    value = cache.get(GENERATION_KEY)
    if value is None:
        cache.add(GENERATION_KEY, time.time_ns(), timeout=None)
        value = cache.get(GENERATION_KEY)
    return value


def generation_bump() -> None:
    """Move the generation: every cached count is from now on out of date. Runs as a commit
    hook of the writer's transaction, so it never raises (a failed bump leaves entries to
    their TTL)."""
    try:
        # One round trip; a generation gone (evicted, or never read) starts again from a fresh value.
        count(cache, GENERATION_KEY, None, start=time.time_ns())
    except Exception:
        log.exception("inbox counts: the generation could not be bumped (entries expire in %ss)", ttl())


def _watched_tables() -> list[str]:
    """The tables the sidebar (saved views, counts) and the page's choices read. The users'
    table for the choices (staff names, active or not; a sign-in writes `last_login` too:
    rare enough); not their groups: an agent's role is part of the entry's key, read with the
    request's user."""
    from django.contrib.auth import get_user_model

    from customers.models import Customer, Identity
    from sla.models import TicketSla

    from .models import Inbox, Message, SavedView, Tag, Team, Ticket

    models = (Ticket, Ticket.tags.through, Tag, Message, TicketSla, Team, Team.members.through, Inbox, Customer)
    return [m._meta.db_table for m in (*models, Identity, SavedView, get_user_model())]


_writes_watched = None  # a compiled regex, built on the first connection (the apps are ready)


def writes_watched_table(sql) -> bool:
    """Whether a statement writes a table the counts read (an INSERT/UPDATE/DELETE/TRUNCATE
    naming one as its target: `write_watch.target`)."""
    return is_write(sql) and _names_a_watched_table(write_watch.target(sql))


def _names_a_watched_table(written: str) -> bool:
    global _writes_watched
    if _writes_watched is None:
        names = "|".join(re.escape(name) for name in _watched_tables())
        _writes_watched = re.compile(rf"\b(?:{names})\b", re.IGNORECASE)
    return _writes_watched.search(written) is not None


def _bump_after_commit(connection) -> None:
    if not connection.in_atomic_block:
        # Autocommit: the statement is committed already. (Manual transaction management,
        # set_autocommit(False), has no commit hooks: bumped now, the TTL bounds the rest.)
        generation_bump()
        return
    # Once per transaction: look for our hook among the commit hooks (where it was last seen
    # first; the list is replaced when a savepoint rolls back or the transaction ends, which
    # also drops a hook registered inside a rolled-back savepoint, so it is registered again).
    hooks = connection.run_on_commit
    seen = getattr(connection, "_cxdesk_counts_hook", None)
    if seen is not None and seen[0] is hooks and seen[1] < len(hooks) and hooks[seen[1]][1] is generation_bump:
        return
    for i, hook in enumerate(hooks):
        if hook[1] is generation_bump:
            connection._cxdesk_counts_hook = (hooks, i)
            return
    connection.on_commit(generation_bump, robust=True)
    connection._cxdesk_counts_hook = (connection.run_on_commit, len(connection.run_on_commit) - 1)


def _watched_write(written: str, connection) -> None:
    """A write statement (`cxdesk.write_watch`, the table it writes): one the counts read
    moves the generation."""
    if _names_a_watched_table(written):
        _bump_after_commit(connection)


def install() -> None:
    """Watch every database connection's writes (called from `tickets.apps.ready`)."""
    write_watch.on_write(_watched_write)


# --- the sidebar and the choices ---------------------------------------------------------


class Sidebar(NamedTuple):
    """What the inbox's sidebar shows: the agent's saved views (own and shared, sidebar order),
    the built-in views' counts and the saved views' counts (`selectors.CappedCount`s)."""

    saved_views: list
    counts: dict
    saved_counts: dict


def _raw(counts: dict) -> dict:
    return {key: (int(value), value.capped) for key, value in counts.items()}


def _cooked(raw: dict) -> dict:
    from .selectors import CappedCount

    out = {}
    for key, (value, capped) in raw.items():
        out[key] = count = CappedCount(value)
        count.capped = capped
    return out


def _saved_fields() -> tuple[str, ...]:
    from .models import SavedView

    return tuple(f.attname for f in SavedView._meta.concrete_fields)


def _pack(views: list) -> tuple:
    """Saved views as plain values (not pickled model instances: an entry written by another
    version of the code is never unpickled into this one's model)."""
    names = _saved_fields()
    return tuple(tuple(getattr(view, name) for name in names) for view in views)


def _unpack(rows: tuple) -> list:
    from .models import SavedView

    names = _saved_fields()
    return [SavedView.from_db("default", names, list(row)) for row in rows]


def _usable(agent=None) -> bool:
    return (
        ttl() > 0
        and _sees_every_write()
        and not connections["default"].in_atomic_block
        and getattr(agent, "pk", 0) is not None
    )


def _sees_every_write() -> bool:
    """A process-local cache (locmem: no REDIS_URL) holds a generation only this process moves:
    trusted only when tasks run in this process too (`make run`), not beside Celery workers
    writing elsewhere. (Several web processes without Redis are no supported shape: live
    updates need the Redis channel layer as well.)"""
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    return "locmem" not in backend.lower() or bool(getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False))


def _read(*keys: str) -> tuple[int | None, dict]:
    """(the current generation, the entries found under `keys`) in one round trip;
    (None, {}) when the cache is down."""
    try:
        found = cache.get_many([GENERATION_KEY, *keys])
        current = found.get(GENERATION_KEY)
        if current is None:
            current = generation()
    except Exception:
        log.exception("inbox counts: cache unavailable, reading the database")
        return None, {}
    return current, found


def _store(key: str, value: tuple) -> None:
    try:
        cache.set(key, value, timeout=ttl())
    except Exception:
        log.exception("inbox counts: could not store")


def _sidebar_read(agent) -> Sidebar:
    from . import selectors

    saved = selectors.saved_views_for(agent=agent)
    cap = selectors.INBOX_COUNT_CAP
    return Sidebar(
        saved,
        selectors.inbox_counts(agent=agent, cap=cap),
        selectors.saved_view_counts(agent=agent, views=saved, cap=cap),
    )


def _sidebar(agent, current: int | None, entry, fresh: bool) -> Sidebar:
    """From `entry` when it was read under the `current` generation for the agent's role and
    the cap; else read (after the generation: a write committing meanwhile moves the
    generation past the one stored here, and the next page reads again) and stored."""
    from .selectors import INBOX_COUNT_CAP

    signature = (user_role(agent), INBOX_COUNT_CAP, _saved_fields())
    if not fresh and current is not None and entry is not None and entry[:2] == (current, signature):
        return Sidebar(_unpack(entry[2]), _cooked(entry[3]), _cooked(entry[4]))
    read = _sidebar_read(agent)
    if current is not None:
        raw = (current, signature, _pack(read.saved_views), _raw(read.counts), _raw(read.saved_counts))
        _store(ENTRY_KEY.format(agent.pk), raw)
    return read


def _choices(current: int | None, entry):
    from . import selectors

    if current is not None and entry is not None and entry[0] == current:
        return selectors.InboxChoices(*entry[1])
    choices = selectors.inbox_choices()
    if current is not None:
        _store(CHOICES_KEY, (current, tuple(choices)))
    return choices


def sidebar(*, agent, fresh: bool = False) -> Sidebar:
    """The agent's saved views and counts, from the cache when nothing was written since they
    were read. `fresh`: read in any case (and store what was read) - the live inbox, which
    re-renders the sidebar because something changed."""
    if not _usable(agent):
        return _sidebar_read(agent)
    key = ENTRY_KEY.format(agent.pk)
    current, found = _read(key)
    return _sidebar(agent, current, found.get(key), fresh)


def inbox_page_data(*, agent):
    """(`sidebar(agent=…)`, `selectors.inbox_choices()`), both from the cache when nothing
    was written since they were read: one cache round trip."""
    from . import selectors

    if not _usable(agent):
        return _sidebar_read(agent), selectors.inbox_choices()
    key = ENTRY_KEY.format(agent.pk)
    current, found = _read(key, CHOICES_KEY)
    return _sidebar(agent, current, found.get(key), False), _choices(current, found.get(CHOICES_KEY))


# --- fragments of the page ----------------------------------------------------------------

# The page's choices (filters, bulk actions) and its sidebar are the same for many requests:
# each is rendered once per process for every key — everything it shows, read on this request
# (agents, teams, inboxes, counts, saved views…), plus the language and the URL prefix — so
# a fragment is never stale and needs no invalidation (like tickets.inbox_rows' row cache).
FRAGMENT_CACHE_SIZE = 500
_fragments: dict[tuple, SafeString] = {}


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    _fragments.clear()  # tests switch STATIC_URL, number formats…: fragments rendered before no longer apply


def fragment_html(template_name: str, key: tuple, context: dict) -> SafeString:
    """`template_name` (a partial) rendered with `context`, or the same HTML rendered earlier
    for the same `key`, which must determine everything the fragment shows."""
    full_key = (template_name, get_language(), get_script_prefix(), key)
    html = _fragments.get(full_key)
    if html is None:
        html = SafeString(get_template(template_name).render(context))
        if len(_fragments) >= FRAGMENT_CACHE_SIZE:
            _fragments.clear()
        _fragments[full_key] = html
    return html


def _filters_key(view) -> str:
    return json.dumps(view.filters or {}, sort_keys=True, default=str)


def _count_key(counts: dict) -> tuple:
    return tuple((key, int(value), getattr(value, "capped", False)) for key, value in counts.items())


def view_counts_html(*, counts: dict, saved_views: list, saved_counts: dict, view: str, saved_active, oob=False):
    """The sidebar (`tickets/_view_counts.html`): built-in views and saved views with counts."""
    from .selectors import INBOX_VIEWS

    key = (
        _count_key(counts),
        tuple((v.pk, v.name, v.shared, _filters_key(v)) for v in saved_views),
        _count_key(saved_counts),
        view,
        saved_active,
        bool(oob),
    )
    context = {
        "views": INBOX_VIEWS,
        "counts": counts,
        "view": view,
        "saved_views": saved_views,
        "saved_counts": saved_counts,
        "saved_active": saved_active,
        "oob": oob,
    }
    return fragment_html("tickets/_view_counts.html", key, context)
