"""The inbox at 1,000,000 tickets (PostgreSQL): every view, its capped counts and the saved
views' counts are served by an index — no sequential scan of the tickets table in any plan.

One million tickets are seeded once for the module with a single INSERT … SELECT FROM
generate_series (3,000 customers, ~30% open/pending, six teams, twelve assignees, three
inboxes, two of them with a team), then VACUUM ANALYZE; they are removed afterwards. Each
plan is EXPLAIN (FORMAT JSON) of the very SQL the selector ran (captured from the
connection: client-side binding, so the statement as the server received it), as a
supervisor and as a team-scoped agent."""

from __future__ import annotations

import json
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tickets import selectors

TICKETS = 1_000_000


def _needs_postgresql():
    if connection.vendor != "postgresql":
        if os.environ.get("CI") == "true":
            pytest.fail("the inbox scale test needs PostgreSQL")
        pytest.skip("needs PostgreSQL")


@pytest.fixture(scope="module")
def million(django_db_setup, django_db_blocker):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from tickets.models import SavedView, Team, Ticket

    Inbox = Ticket._meta.get_field("inbox").related_model
    User = get_user_model()

    def clean_up():
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")
            cursor.execute("TRUNCATE tickets_ticket, customers_customer CASCADE")
            # The seed's team memberships were audited, committed: not for the tests after this
            # module (the log refuses DELETE, not TRUNCATE; this is the test database).
            cursor.execute("TRUNCATE audit_auditentry")
        SavedView.objects.filter(owner__username="scale-supervisor").delete()
        Inbox.objects.filter(name__startswith="scale-").delete()
        User.objects.filter(username__startswith="scale-").delete()
        Team.objects.filter(name__startswith="scale-team-").delete()

    with django_db_blocker.unblock():
        _needs_postgresql()
        try:
            data = _seed(Team, Inbox, User, Group, SavedView)
        except BaseException:
            clean_up()
            raise
    try:
        yield data
    finally:
        with django_db_blocker.unblock():
            clean_up()


def _seed(Team, Inbox, User, Group, SavedView) -> dict:
    teams = [Team.objects.create(name=f"scale-team-{i}") for i in range(6)]
    agents = []
    for i in range(12):
        user = User.objects.create(username=f"scale-agent-{i}", is_staff=True)
        user.groups.add(Group.objects.get_or_create(name="agent")[0])
        teams[i % 6].members.add(user)
        agents.append(user)
    supervisor = User.objects.create(username="scale-supervisor", is_staff=True)
    supervisor.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    inboxes = [
        Inbox.objects.create(kind="email", name="scale-email", default_team=teams[0]),
        Inbox.objects.create(kind="twilio", name="scale-sms", default_team=teams[1]),
        Inbox.objects.create(kind="webchat", name="scale-chat"),
    ]
    views = [
        SavedView.objects.create(owner=supervisor, shared=True, name=name, filters=filters)
        for name, filters in (
            ("Texts", {"view": "open", "channel": "sms"}),
            ("Urgent", {"view": "open", "priority": "urgent"}),
            ("Waiting", {"view": "open", "sort": "waiting"}),
            ("Email inbox", {"view": "open", "inbox_id": str(inboxes[0].pk)}),
            ("Pending mine", {"view": "mine", "status": "pending"}),
            ("Solved SMS", {"view": "solved", "channel": "sms"}),
        )
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO customers_customer (name, attributes, language, created_at, updated_at)
               SELECT 'scale customer ' || g, '{}', '', now(), now() FROM generate_series(1, 3000) g
               RETURNING id"""
        )
        customers = [row[0] for row in cursor.fetchall()]
        # Rows consistent by construction: skip the million foreign-key trigger checks. In
        # the order of their activity (and reply token), as a live desk writes them: the
        # indexes are appended to rather than written all over.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SELECT setseed(0.12)")
        cursor.execute(
            """INSERT INTO tickets_ticket (subject, status, priority, channel, reply_token, created_at,
                   updated_at, last_customer_message_at, last_agent_message_at, last_message_at, reopen_count,
                   assignee_id, customer_id, inbox_id, team_id)
               SELECT '', status,
                   (ARRAY['normal','normal','normal','normal','low','high','urgent'])[1 + floor(r2 * 7)::int],
                   (ARRAY['email','email','sms','whatsapp','chat'])[1 + floor(r3 * 5)::int],
                   'scale-' || lpad(g::text, 7, '0'), at - interval '2 days', at,
                   CASE WHEN r4 < 0.7 THEN at ELSE at - interval '1 hour' END,
                   CASE WHEN r4 < 0.7 THEN NULL ELSE at END, at, 0,
                   CASE WHEN status IN ('new', 'open', 'pending') AND r5 < 0.4 THEN NULL
                        ELSE (%(agents)s::int[])[1 + floor(r6 * 12)::int] END,
                   (%(customers)s::bigint[])[1 + floor(r7 * 3000)::int],
                   (%(inboxes)s::bigint[])[1 + floor(r8 * 3)::int],
                   CASE WHEN r9 < 0.1 THEN NULL ELSE (%(teams)s::bigint[])[1 + floor(r9 * 6)::int] END
               FROM (
                   SELECT g, r1, r2, r3, r4, r5, r6, r7, r8, r9,
                       CASE WHEN r1 < 0.08 THEN 'new' WHEN r1 < 0.22 THEN 'open' WHEN r1 < 0.30 THEN 'pending'
                            WHEN r1 < 0.70 THEN 'solved' ELSE 'closed' END AS status,
                       now() - (%(n)s - g) * interval '30 seconds' AS at
                   FROM (SELECT g, random() r1, random() r2, random() r3, random() r4, random() r5,
                                random() r6, random() r7, random() r8, random() r9
                         FROM generate_series(1, %(n)s) g) AS rnd
               ) AS seeded""",
            {
                "n": TICKETS,
                "agents": [a.pk for a in agents],
                "customers": customers,
                "inboxes": [i.pk for i in inboxes],
                "teams": [t.pk for t in teams],
            },
        )
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("VACUUM ANALYZE tickets_ticket")
        cursor.execute("ANALYZE customers_customer")
    return {"supervisor": supervisor, "member": agents[3], "views": views}


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _explain(sql: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
        (raw,) = cursor.fetchone()
    plan = raw if isinstance(raw, list) else json.loads(raw)
    return list(_plan_nodes(plan[0]["Plan"]))


def _ticket_queries(call) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        call()
    return [q["sql"] for q in captured.captured_queries if '"tickets_ticket"' in q["sql"]]


def _assert_index_served(sql: str, what: str) -> None:
    nodes = _explain(sql)
    on_tickets = [n for n in nodes if n.get("Relation Name") == "tickets_ticket"]
    seq = [n for n in on_tickets if n["Node Type"] == "Seq Scan"]
    assert not seq, f"{what}: sequential scan of tickets in\n{sql}\n{json.dumps(on_tickets, indent=1)[:3000]}"
    assert on_tickets, f"{what}: the plan does not read tickets at all?\n{sql}"


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["supervisor", "member"])
def test_every_inbox_view_and_its_counts_are_served_by_an_index(million, who):
    from django.contrib.auth import get_user_model

    agent = get_user_model().objects.get(pk=million[who].pk)
    checked = 0
    for view in selectors.INBOX_VIEWS:
        for sort in ("activity", "waiting"):
            queries = _ticket_queries(lambda v=view, s=sort: selectors.inbox_page(agent=agent, view=v, sort=s))
            for sql in queries:
                _assert_index_served(sql, f"{who} {view} by {sort}")
                checked += 1
    # The next page (keyset), and the common filters.
    rows, cursor = selectors.inbox_page(agent=agent, view="open")
    assert len(rows) == 50 and cursor
    filtered = [
        {"view": "open", "before": cursor},
        {"view": "open", "channel": "sms"},
        {"view": "open", "priority": "urgent"},
        {"view": "open", "status": "pending"},
        {"view": "unassigned", "sort": "waiting"},
    ]
    for f in filtered:
        for sql in _ticket_queries(lambda f=f: selectors.inbox_page(agent=agent, **f)):
            _assert_index_served(sql, f"{who} {f}")
            checked += 1
    # The counts: one statement for the built-in views, one for the saved views.
    (counts_sql,) = _ticket_queries(lambda: selectors.inbox_counts(agent=agent))
    _assert_index_served(counts_sql, f"{who} inbox counts")
    (saved_sql,) = _ticket_queries(lambda: selectors.saved_view_counts(agent=agent, views=million["views"]))
    _assert_index_served(saved_sql, f"{who} saved view counts")
    assert checked >= 15  # a supervisor in no team: the "teams" view runs no query at all
    counts = selectors.inbox_counts(agent=agent)
    assert counts["open"] == selectors.INBOX_COUNT_CAP and counts["open"].capped
    assert counts["solved"].capped


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["supervisor", "member"])
def test_counts_read_at_most_the_cap_per_view(million, who):
    """EXPLAIN ANALYZE of the counts statement: no scan of tickets returns more than the
    cap + 1 rows, whatever the table's size (row counts, not timings)."""
    from django.contrib.auth import get_user_model

    agent = get_user_model().objects.get(pk=million[who].pk)
    sql, params = selectors._capped_counts_sql(selectors.inbox_counts_querysets(agent=agent))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        (raw,) = cursor.fetchone()
    plan = raw if isinstance(raw, list) else json.loads(raw)
    nodes = [n for n in _plan_nodes(plan[0]["Plan"]) if n.get("Relation Name") == "tickets_ticket"]
    assert len(nodes) == len(selectors.INBOX_VIEWS) - (0 if agent.teams.exists() else 1)
    for node in nodes:
        assert node["Actual Rows"] <= selectors.INBOX_COUNT_CAP + 1, json.dumps(plan, indent=1)[:6000]
