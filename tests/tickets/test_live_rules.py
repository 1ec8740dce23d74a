"""The live inbox decides in Python who sees a changed ticket and in which view
(`selectors.live_sees`, `live_in_view`), the rules `tickets_visible_to`, `_view_q` and
`_inbox_filtered` say in SQL. Written twice, they must agree: compared here on every
combination of status, merge, assignee, team and inbox, for every role, view and filter
Python decides."""

import itertools

import pytest
from django.contrib.auth import get_user_model

from accounts.roles import user_role
from tickets import selectors
from tickets.models import Inbox, Ticket

from .factories import AgentFactory, CustomerFactory, TeamFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    billing, sales = TeamFactory(name="live-billing"), TeamFactory(name="live-sales")
    inboxes = [
        Inbox.objects.create(kind="email", name="live-billing-mail", default_team=billing),
        Inbox.objects.create(kind="twilio", name="live-sales-sms", default_team=sales),
        Inbox.objects.create(kind="webchat", name="live-nobodys-chat"),
    ]
    ana = AgentFactory(username="live-ana", role="agent")
    ana.teams.set([billing])
    bob = AgentFactory(username="live-bob", role="agent")
    bob.teams.set([billing, sales])
    cid = AgentFactory(username="live-cid", role="agent")  # in no team
    sue = AgentFactory(username="live-sue", role="supervisor")
    sue.teams.set([sales])
    root = AgentFactory(username="live-root", is_superuser=True)
    gone = AgentFactory(username="live-gone", is_staff=False)  # no role: sees nothing
    customer = CustomerFactory()
    statuses = [s for s, _ in Ticket.Status.choices]
    tickets = []
    for n, (status, assignee, team, inbox) in enumerate(
        itertools.product(statuses, (None, ana, cid), (None, billing, sales), (*inboxes, None))
    ):
        tickets.append(
            Ticket(
                customer=customer,
                subject=f"live {n}",
                status=status,
                assignee=assignee,
                team=team,
                inbox=inbox,
                channel=("email", "sms")[n % 2],
                priority=("normal", "high", "low")[n % 3],
            )  # fmt: skip
        )
    Ticket.objects.bulk_create(tickets)
    tickets = list(Ticket.objects.order_by("pk"))
    merged = tickets[::7]  # a spread of them merged into another ticket: in no view
    Ticket.objects.filter(pk__in=[t.pk for t in merged]).update(merged_into=tickets[1])
    return {"agents": [ana, bob, cid, sue, root, gone], "inboxes": inboxes, "tickets": tickets}


def _live_agent(agent) -> selectors.LiveAgent:
    agent = get_user_model().objects.get(pk=agent.pk)  # the role read afresh
    teams = selectors.team_members().get(agent.pk, frozenset())
    return selectors.LiveAgent(agent.pk, user_role(agent), teams)


def test_python_sees_the_tickets_sql_shows_each_role(world):
    rows = selectors.inbox_live_rows([t.pk for t in world["tickets"]])
    assert len(rows) == len(world["tickets"]) == 180
    seen_any = set()
    for agent in world["agents"]:
        fresh = get_user_model().objects.get(pk=agent.pk)
        sql = set(selectors.tickets_visible_to(agent=fresh).values_list("pk", flat=True))
        python = {pk for pk, row in rows.items() if selectors.live_sees(row, _live_agent(agent))}
        assert python == sql, agent.username
        seen_any.add(len(sql))
    assert len(seen_any) >= 4, "the agents see different sets: the comparison means something"


def test_python_puts_each_ticket_in_the_views_sql_lists_for_every_filter_it_decides(world):
    rows = selectors.inbox_live_rows([t.pk for t in world["tickets"]])
    first_inbox = str(world["inboxes"][0].pk)
    filter_sets = [
        {},
        {"channel": "sms"},
        {"status": "pending"},
        {"status": "open", "priority": "high"},
        {"inbox_id": first_inbox},
        {"inbox_id": first_inbox, "channel": "email", "priority": "normal"},
        {"inbox_id": "not-a-number"},
    ]
    compared = nonempty = 0
    for agent, view, filters in itertools.product(world["agents"], selectors.INBOX_VIEWS, filter_sets):
        fresh = get_user_model().objects.get(pk=agent.pk)
        kwargs = {k: filters.get(k, "") for k in selectors.INBOX_FILTERS}
        sql = set(selectors.inbox_queryset(agent=fresh, view=view, **kwargs).values_list("pk", flat=True))
        decided = {"view": view, **filters}
        assert selectors.live_decides(decided)
        live = _live_agent(agent)
        python = {pk for pk, row in rows.items() if selectors.live_in_view(row, live, decided)}
        assert python == sql, (agent.username, view, filters, sorted(python ^ sql))
        compared += 1
        nonempty += bool(sql)
    assert compared == 6 * 6 * 7 and nonempty > 100


def test_filters_python_does_not_decide_go_to_sql():
    assert selectors.live_decides({"view": "open", "channel": "sms", "inbox_id": "3"})
    for k in ("tag", "q", "sla"):
        assert not selectors.live_decides({"view": "open", k: "x"})
    assert set(selectors.INBOX_FILTERS) - set(selectors.LIVE_FILTERS) == {"tag", "q", "sla"}, (
        "a new inbox filter: teach live_in_view it (and test it above), or leave it to SQL"
    )


def test_a_lookup_compiled_once_per_role_finds_for_each_agent_what_their_scope_shows(world, monkeypatch):
    from django.db import connection
    from django.db.models.sql.compiler import SQLCompiler
    from django.test.utils import CaptureQueriesContext

    selectors._for_role.clear()
    compiled = []
    real = SQLCompiler.as_sql
    monkeypatch.setattr(SQLCompiler, "as_sql", lambda self, *a, **k: compiled.append(1) or real(self, *a, **k))
    found_any = 0
    for agent in world["agents"]:
        fresh = get_user_model().objects.get(pk=agent.pk)
        visible = set(selectors.tickets_visible_to(agent=fresh).values_list("pk", flat=True))
        for ticket in world["tickets"][::3]:
            found = selectors.ticket_get_for_agent(agent=fresh, ticket_id=ticket.pk)
            assert (found is not None) == (ticket.pk in visible), (agent.username, ticket.pk)
            if found is not None:
                found_any += 1
                assert found.pk == ticket.pk and found.subject == ticket.subject
                with CaptureQueriesContext(connection) as ctx:
                    assert found.customer.pk and (found.inbox is None or found.inbox.name)
                assert not ctx.captured_queries, "read with the ticket"
    assert found_any > 60
    keys = set(selectors._for_role)
    assert keys == {("ticket", "agent", False), ("ticket", "supervisor", False), ("ticket", "admin", True)}
    monkeypatch.setattr(SQLCompiler, "as_sql", real)
    compiled_before = len(compiled)
    for agent in world["agents"][:2]:
        selectors.ticket_get_for_agent(
            agent=get_user_model().objects.get(pk=agent.pk), ticket_id=world["tickets"][0].pk
        )
    assert len(compiled) == compiled_before, "run again, not compiled again"
