"""Reads for the desk, scoped to what the agent may see."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from django.db.models import F, Q, QuerySet
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.roles import ADMIN, SUPERVISOR, is_supervisor, user_role
from cxdesk.compiled import STAND_IN, Statement, Statements
from cxdesk.lookups import AnyOf, InConstants

from .models import Inbox, Message, SavedView, Team, Ticket


def tickets_visible_to(*, agent) -> QuerySet[Ticket]:
    """THE place that decides which tickets a staff user may see (desk, API, search,
    exports, websocket events, bulk actions all start here; what is not in it is a 404).

    Supervisors and admins see every ticket. An agent sees the tickets of inboxes attached
    to one of their teams (the inbox's team, `Inbox.default_team`), the tickets routed to
    one of their teams (`Ticket.team`), and the tickets assigned to them. Anyone else
    (customers, inactive or non-staff users) sees none here — customers use the portal."""
    role = user_role(agent)
    if role is None:
        return Ticket.objects.none()
    if is_supervisor(agent):
        return Ticket.objects.all()
    teams = Team.objects.filter(members=agent).values("pk")
    # The inbox's team by subquery, not by join: three conditions on the ticket row itself, so
    # an inbox view walks its index in order and filters (no join that loses the order).
    inboxes = Inbox.objects.filter(default_team__in=teams).values("pk")
    return Ticket.objects.filter(Q(assignee=agent) | Q(team__in=teams) | Q(inbox__in=inboxes))


def ticket_get_for_agent(*, agent, ticket_id: int) -> Ticket | None:
    """The ticket with its customer, assignee, team, inbox and survey, if the agent may see it.
    Compiled once per role (`for_role`): every ticket page and live header asks it."""
    return for_role(
        agent,
        "ticket",
        lambda agent, ticket_id: (
            tickets_visible_to(agent=agent)
            .select_related("customer", "assignee", "team", "inbox", "survey")
            .filter(pk=ticket_id)
        ),
        ticket_id=ticket_id,
    )


def for_role(agent, name: str, build: Callable[..., QuerySet], **ids: int):
    """`build(agent, **ids).first()` — a lookup scoped to what `agent` may see — run from a
    statement compiled once per role and lookup (`cxdesk.compiled.Compiled`) rather than built
    on each call: for a stand-in user of the agent's role whose id no row has, then run with
    the agent's id and `ids` in their places. Built and compiled by the ORM, a scoped lookup of
    one row cost 3 ms of Python, ten times its query; the live desk asks one per event."""
    from cxdesk.compiled import Compiled

    role = user_role(agent)
    if role is None or type(agent.pk) is not int or any(type(v) is not int for v in ids.values()):
        return build(agent, **ids).first()
    key = (name, role, agent.is_superuser)
    compiled = _for_role.get(key)
    if compiled is None:
        stand_in = lambda agent_id, **marks: build(_stand_in(agent, role, agent_id), **marks)  # noqa: E731
        compiled = Compiled(stand_in, "agent_id", *ids, numbers=("agent_id", *ids), optional=("agent_id",))
        _for_role[key] = compiled
    return compiled.first(using=Ticket.objects.db, agent_id=agent.pk, **ids)


_for_role: dict[tuple, object] = {}  # (lookup, role, superuser) → its Compiled


def ticket_list_for_agent(*, agent, status: list[str] | None = None, limit: int = 50) -> list[Ticket]:
    qs = tickets_visible_to(agent=agent).select_related("customer", "assignee")
    if status:
        qs = qs.filter(status__in=status)
    return list(qs.order_by("-last_message_at", "-id")[:limit])


def ticket_timeline(*, ticket: Ticket) -> list[Message]:
    return list(
        ticket.messages.select_related("author", "identity", "inbox")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )


def tickets_for_api(*, agent, params) -> QuerySet[Ticket]:
    """The API's ticket list with its filters (status, channel, assignee, customer, tag,
    updated_since). `updated_since` is inclusive (>=): a row updated in the same second
    as the client's last sync is sent again rather than missed; clients dedupe by id."""
    from cxdesk.dates import parse_datetime
    from cxdesk.errors import ApplicationError

    qs = (
        tickets_visible_to(agent=agent)
        .select_related("customer", "customer__organization", "survey")
        .prefetch_related("tags")
    )
    if params.get("status"):
        qs = qs.filter(status__in=params["status"].split(","))
    if params.get("channel"):
        qs = qs.filter(channel__in=params["channel"].split(","))
    if params.get("assignee"):
        value = params["assignee"]
        if value == "none":
            qs = qs.filter(assignee=None)
        elif value == "me":
            qs = qs.filter(assignee=agent)
        elif value.isdecimal():
            qs = qs.filter(assignee_id=int(value))
        else:
            raise ApplicationError(
                gettext("assignee is an id, 'me' or 'none'"), code="invalid_filter", fields={"assignee": ["invalid"]}
            )
    if params.get("customer"):
        if not params["customer"].isdecimal():
            raise ApplicationError(
                gettext("customer is an id"), code="invalid_filter", fields={"customer": ["invalid"]}
            )
        qs = qs.filter(customer_id=int(params["customer"]))
    if params.get("tag"):
        qs = qs.filter(tags__name=params["tag"])
    if params.get("updated_since"):
        since = parse_datetime(params["updated_since"])
        if since is None or since.tzinfo is None:
            raise ApplicationError(
                gettext("updated_since is an ISO 8601 datetime with a time zone"),
                code="invalid_filter",
                fields={"updated_since": ["invalid"]},
            )
        qs = qs.filter(updated_at__gte=since)
    return qs


def ticket_messages_qs(*, ticket: Ticket) -> QuerySet[Message]:
    return ticket.messages.select_related("identity").prefetch_related("attachments")


# --- the desk's inbox ----------------------------------------------------------------

INBOX_VIEWS = {
    "mine": _("Mine"),
    "unassigned": _("Unassigned"),
    "teams": _("My teams"),
    "open": _("All open"),
    "pending": _("Pending"),
    "solved": _("Solved"),
}


def _view_q(*, agent, view: str, teams: tuple[int, ...] | None = None):
    """A built-in view's condition. Each is served by an index in the list's order
    (migration 0012): the open views by partial indexes over open, unmerged tickets
    (activity; assignee for "mine"/"unassigned"; team for "teams"; waiting), "pending" by
    (status, activity) or the open one, "solved" by a partial index over solved/closed ones.
    Merged tickets are in none of them (the ticket they were merged into is).
    `teams`: the agent's team ids when already read (`_team_ids`)."""
    # The statuses written into the SQL (InConstants), as the partial indexes' conditions
    # are: the prepared statement's generic plan can use those indexes, so it is not planned
    # again on every run.
    open_q = Q(InConstants(F("status"), Ticket.OPEN_STATUSES), merged_into=None)
    if view == "mine":
        return open_q & Q(assignee=agent)
    if view == "unassigned":
        return open_q & Q(assignee=None)
    if view == "teams":
        # The agent's teams as values, not a subquery: a semi-join with the teams would walk
        # every open ticket in order looking for theirs (all of them for an agent without a
        # team); the values are an index condition (none: no query at all).
        return open_q & Q(team__in=list(_team_ids(agent) if teams is None else teams))
    if view == "pending":
        return Q(status=Ticket.Status.PENDING, merged_into=None)
    if view == "solved":
        return Q(InConstants(F("status"), (Ticket.Status.SOLVED, Ticket.Status.CLOSED)), merged_into=None)
    return open_q


# The sidebar counts up to this many tickets a view and shows "999+" past it. An exact count
# reads every matching row (300k open tickets at 1M); a capped one walks the view's own index
# in the list's order and stops at INBOX_COUNT_CAP + 1 matches: cap entries for a plain view,
# about cap / selectivity when a filter (an agent's scope, a saved view's channel or priority)
# is checked on the way — bounded, whatever the size of the table. It stays right under team
# scoping, per-agent views and any saved view's filters, which a counts table would have to
# keep per view, team and agent and update on every assignment, team and status change.
INBOX_COUNT_CAP = 999


class CappedCount(int):
    """A view's count, at most the cap; `capped` says there are more (shown as "999+")."""

    capped = False

    @classmethod
    def of(cls, value: int, cap: int) -> CappedCount:
        count = cls(min(value, cap))
        count.capped = value > cap
        return count


def _capped_counts_sql(querysets: dict, *, cap: int | None = None) -> tuple[str, list]:
    """One statement counting each (ordered) queryset's first cap + 1 rows:
    SELECT (SELECT COUNT(*) FROM (<view> LIMIT cap + 1) c0), (SELECT …) …"""
    from django.core.exceptions import EmptyResultSet

    cap = INBOX_COUNT_CAP if cap is None else cap
    parts, params = [], []
    for i, qs in enumerate(querysets.values()):
        try:
            sql, view_params = qs.values("pk")[: cap + 1].query.sql_with_params()
        except EmptyResultSet:  # e.g. none() for someone who sees no ticket
            parts.append("0")
            continue
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) AS c{i})")  # noqa: S608 - the ORM's SQL, params apart
        params.extend(view_params)
    return "SELECT " + ", ".join(parts), params


def _team_ids(agent) -> tuple[int, ...]:
    """The agent's teams (ids, in order): one query, its statement compiled once per agent."""
    pk = getattr(agent, "pk", None)
    if pk is None:
        return ()
    build = lambda: Statement.of(Team.members.through.objects.filter(user_id=pk).values_list("team_id"))  # noqa: E731
    return tuple(sorted(team_id for (team_id,) in _agent_statements.get(("teams", pk), build).rows()))


# Statements of one agent's own rows (teams, saved views), compiled once per agent and process.
_agent_statements = Statements(size=2000)


def _view_tickets(*, agent, view: str, teams: tuple[int, ...] | None = None) -> QuerySet[Ticket]:
    """A built-in view's tickets that the agent may see."""
    if view in ("mine", "teams") and user_role(agent) is not None:
        # Tickets assigned to an agent or to one of their teams are theirs to see
        # (tickets_visible_to's first two rules): the view is then a range of the assignee or
        # team index, not a walk of every open ticket checking the whole scope.
        return Ticket.objects.filter(_view_q(agent=agent, view=view, teams=teams))
    return tickets_visible_to(agent=agent).filter(_view_q(agent=agent, view=view, teams=teams))


def inbox_counts_querysets(*, agent, teams: tuple[int, ...] | None = None) -> dict[str, QuerySet[Ticket]]:
    """Each built-in view as the list reads it (scoped, in its order), for counting."""
    teams = _team_ids(agent) if teams is None else teams
    return {view: _ordered(_view_tickets(agent=agent, view=view, teams=teams)) for view in INBOX_VIEWS}


# The counts' statements compiled, per process (issue 12): building and compiling some twenty
# querysets costs about as much as running them. The SQL and the parameters of an agent's
# counts are a function of the key they are kept under — the agent, their role and team ids
# (read on each call: one query), the saved views' filters and the cap — so a statement is
# reused only where the ORM would write the very same one. A saved view with an SLA filter
# reads the clock (its parameters change by the second): such statements are compiled each time.
_count_statements = Statements(size=2000)


def _counts_compiled(key: tuple | None, build, cap: int, values: dict[int, int] | None = None) -> dict:
    """Run the capped counts of the querysets `build()` returns, compiled once per `key`
    (None: not kept), with `values` put in for the stand-in's numbers (`Statement.with_values`)."""

    def compile_counts() -> Statement:
        querysets = build()
        if not querysets:
            return Statement(None, (), "")
        sql, params = _capped_counts_sql(querysets, cap=cap)
        return Statement(sql, tuple(params), next(iter(querysets.values())).db, labels=tuple(querysets))

    statement = _count_statements.get(key, compile_counts)
    row = (statement.with_values(values) if values else statement).row()
    if row is None:
        return {}
    return {label: CappedCount.of(value, cap) for label, value in zip(statement.labels, row, strict=True)}


def inbox_counts(*, agent, cap: int | None = None) -> dict[str, CappedCount]:
    """Every built-in view's count, capped (see INBOX_COUNT_CAP), in one query (and one for
    the agent's teams).

    The statement is compiled once per role and number of teams, not once per agent: for a
    stand-in (an unsaved user of the same role whose id, and whose teams' ids, are numbers no
    row has), then run with the agent's own in their places. The agent's id and team ids are
    the only parameters an agent's counts have that another's of the same role have not; 200
    agents connecting at once after a restart compiled 200 statements (10 ms each) before."""
    cap = INBOX_COUNT_CAP if cap is None else cap
    teams = _team_ids(agent)
    role, pk = user_role(agent), getattr(agent, "pk", None)
    if role is None or type(pk) is not int:
        key = ("views", pk, role, teams, cap)
        return _counts_compiled(key, lambda: inbox_counts_querysets(agent=agent, teams=teams), cap)
    stand_in_teams = tuple(_STAND_IN_ID - 1 - i for i in range(len(teams)))
    key = ("views", role, agent.is_superuser, len(teams), cap)
    values = {_STAND_IN_ID: pk, **dict(zip(stand_in_teams, teams, strict=True))}
    build = lambda: inbox_counts_querysets(agent=_stand_in(agent, role, _STAND_IN_ID), teams=stand_in_teams)  # noqa: E731
    return _counts_compiled(key, build, cap, values)


_STAND_IN_ID = STAND_IN  # a stand-in's user id; its teams' ids are just below it: no row's


def _stand_in(agent, role: str, pk: int):
    """An unsaved user with `agent`'s role and rights and `pk` (a stand-in number) for an id."""
    from django.contrib.auth import get_user_model

    from accounts.roles import role_remember

    stand_in = get_user_model()(pk=pk, is_active=True, is_staff=True, is_superuser=agent.is_superuser)
    role_remember(stand_in, role)
    return stand_in


def canned_for_language(*, language: str) -> list:
    """The active canned responses, each as its translation in `language` when there is
    one (fallback chain: exact, base language, the original). Two queries."""
    from django.db.models import Prefetch

    from cxdesk.i18n import pick_translation

    from .models import CannedResponse

    originals = CannedResponse.objects.filter(is_active=True, translation_of=None).prefetch_related(
        Prefetch("translations", queryset=CannedResponse.objects.filter(is_active=True))
    )
    return [pick_translation(c, language, c.translations.all()) for c in originals]


INBOX_FILTERS = ("channel", "status", "priority", "tag", "inbox_id", "q", "sla")


def inbox_filters_clean(params) -> dict[str, str]:
    """The inbox's view, filters and sort from untrusted input (query string or socket)."""
    out = {k: str(params.get(k) or "")[:200] for k in (*INBOX_FILTERS, "sort", "before")}
    view = str(params.get("view") or "open")
    out["view"] = view if view in INBOX_VIEWS else "open"
    out["sort"] = _sort_for(out["view"], out["sort"])
    return out


def _sort_for(view: str, sort: str) -> str:
    """The effective sort. "Waiting longest" orders tickets someone waits on: on solved ones
    it means nothing (and no index keeps them in that order), so "solved" is by activity."""
    return "waiting" if sort == "waiting" and view != "solved" else "activity"


def inbox_queryset(
    *, agent, view: str = "open", channel: str = "", status: str = "", priority: str = "", tag: str = "",
    inbox_id: str = "", q: str = "", sla: str = "", teams: tuple[int, ...] | None = None,
) -> QuerySet[Ticket]:  # fmt: skip
    """An inbox view with its filters, annotated for its rows (last message excerpt and
    direction by subquery: one query for the whole page)."""
    qs = _inbox_filtered(
        agent=agent, view=view, channel=channel, status=status, priority=priority, tag=tag, inbox_id=inbox_id,
        q=q, sla=sla, teams=teams,
    )  # fmt: skip
    return _with_row_annotations(qs.select_related("customer", "assignee", "team"))


def _with_row_annotations(qs: QuerySet[Ticket]) -> QuerySet[Ticket]:
    """The row's last message excerpt and direction, by subquery."""
    from django.db.models import OuterRef, Subquery
    from django.db.models.functions import Substr

    last = Message.objects.filter(ticket=OuterRef("pk")).exclude(direction="note").order_by("-created_at", "-id")
    return qs.annotate(
        excerpt=Subquery(last.annotate(short=Substr("body_text", 1, 140)).values("short")[:1]),
        last_direction=Subquery(last.values("direction")[:1]),
    )


def _inbox_filtered(
    *, agent, view: str = "open", channel: str = "", status: str = "", priority: str = "", tag: str = "",
    inbox_id: str = "", q: str = "", sla: str = "", teams: tuple[int, ...] | None = None,
) -> QuerySet[Ticket]:  # fmt: skip
    qs = _view_tickets(agent=agent, view=view, teams=teams)
    if channel:
        qs = qs.filter(channel=channel)
    if status:
        qs = qs.filter(status=status)
    if priority:
        qs = qs.filter(priority=priority)
    if tag:
        qs = qs.filter(tags__name=tag)
    if inbox_id.isdecimal():
        qs = qs.filter(inbox_id=int(inbox_id))
    if sla:
        from django.utils import timezone

        from sla.selectors import filter_by_sla_state

        qs = filter_by_sla_state(qs, state=sla, now=timezone.now())
    if q.strip():
        qs = qs.filter(_search_q(q.strip()))
    return qs


def _ordered(qs: QuerySet[Ticket], sort: str = "activity") -> QuerySet[Ticket]:
    """The list's order (the indexes' order): newest activity first, or longest waiting."""
    if sort == "waiting":
        return qs.exclude(last_customer_message_at=None).order_by("last_customer_message_at", "id")
    return qs.order_by("-last_message_at", "-id")


def inbox_page(
    *, agent, view: str = "open", channel: str = "", status: str = "", priority: str = "", tag: str = "",
    inbox_id: str = "", q: str = "", sort: str = "activity", before: str = "", limit: int = 50, sla: str = "",
) -> tuple[list[InboxTicket], str]:  # fmt: skip
    """One page of an inbox view, newest activity first (or longest waiting), keyset-paginated.
    Returns (rows, cursor of the next page or ""). The rows are read on every call; the
    statement is compiled once per key (`_inbox_tickets_compiled`)."""
    from django.db.models import Q

    sort = _sort_for(view, sort)
    teams = _team_ids(agent) if view == "teams" else None

    def page() -> QuerySet[Ticket]:
        qs = inbox_queryset(
            agent=agent, view=view, channel=channel, status=status, priority=priority, tag=tag, inbox_id=inbox_id,
            q=q, sla=sla, teams=teams,
        )  # fmt: skip
        if before:
            from cxdesk.dates import parse_datetime

            stamp, _, pk = before.rpartition("|")
            at = parse_datetime(stamp)
            if at is not None and pk.isdecimal():
                # The first condition starts the index scan at the cursor; the second is the tiebreak.
                if sort == "waiting":
                    qs = qs.filter(last_customer_message_at__gte=at).filter(
                        Q(last_customer_message_at__gt=at) | Q(last_customer_message_at=at, id__gt=int(pk))
                    )
                else:
                    qs = qs.filter(last_message_at__lte=at).filter(
                        Q(last_message_at__lt=at) | Q(last_message_at=at, id__lt=int(pk))
                    )
        return _ordered(qs, sort)[: limit + 1]

    # Everything the statement is a function of; an SLA filter reads the clock (not kept).
    shown = (view, channel, status, priority, tag, inbox_id, q, sort, before, limit)
    key = None if sla else (getattr(agent, "pk", None), user_role(agent), teams, shown)
    rows = _inbox_tickets_compiled(key, page)
    cursor = ""
    if len(rows) > limit:
        rows = rows[:limit]
        tail = rows[-1]
        at = tail.last_customer_message_at if sort == "waiting" else tail.last_message_at
        cursor = f"{at.isoformat() if at else ''}|{tail.pk}"
    return rows, cursor


# Inbox pages' statements compiled, per process, like the counts' (`_counts_compiled`): the
# SQL, parameters and value converters of a page are a function of its key.
_list_statements = Statements(size=2000)


def _inbox_tickets_compiled(key: tuple | None, build) -> list[InboxTicket]:
    """`_inbox_tickets(build())`, the statement compiled once per `key` (None: not kept)."""
    statement = _list_statements.get(key, lambda: Statement.of(build().values_list(*_INBOX_TICKET_FIELDS.values())))
    return [InboxTicket(*row) for row in statement.rows()]


def inbox_row(*, agent, ticket_id: int, filters: dict[str, str]) -> InboxTicket | None:
    """One ticket as an inbox row, or None when it is not (or no longer) in the agent's
    current view and filters."""
    return inbox_rows_by_id(agent=agent, ticket_ids=[ticket_id], filters=filters).get(ticket_id)


def inbox_rows_by_id(*, agent, ticket_ids: list[int], filters: dict[str, str]) -> dict[int, InboxTicket]:
    """Those of `ticket_ids` that are in the agent's current view and filters, as inbox rows
    by id: one query however many (the live inbox re-renders a socket's changed rows together).
    The statement is compiled once per agent, role, teams and filters (`_row_statements`), the
    ids one array parameter (`AnyOf`), so a live socket's renders build no queryset."""
    if not ticket_ids:
        return {}
    kwargs = {k: filters.get(k, "") for k in INBOX_FILTERS}
    view = filters.get("view", "open")
    teams = _team_ids(agent) if view == "teams" else None

    def rows_of(ids) -> QuerySet[Ticket]:
        qs = inbox_queryset(agent=agent, view=view, teams=teams, **kwargs).filter(ids).order_by()
        return qs.values_list(*_INBOX_TICKET_FIELDS.values())

    kept = not kwargs["sla"]  # an SLA filter reads the clock
    key = (getattr(agent, "pk", None), user_role(agent), teams, view, tuple(kwargs.values())) if kept else None
    return {row[0]: InboxTicket(*row) for row in _rows_by_id(key, rows_of, ticket_ids)}


def _rows_by_id(key: tuple | None, rows_of: Callable[[Q | AnyOf], QuerySet], ticket_ids: list[int]) -> list:
    """`rows_of(<pk among ticket_ids>)` run. On PostgreSQL the statement is compiled once per
    `key` (`_row_statements`; None: not kept) with the ids as one array parameter (`AnyOf`):
    the marker list stands for them while compiling and is found among the parameters by
    identity. Elsewhere (SQLite, `make run`) a plain `pk IN (…)`."""
    from django.db import connections

    def compile_rows() -> Statement:
        marker: list[int] = []
        statement = Statement.of(rows_of(AnyOf(F("pk"), marker)))
        slots = tuple(i for i, value in enumerate(statement.params) if value is marker)
        return Statement(statement.sql, statement.params, statement.alias, statement.converters, slots)

    statement = None
    if key is not None and connections[Ticket.objects.db].vendor == "postgresql":
        statement = _row_statements.get(key, compile_rows)
    if statement is None or len(statement.labels) != 1 or statement.sql is None:
        return list(rows_of(Q(pk__in=ticket_ids)))
    return statement.with_param(statement.labels[0], list(ticket_ids)).rows()


# The live inbox's row statements, compiled per process like the pages' (`_list_statements`).
_row_statements = Statements(size=2000)


# --- the live inbox's rows, decided per agent in Python ------------------------------------
#
# 200 agents on their inboxes, each socket asking for its changed rows with its own scoped
# query, were 200 queries a second at 20 changes a second (issue 12). The live inbox reads a
# changed ticket once per process (`inbox_live_rows`: its row and what the scope and the
# views look at) and decides for each socket in Python (`live_in_view`, `live_sees`): the
# rules of `tickets_visible_to`, `_view_q` and `_inbox_filtered` written a second time. They
# must agree; tests/tickets/test_live_rules.py compares them with the SQL on every view,
# role and filter. A filter Python does not decide (tag, search, SLA) goes to SQL.

LIVE_FILTERS = ("channel", "status", "priority", "inbox_id")  # what `live_in_view` decides


class LiveRow(NamedTuple):
    """A ticket as the live inbox reads it once for all the process's sockets."""

    row: InboxTicket
    status: str
    merged: bool
    inbox_id: int | None
    inbox_team_id: int | None  # the inbox's default team: its agents see the ticket


class LiveAgent(NamedTuple):
    """Who asks, as the rules need them: their id, role (None: sees nothing) and team ids."""

    pk: int
    role: str | None
    teams: frozenset[int]


def inbox_live_rows(ticket_ids: list[int]) -> dict[int, LiveRow]:
    """The tickets among `ticket_ids` (whoever may see them) as `LiveRow`s: one query, its
    statement compiled once per process."""
    if not ticket_ids:
        return {}

    def rows_of(ids) -> QuerySet[Ticket]:
        qs = _with_row_annotations(Ticket.objects.filter(ids).select_related("customer", "assignee", "team"))
        return qs.order_by().values_list(
            *_INBOX_TICKET_FIELDS.values(), "status", "merged_into_id", "inbox_id", "inbox__default_team_id"
        )

    width = len(_INBOX_TICKET_FIELDS)
    out = {}
    for values in _rows_by_id(("live",), rows_of, ticket_ids):
        status, merged_into, inbox_id, inbox_team = values[width:]
        out[values[0]] = LiveRow(InboxTicket(*values[:width]), status, merged_into is not None, inbox_id, inbox_team)
    return out


def team_members() -> dict[int, frozenset[int]]:
    """{user id: the ids of their teams}, for every user in a team: one query (the live inbox
    asks it through `cxdesk.memo.kept`, once a second for all the sockets of a process)."""
    members: dict[int, set[int]] = {}
    for user_id, team_id in Team.members.through.objects.values_list("user_id", "team_id"):
        members.setdefault(user_id, set()).add(team_id)
    return {user_id: frozenset(teams) for user_id, teams in members.items()}


def live_sees(row: LiveRow, agent: LiveAgent) -> bool:
    """`tickets_visible_to`'s rules for one ticket."""
    if agent.role is None:
        return False
    if agent.role in (SUPERVISOR, ADMIN):
        return True
    return row.row.assignee_id == agent.pk or row.row.team_id in agent.teams or row.inbox_team_id in agent.teams


def live_decides(filters: dict[str, str]) -> bool:
    """Whether `live_in_view` decides these filters (none but `LIVE_FILTERS` set)."""
    return not any(filters.get(k) for k in INBOX_FILTERS if k not in LIVE_FILTERS)


def live_in_view(row: LiveRow, agent: LiveAgent, filters: dict[str, str]) -> bool:
    """Whether the ticket is in the agent's view with these filters (`inbox_queryset`'s
    rows), for filters `live_decides`."""
    if agent.role is None or row.merged:
        return False
    view, ticket = filters.get("view", "open"), row.row
    open_ = row.status in Ticket.OPEN_STATUSES
    if view == "mine":
        shown = open_ and ticket.assignee_id == agent.pk
    elif view == "teams":
        shown = open_ and ticket.team_id in agent.teams
    else:
        if view == "unassigned":
            shown = open_ and ticket.assignee_id is None
        elif view == "pending":
            shown = row.status == Ticket.Status.PENDING
        elif view == "solved":
            shown = row.status in (Ticket.Status.SOLVED, Ticket.Status.CLOSED)
        else:
            shown = open_
        shown = shown and live_sees(row, agent)
    inbox_id = filters.get("inbox_id", "")
    return (
        shown
        and (not filters.get("channel") or ticket.channel == filters["channel"])
        and (not filters.get("status") or row.status == filters["status"])
        and (not filters.get("priority") or ticket.priority == filters["priority"])
        and (not inbox_id.isdecimal() or row.inbox_id == int(inbox_id))
    )


class InboxTicket(NamedTuple):
    """What an inbox row reads of a ticket and its customer, assignee and team: plain values
    (`values_list`), not four model instances a row — building those was most of the page's
    time in Python. `tickets.inbox_rows` renders them (a tuple: the key of its row cache)."""

    pk: int
    subject: str
    channel: str
    priority: str
    status: str
    last_message_at: datetime | None
    last_customer_message_at: datetime | None
    excerpt: str | None
    last_direction: str | None
    customer_id: int
    customer_name: str
    customer_erased_at: datetime | None
    assignee_id: int | None
    assignee_first_name: str | None
    assignee_last_name: str | None
    assignee_username: str | None
    team_id: int | None
    team_name: str | None

    @property
    def reference(self) -> str:
        return Ticket.reference_of(self.pk)

    @property
    def customer(self) -> str:
        """The customer as `str(customer)` shows them."""
        from customers.models import Customer

        return Customer.display_name(self.customer_id, self.customer_name, self.customer_erased_at)

    @property
    def assignee_name(self) -> str:
        """The assignee as `user.get_full_name() or user.username` ("" when unassigned)."""
        if self.assignee_id is None:
            return ""
        return f"{self.assignee_first_name} {self.assignee_last_name}".strip() or self.assignee_username or ""


_INBOX_TICKET_FIELDS = {
    "pk": "pk", "subject": "subject", "channel": "channel", "priority": "priority", "status": "status",
    "last_message_at": "last_message_at", "last_customer_message_at": "last_customer_message_at",
    "excerpt": "excerpt", "last_direction": "last_direction", "customer_id": "customer_id",
    "customer_name": "customer__name", "customer_erased_at": "customer__erased_at", "assignee_id": "assignee_id",
    "assignee_first_name": "assignee__first_name", "assignee_last_name": "assignee__last_name",
    "assignee_username": "assignee__username", "team_id": "team_id", "team_name": "team__name",
}  # fmt: skip


def _inbox_tickets(qs: QuerySet[Ticket]) -> list[InboxTicket]:
    """The rows of an `inbox_queryset` (sliced) as InboxTicket records, one query."""
    return [InboxTicket(*values) for values in qs.values_list(*_INBOX_TICKET_FIELDS.values())]


def _search_q(q: str):
    """Subjects and messages by full text on PostgreSQL (GIN indexes, migration 0004), by
    substring elsewhere; customer names and identities by substring; CX-n by reference."""
    from django.db import connection
    from django.db.models import Exists, OuterRef, Q

    from customers.models import Customer, Identity

    term = q[3:] if q.upper().startswith("CX-") else q
    people = Exists(Identity.objects.filter(customer=OuterRef("customer"), address__icontains=q)) | Exists(
        Customer.objects.filter(pk=OuterRef("customer"), name__icontains=q)
    )
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchVector

        query = SearchQuery(q, config="simple", search_type="websearch")
        text = Q(
            pk__in=Ticket.objects.annotate(v=SearchVector("subject", config="simple")).filter(v=query).values("pk")
        )
        text |= Exists(
            Message.objects.annotate(v=SearchVector("body_text", config="simple"))
            .filter(ticket=OuterRef("pk"), v=query)
            .exclude(direction="note")
        )
    else:
        text = Q(subject__icontains=q) | Exists(
            Message.objects.filter(ticket=OuterRef("pk"), body_text__icontains=q).exclude(direction="note")
        )
    match = text | people
    if term.isdecimal():
        match |= Q(pk=int(term))
    return match


def ticket_timeline_items(*, ticket: Ticket) -> list[tuple[str, object]]:
    """Messages (every channel, notes) and events in time order: [("message", m) | ("event", e)]."""
    messages = list(
        ticket.messages.select_related("author", "identity", "inbox")
        .prefetch_related("attachments")
        .order_by("created_at", "id")
    )
    events = list(ticket.events.select_related("actor").order_by("created_at", "id"))
    items = [("message", m) for m in messages] + [("event", e) for e in events]
    # Messages by the provider's timestamp (a WhatsApp message sent first but delivered
    # second still comes first), arrival order (id) as the tiebreak.
    items.sort(
        key=lambda item: (
            item[1].timeline_at if item[0] == "message" else item[1].created_at,
            0 if item[0] == "message" else 1,
            item[1].pk,
        )
    )
    return items


# The sidebar counts at most this many saved views (all in one query, each capped).
SAVED_VIEWS_COUNTED = 12


class InboxChoices(NamedTuple):
    """The inbox page's filter and bulk-action choices, as (id, name) pairs (the keys of the
    page's fragments: tuples)."""

    inboxes: tuple[tuple[int, str], ...]
    agents: tuple[tuple[int, str], ...]
    teams: tuple[tuple[int, str], ...]


def inbox_choices() -> InboxChoices:
    """Inboxes, active staff (by first name; shown as `get_full_name() or username`) and
    teams: three queries."""
    from django.contrib.auth import get_user_model

    staff = (
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .order_by("first_name", "username")
        .values_list("pk", "first_name", "last_name", "username")
    )
    return InboxChoices(
        inboxes=tuple(Inbox.objects.order_by("name").values_list("pk", "name")),
        agents=tuple((pk, f"{first} {last}".strip() or username) for pk, first, last, username in staff),
        teams=tuple(Team.objects.order_by("name").values_list("pk", "name")),
    )


def saved_views_for(*, agent) -> list[SavedView]:
    """The agent's own views and every shared one, in sidebar order (the owner as its id:
    nothing shows more of them). One query, its statement compiled once per agent."""
    names = [field.attname for field in SavedView._meta.concrete_fields]
    views = SavedView.objects.filter(Q(owner=agent) | Q(shared=True)).order_by("position", "name", "id")
    pk = getattr(agent, "pk", None)
    key = ("saved-views", pk) if pk is not None else None  # None: compiled for this call only
    statement = _agent_statements.get(key, lambda: Statement.of(views.values_list(*names)))
    return [SavedView.from_db(statement.alias, names, row) for row in statement.rows()]


def saved_view_get(*, agent, view_id: int) -> SavedView | None:
    return SavedView.objects.filter(Q(owner=agent) | Q(shared=True), pk=view_id).first()


def saved_view_filters(view: SavedView) -> dict[str, str]:
    return inbox_filters_clean(view.filters or {})


def saved_view_counts_querysets(
    *, agent, views: list[SavedView], teams: tuple[int, ...] | None = None
) -> dict[int, QuerySet[Ticket]]:
    out = {}
    for view in views[:SAVED_VIEWS_COUNTED]:
        f = saved_view_filters(view)
        qs = _inbox_filtered(agent=agent, view=f["view"], teams=teams, **{k: f[k] for k in INBOX_FILTERS})
        out[view.pk] = _ordered(qs, f["sort"])
    return out


def saved_view_counts(*, agent, views: list[SavedView], cap: int | None = None) -> dict[int, CappedCount]:
    """Tickets in each saved view (the first SAVED_VIEWS_COUNTED), as the list shows them,
    capped like the built-in views' counts, all in one query (and one for the agent's teams
    when a view is "My teams")."""
    cap = INBOX_COUNT_CAP if cap is None else cap
    counted = views[:SAVED_VIEWS_COUNTED]
    if not counted:
        return {}
    filters = [saved_view_filters(view) for view in counted]
    teams = _team_ids(agent) if any(f["view"] == "teams" for f in filters) else ()
    key = None
    if not any(f["sla"] for f in filters):
        shown = tuple((view.pk, tuple(sorted(f.items()))) for view, f in zip(counted, filters, strict=True))
        key = ("saved", getattr(agent, "pk", None), user_role(agent), teams, cap, shown)
    return _counts_compiled(key, lambda: saved_view_counts_querysets(agent=agent, views=counted, teams=teams), cap)


def screen_pop_context(
    *, agent, ticket_id: int, exclude_message_id: int | None = None, messages_scanned: int = 60, pages: int = 5
) -> dict | None:
    """What an agent sees while a customer's call rings: the caller, their open tickets,
    the last message on every channel (but the ringing call's own), and their last web
    pages — five queries."""
    from customers.selectors import customer_recent_pages

    ticket = tickets_visible_to(agent=agent).select_related("customer", "assignee").filter(pk=ticket_id).first()
    if ticket is None:
        return None
    customer = ticket.customer
    open_tickets = list(
        Ticket.objects.filter(customer=customer, status__in=Ticket.OPEN_STATUSES, merged_into=None)
        .select_related("assignee")
        .order_by("-last_message_at", "-id")[:3]
    )
    last_by_channel: dict[str, Message] = {}
    recent = (
        Message.objects.filter(ticket__customer=customer)
        .exclude(direction=Message.Direction.NOTE)
        .exclude(pk=exclude_message_id)
        .only("id", "ticket_id", "channel", "direction", "subject", "body_text", "created_at")
        .order_by("-created_at", "-id")[:messages_scanned]
    )
    for message in recent:
        last_by_channel.setdefault(message.channel, message)
    return {
        "ticket": ticket,
        "customer": customer,
        "identities": list(customer.identities.order_by("kind", "address")),
        "open_tickets": open_tickets,
        "last_messages": list(last_by_channel.values()),
        "pages": customer_recent_pages(customer=customer, limit=pages),
    }
