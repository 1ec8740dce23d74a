"""The sidebar counts' cache (tickets/inbox_cache.py): a second page does not count again, a
committed change moves the generation (after the commit, never before) and the next page
counts it, an agent never gets another agent's counts, rows are never cached.

Transactional tests: the generation moves on real commits (a test inside one transaction
never commits, and the cache is bypassed inside transactions)."""

import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound
from tests.tickets.factories import AgentFactory, TeamFactory, TicketFactory
from tickets import inbox_cache, selectors, services
from tickets.models import SavedView, Ticket

pytestmark = pytest.mark.django_db(transaction=True)


def _count_queries(captured):
    return [
        q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper() and "tickets_ticket" in q["sql"]
    ]


def _count_of(page: str, view: str) -> str:
    link = page.split(f'data-view="{view}"', 1)[1].split("</a>", 1)[0]
    return link.split('<span class="count">', 1)[1].split("</span>", 1)[0]


def _desk(user):
    client = Client()
    client.force_login(user)
    return client


def test_a_second_page_does_not_count_again(desk, agent, email_inbox):
    SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})
    for i in range(3):
        ingest(email_inbound(email_inbox, address=f"c{i}@example.com", subject=f"Subject {i}"))
    with CaptureQueriesContext(connection) as first:
        page = desk.get("/desk/")
    assert len(_count_queries(first)) == 2
    assert page.context["counts"]["open"] == 3 and list(page.context["saved_counts"].values()) == [3]
    with CaptureQueriesContext(connection) as second:
        again = desk.get("/desk/")
    assert _count_queries(second) == [], "nothing was written: the counts come from the cache"
    # Neither the two count statements, the agent's teams, the saved views nor the choices
    # (inboxes, staff, teams): 14 queries, then 7.
    assert len(second.captured_queries) == len(first.captured_queries) - 7
    assert len(second.captured_queries) <= 7
    assert again.context["counts"] == page.context["counts"]
    assert again.context["saved_counts"] == page.context["saved_counts"]
    assert _count_of(again.content.decode(), "open") == "3"
    # The rows are read on every page all the same.
    assert any("LIMIT 51" in q["sql"] for q in second.captured_queries)


def test_a_committed_change_shows_on_the_next_page(desk, agent, email_inbox):
    ticket = ingest(email_inbound(email_inbox, address="a@example.com", subject="First")).ticket
    assert _count_of(desk.get("/desk/").content.decode(), "mine") == "0"
    services.ticket_update(ticket=ticket, actor=agent, assignee=agent)  # its own transaction
    page = desk.get("/desk/").content.decode()
    assert _count_of(page, "mine") == "1"
    assert _count_of(page, "unassigned") == "0"
    # QuerySet.update() (no model signal) and raw SQL are seen too.
    Ticket.objects.filter(pk=ticket.pk).update(status=Ticket.Status.SOLVED)
    page = desk.get("/desk/").content.decode()
    assert (_count_of(page, "open"), _count_of(page, "solved")) == ("0", "1")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tickets_ticket SET status = 'open' WHERE id = %s", [ticket.pk])
    assert _count_of(desk.get("/desk/").content.decode(), "open") == "1"


def test_the_generation_moves_after_the_commit_never_before(agent, email_inbox):
    ticket = TicketFactory(status="open")
    before = inbox_cache.generation()
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(priority="urgent")
        Ticket.objects.filter(pk=ticket.pk).update(priority="high")
        assert inbox_cache.generation() == before, "not before the commit"
    after = inbox_cache.generation()
    assert after == before + 1, "once per transaction, after its commit"
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(priority="low")
        transaction.set_rollback(True)
    assert inbox_cache.generation() == after, "a rolled-back write moves nothing"
    # A write in a rolled-back savepoint, then one in the transaction: still bumped.
    with transaction.atomic():
        with transaction.atomic():
            Ticket.objects.filter(pk=ticket.pk).update(priority="low")
            transaction.set_rollback(True)
        Ticket.objects.filter(pk=ticket.pk).update(priority="normal")
    assert inbox_cache.generation() == after + 1
    # Writes to tables the counts do not read move nothing.
    from tickets.models import Notification

    Notification.objects.filter(user=agent).update(read_at=None)
    assert inbox_cache.generation() == after + 1


def test_a_generation_gone_starts_again_from_a_fresh_value():
    """Evicted, the generation is not restarted at 1 by the next bump (a value some cached
    counts may still carry), but from a fresh one: one round trip either way."""
    from django.core.cache import cache

    cache.delete(inbox_cache.GENERATION_KEY)
    before = time.time_ns()
    inbox_cache.generation_bump()
    assert inbox_cache.generation() > before
    moved = inbox_cache.generation()
    inbox_cache.generation_bump()
    assert inbox_cache.generation() == moved + 1


def test_an_agent_never_gets_another_agents_counts(email_inbox):
    support = TeamFactory(name="Support")
    ana = AgentFactory(username="ana-scoped", role="agent")
    ben = AgentFactory(username="ben-scoped", role="agent")
    support.members.add(ana)
    TicketFactory(team=support, status="open", assignee=ana)
    TicketFactory(team=support, status="open")
    TicketFactory(status="open")  # nobody's team: only supervisors see it
    boss = AgentFactory(username="boss")  # a supervisor
    clients = {who.username: _desk(who) for who in (ana, ben, boss)}  # (a sign-in is a write)
    pages = {name: client.get("/desk/") for name, client in clients.items()}
    assert pages["ana-scoped"].context["counts"]["open"] == 2
    assert pages["ana-scoped"].context["counts"]["mine"] == 1
    assert pages["ben-scoped"].context["counts"]["open"] == 0
    assert pages["boss"].context["counts"]["open"] == 3
    assert pages["boss"].context["counts"]["mine"] == 0
    # Again, from the cache now: each their own.
    for who, expected in (("ana-scoped", (2, 1)), ("ben-scoped", (0, 0)), ("boss", (3, 0))):
        with CaptureQueriesContext(connection) as captured:
            counts = clients[who].get("/desk/").context["counts"]
        assert _count_queries(captured) == []
        assert (counts["open"], counts["mine"]) == expected, who
    # Ben joins the team: a scope change is a write like any other.
    support.members.add(ben)
    assert clients["ben-scoped"].get("/desk/").context["counts"]["open"] == 2


def test_saved_views_are_kept_with_their_counts_and_follow_changes(desk, agent, email_inbox):
    ingest(email_inbound(email_inbox, address="a@example.com"))
    desk.get("/desk/")
    view = SavedView.objects.create(owner=agent, name="Texts", filters={"view": "open", "channel": "sms"})
    page = desk.get("/desk/")
    assert page.context["saved_counts"] == {view.pk: 0} and "Texts" in page.content.decode()
    with CaptureQueriesContext(connection) as captured:
        desk.get("/desk/")
    assert not [q for q in captured.captured_queries if '"tickets_savedview"' in q["sql"]], "kept"
    SavedView.objects.filter(pk=view.pk).update(filters={"view": "open", "channel": "email"}, name="Mail")
    page = desk.get("/desk/")
    assert page.context["saved_counts"] == {view.pk: 1} and "<span>Mail</span>" in page.content.decode()
    other = AgentFactory(username="other")
    SavedView.objects.create(owner=other, name="Shared one", filters={"view": "solved"}, shared=True)
    SavedView.objects.create(owner=other, name="Private one", filters={"view": "solved"})
    page = desk.get("/desk/").content.decode()
    assert "Shared one" in page and "Private one" not in page


def test_ttl_zero_turns_the_cache_off(desk, agent, email_inbox, settings):
    settings.CXDESK_INBOX_COUNTS_TTL = 0
    SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})
    ingest(email_inbound(email_inbox, address="a@example.com"))
    desk.get("/desk/")
    with CaptureQueriesContext(connection) as captured:
        desk.get("/desk/")
    assert len(_count_queries(captured)) == 2


def test_inside_a_transaction_the_cache_is_bypassed(agent, email_inbox):
    ingest(email_inbound(email_inbox, address="a@example.com"))
    inbox_cache.sidebar(agent=agent)  # cached: open = 1
    with transaction.atomic():
        Ticket.objects.update(status=Ticket.Status.SOLVED)
        counts = inbox_cache.sidebar(agent=agent).counts
        assert counts["open"] == 0, "its own uncommitted write is seen (and not stored for others)"
        transaction.set_rollback(True)
    assert inbox_cache.sidebar(agent=agent).counts["open"] == 1


@pytest.mark.parametrize(
    ("sql", "watched"),
    [
        ('UPDATE "tickets_ticket" SET "status" = %s', True),
        ('INSERT INTO "tickets_message" ("ticket_id") VALUES (%s)', True),
        ('DELETE FROM "tickets_team_members" WHERE "team_id" = %s', True),
        ('INSERT INTO "tickets_ticketevent" ("ticket_id") VALUES (%s)', False),
        ('SELECT * FROM "tickets_ticket"', False),
        ('INSERT INTO "tickets_notification" ("ticket_id") VALUES (%s)', False),
        ('TRUNCATE "audit_entry", "tickets_ticket";', True),
        ('UPDATE "auth_user" SET "is_active" = %s', True),
        ('INSERT INTO "auth_user_groups" ("user_id", "group_id") VALUES (%s, %s)', False),
        ('UPDATE "tickets_savedview" SET "name" = %s', True),
        # What a statement reads is not what it writes: an event updated for some tickets.
        (
            'UPDATE "tickets_ticketevent" SET "data" = %s WHERE "ticket_id" IN (SELECT U0."id" FROM "tickets_ticket" U0)',
            False,
        ),
    ],
)
def test_which_writes_move_the_generation(sql, watched):
    assert inbox_cache.writes_watched_table(sql) is watched


def test_counts_match_the_uncached_selectors(agent, email_inbox):
    for i in range(4):
        ingest(email_inbound(email_inbox, address=f"c{i}@example.com"))
    Ticket.objects.filter(pk__in=Ticket.objects.order_by("id").values("pk")[:1]).update(assignee=agent)
    views = [SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})]
    for _ in range(2):  # counted, then cached
        side = inbox_cache.sidebar(agent=agent)
        assert [v.pk for v in side.saved_views] == [v.pk for v in views]
        assert side.counts == selectors.inbox_counts(agent=agent)
        assert side.saved_counts == selectors.saved_view_counts(agent=agent, views=views)
        assert all(isinstance(c, selectors.CappedCount) for c in (*side.counts.values(), *side.saved_counts.values()))


def test_a_failing_cache_never_breaks_a_write_or_a_page(desk, email_inbox, monkeypatch):
    ticket = TicketFactory(status="open")

    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    for name in ("incr", "set", "get", "get_many", "add"):
        monkeypatch.setattr(inbox_cache.cache, name, down)
    Ticket.objects.filter(pk=ticket.pk).update(priority="urgent")  # autocommit: bumps now
    with transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(priority="high")  # bumps on commit
    transaction.set_autocommit(False)
    try:
        Ticket.objects.filter(pk=ticket.pk).update(priority="low")  # no commit hooks here
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    page = desk.get("/desk/")
    assert page.status_code == 200 and page.context["counts"]["open"] == 1, "counted without the cache"


def test_the_choices_are_kept_until_a_write_moves_the_generation(desk, agent, email_inbox):
    def choice_queries(captured):
        tables = (
            'FROM "channels_app_inbox" ORDER',
            'FROM "tickets_team" ORDER',
            '"auth_user"."first_name" AS "first_name"',
        )
        return [q["sql"] for q in captured.captured_queries if any(t in q["sql"] for t in tables)]

    with CaptureQueriesContext(connection) as first:
        desk.get("/desk/")
    assert len(choice_queries(first)) == 3
    with CaptureQueriesContext(connection) as second:
        page = desk.get("/desk/").content.decode()
    assert choice_queries(second) == []
    assert "Zoe Newcomer" not in page
    zoe = AgentFactory(username="zoe", first_name="Zoe", last_name="Newcomer")
    team = TeamFactory(name="Billing")
    page = desk.get("/desk/").content.decode()
    assert "Zoe Newcomer" in page and f'<option value="{team.pk}">Billing</option>' in page
    zoe.is_active = False
    zoe.save()
    email_inbox.name = "Mail (renamed)"
    email_inbox.save()
    page = desk.get("/desk/").content.decode()
    assert "Zoe Newcomer" not in page and "Mail (renamed)</option>" in page


def test_a_process_local_cache_beside_workers_is_not_used(desk, email_inbox, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.CELERY_TASK_ALWAYS_EAGER = False  # workers elsewhere: their writes would not bump here
    ingest(email_inbound(email_inbox, address="a@example.com"))
    desk.get("/desk/")
    with CaptureQueriesContext(connection) as captured:
        desk.get("/desk/")
    assert len(_count_queries(captured)) == 1
    settings.CELERY_TASK_ALWAYS_EAGER = True  # `make run`: one process sees every write
    desk.get("/desk/")
    with CaptureQueriesContext(connection) as captured:
        desk.get("/desk/")
    assert _count_queries(captured) == []
