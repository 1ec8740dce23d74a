"""The inbox's counts: capped, one query for the views and one for the saved views, none for
the list partial; the page's query count does not grow with the tickets; team scoping; the
customer panel's channel list (issue 12)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_app.services import ingest
from customers.selectors import customer_stats
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory, TeamFactory, TicketFactory
from tickets import selectors
from tickets.models import SavedView, Ticket

pytestmark = pytest.mark.django_db


def make_tickets(email_inbox, n, start=0):
    for i in range(start, start + n):
        ingest(email_inbound(email_inbox, address=f"c{i}@example.com", subject=f"Subject {i}", text=f"body {i}"))


def _count_queries(captured):
    """Counts of tickets (the bell's unread-notification count is another matter)."""
    return [
        q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper() and "tickets_ticket" in q["sql"]
    ]


def test_page_query_count_is_the_same_for_10_and_60_tickets(desk, agent, email_inbox):
    for i, filters in enumerate(({"view": "open", "channel": "email"}, {"view": "mine"}, {"view": "solved"})):
        SavedView.objects.create(owner=agent, name=f"V{i}", filters=filters, shared=True)
    make_tickets(email_inbox, 10)
    desk.get("/desk/")  # warm: the session and the agent's role
    with CaptureQueriesContext(connection) as ten:
        assert desk.get("/desk/").status_code == 200
    make_tickets(email_inbox, 50, start=10)
    with CaptureQueriesContext(connection) as sixty:
        response = desk.get("/desk/")
    assert len(sixty.captured_queries) == len(ten.captured_queries)
    # The built-in views' counts are one query, the saved views' one more.
    assert len(_count_queries(sixty)) == 2
    assert len(response.context["tickets"]) == 50
    assert response.context["counts"]["open"] == 60, "the page shows 50 rows, the count says all open ones"
    assert b"Subject 59" in response.content


def test_the_list_partial_counts_nothing(desk, agent, email_inbox):
    SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})
    make_tickets(email_inbox, 3)
    with CaptureQueriesContext(connection) as captured:
        partial = desk.get("/desk/?view=open", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list")
    assert partial.status_code == 200 and b"Subject 2" in partial.content
    assert b"<html" not in partial.content and b"view-counts" not in partial.content
    assert _count_queries(captured) == []
    with CaptureQueriesContext(connection) as page:
        desk.get("/desk/?view=open")
    assert len(_count_queries(page)) == 2, "the whole page does count (this test can fail)"


def test_counts_stop_at_the_cap_and_show_a_plus(desk, agent, email_inbox, monkeypatch):
    SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"}, shared=True)
    make_tickets(email_inbox, 5)
    Ticket.objects.filter(subject="Subject 0").update(assignee=agent)
    monkeypatch.setattr(selectors, "INBOX_COUNT_CAP", 3)
    counts = selectors.inbox_counts(agent=agent)
    assert (counts["open"], counts["open"].capped) == (3, True)
    assert (counts["mine"], counts["mine"].capped) == (1, False)
    assert (counts["solved"], counts["solved"].capped) == (0, False)
    page = desk.get("/desk/").content.decode()
    assert 'data-view="open"' in page
    open_link = page.split('data-view="open"', 1)[1].split("</a>", 1)[0]
    assert '<span class="count">3+</span>' in open_link
    mine_link = page.split('data-view="mine"', 1)[1].split("</a>", 1)[0]
    assert '<span class="count">1</span>' in mine_link
    saved_link = page.split("data-saved=", 1)[1].split("</a>", 1)[0]
    assert '<span class="count">3+</span>' in saved_link
    monkeypatch.setattr(selectors, "INBOX_COUNT_CAP", 999)
    assert selectors.inbox_counts(agent=agent)["open"] == 5


def test_capped_count_is_localised(desk, agent, email_inbox, monkeypatch, settings):
    from django.utils import translation

    make_tickets(email_inbox, 2)
    settings.USE_THOUSAND_SEPARATOR = True
    with translation.override("de"):
        html = selectors_render(counts={"open": selectors.CappedCount.of(1500, 1200)})
    assert "1.200+" in html


def selectors_render(counts):
    from django.template.loader import render_to_string

    return render_to_string(
        "tickets/_view_counts.html", {"views": {"open": "All open"}, "counts": counts, "view": "open"}
    )


def test_saved_view_counts_are_one_query_whatever_their_number(agent, email_inbox, sms_inbox):
    make_tickets(email_inbox, 3)
    ingest(inbound(sms_inbox, address="+48600100999", text="sms"))
    views = [
        SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"}),
        SavedView.objects.create(owner=agent, name="Texts", filters={"view": "open", "channel": "sms"}),
        SavedView.objects.create(owner=agent, name="Waiting", filters={"view": "open", "sort": "waiting"}),
        SavedView.objects.create(owner=agent, name="Search", filters={"view": "open", "q": "body 1"}),
    ]
    selectors.user_role(agent)  # the agent's role is read once and kept on the user
    with CaptureQueriesContext(connection) as captured:
        counts = selectors.saved_view_counts(agent=agent, views=views)
    assert len(captured.captured_queries) == 1
    assert counts == {views[0].pk: 3, views[1].pk: 1, views[2].pk: 4, views[3].pk: 1}


def test_team_scoped_agent_counts_what_they_may_see(email_inbox):
    support, billing = TeamFactory(name="Support"), TeamFactory(name="Billing")
    member = AgentFactory(username="member", role="agent")
    support.members.add(member)
    email_inbox.default_team = support
    email_inbox.save()
    by_inbox = TicketFactory(inbox=email_inbox, status="open", channel="email")
    TicketFactory(team=support, status="new", channel="email")
    TicketFactory(assignee=member, team=billing, status="open", channel="email")
    TicketFactory(team=billing, status="open", channel="email")  # not theirs
    TicketFactory(team=support, status="solved", channel="email")
    counts = selectors.inbox_counts(agent=member)
    assert counts == {"mine": 1, "unassigned": 2, "teams": 1, "open": 3, "pending": 0, "solved": 1}
    assert by_inbox in selectors.tickets_visible_to(agent=member)
    nobody = AgentFactory(username="gone", is_staff=False)
    assert selectors.inbox_counts(agent=nobody) == dict.fromkeys(selectors.INBOX_VIEWS, 0)


def test_customer_channels_are_one_row_per_channel_not_per_message(email_inbox, sms_inbox):
    first = ingest(email_inbound(email_inbox, address="many@example.com", message_id="<m0@x>")).ticket
    for i in range(1, 12):
        ingest(email_inbound(email_inbox, address="many@example.com", message_id=f"<m{i}@x>", in_reply_to="<m0@x>"))
    from customers.models import Identity

    Identity.objects.create(customer=first.customer, kind="phone", address="+48600100777")
    for i in range(3):
        ingest(inbound(sms_inbox, address="+48600100777", text=f"sms {i}"))
    with CaptureQueriesContext(connection) as captured:
        stats = customer_stats(customer=first.customer)
    assert stats.channels == ["email", "sms"]
    (distinct,) = [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(distinct)
        rows = cursor.fetchall()
    assert len(rows) == 2, "DISTINCT over the channel alone, not over every message's ordering columns"


def test_the_live_inbox_rerenders_the_same_capped_counts(agent, email_inbox, monkeypatch):
    """A websocket re-render of the sidebar (tickets/consumers.py) goes through the same two
    capped count queries as the page."""
    from tickets.consumers import DeskConsumer

    SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})
    make_tickets(email_inbox, 5)
    monkeypatch.setattr(selectors, "INBOX_COUNT_CAP", 3)
    consumer = DeskConsumer()
    consumer.user, consumer.saved_active = agent, None
    consumer.inbox_filters = selectors.inbox_filters_clean({"view": "open"})
    selectors.user_role(agent)
    with CaptureQueriesContext(connection) as captured:
        ((_, html),), counted = consumer._render_inbox([Ticket.objects.latest("id").pk])
    assert counted
    assert 'id="view-counts" hx-swap-oob="true"' in html
    assert html.count('<span class="count">3+</span>') == 3, "All open, Unassigned and the saved view"
    assert len(_count_queries(captured)) == 2


@pytest.fixture
def compiled(monkeypatch):
    """How many times the counts' statements were compiled (built from querysets)."""
    calls = []
    compile_sql = selectors._capped_counts_sql

    def counting(querysets, **kwargs):
        calls.append(tuple(querysets))
        return compile_sql(querysets, **kwargs)

    monkeypatch.setattr(selectors, "_capped_counts_sql", counting)
    selectors._count_statements.clear()
    return calls


def test_count_statements_are_compiled_once_per_scope(agent, email_inbox, compiled):
    views = [
        SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"}),
        SavedView.objects.create(owner=agent, name="Teams", filters={"view": "teams"}),
    ]
    make_tickets(email_inbox, 2)
    assert selectors.inbox_counts(agent=agent)["open"] == 2
    assert selectors.saved_view_counts(agent=agent, views=views)[views[0].pk] == 2
    assert len(compiled) == 2
    make_tickets(email_inbox, 1, start=2)
    # Reused: the same statement runs again (the counts are read, not remembered).
    assert selectors.inbox_counts(agent=agent)["open"] == 3
    assert selectors.saved_view_counts(agent=agent, views=views)[views[0].pk] == 3
    assert len(compiled) == 2
    # What the statement depends on changes: compiled again, and right.
    support = TeamFactory(name="Support")
    support.members.add(agent)
    Ticket.objects.filter(subject="Subject 0").update(team=support)
    assert selectors.inbox_counts(agent=agent)["teams"] == 1
    assert selectors.saved_view_counts(agent=agent, views=views)[views[1].pk] == 1
    assert len(compiled) == 4
    views[0].filters = {"view": "open", "channel": "sms"}
    assert selectors.saved_view_counts(agent=agent, views=views)[views[0].pk] == 0
    # Another agent of the same role with as many teams (none, as `agent` had at first):
    # the same statement, run with their own id.
    other = AgentFactory(username="other")
    Ticket.objects.filter(subject="Subject 1").update(assignee=other)
    assert selectors.inbox_counts(agent=other)["mine"] == 1
    assert selectors.inbox_counts(agent=agent)["mine"] == 0
    assert len(compiled) == 5


def test_agents_of_a_role_share_a_compiled_statement_and_each_counts_their_own(email_inbox, compiled):
    """Compiled once per role and number of teams for a stand-in, run with each agent's id
    and team ids: every agent's counts are what the ORM counts for them."""
    billing, sales, legal = (TeamFactory(name=n) for n in ("Billing", "Sales", "Legal"))
    email_inbox.default_team = legal
    email_inbox.save()
    agents = []
    for n, teams in enumerate(([billing], [sales], [billing, sales], [legal], [])):
        agent = AgentFactory(username=f"share-{n}", role="agent")
        agent.teams.set(teams)
        agents.append(agent)
    agents += [AgentFactory(username="share-sup"), AgentFactory(username="share-root", is_superuser=True)]
    for n, (status, team) in enumerate(
        [(s, t) for s in ("new", "open", "pending", "solved") for t in (None, billing, sales, legal)]
    ):
        TicketFactory(status=status, team=team, assignee=agents[n % 6], inbox=email_inbox if n % 3 else None)
    for agent in agents:
        fresh = type(agent).objects.get(pk=agent.pk)
        expected = {view: qs.count() for view, qs in selectors.inbox_counts_querysets(agent=fresh).items()}
        assert selectors.inbox_counts(agent=fresh) == expected, agent.username
    # agent ×1 team, agent ×2, agent ×0, supervisor ×0, admin ×0
    assert len(compiled) == 5, "compiled per role and number of teams, not per agent"


def test_a_saved_view_on_the_sla_clock_is_compiled_each_time(agent, email_inbox, compiled):
    views = [SavedView.objects.create(owner=agent, name="Due", filters={"view": "open", "sla": "due_soon"})]
    make_tickets(email_inbox, 1)
    selectors.saved_view_counts(agent=agent, views=views)
    selectors.saved_view_counts(agent=agent, views=views)
    assert len(compiled) == 2, "its parameters hold the time"
