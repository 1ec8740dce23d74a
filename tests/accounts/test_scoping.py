"""Team scoping: an agent sees the tickets of their teams' inboxes (and of their teams, and
those assigned to them); supervisors and admins see all. Everything else is a 404 on every
path — desk pages, search, the API (tickets, messages, events, customers, attachments,
metrics), the customer-360 — and never shows in lists or on the websocket."""

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, Group
from django.core.cache import cache
from django.db.models.signals import m2m_changed
from django.test import Client
from rest_framework.test import APIClient

from accounts import roles
from accounts.services import role_set
from accounts.signals import role_changed
from channels_app.services import ingest
from customers.selectors import customers_visible_to
from tests.channels_app.factories import InboxFactory, email_inbound
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets import services
from tickets.attachments import attachment_store
from tickets.consumers import DeskConsumer
from tickets.models import Ticket
from tickets.selectors import tickets_visible_to


def _world():
    team_a, team_b = TeamFactory(name="Team A"), TeamFactory(name="Team B")
    inbox_a = InboxFactory(kind="email", name="A", config={"address": "a@desk.test"}, default_team=team_a)
    inbox_b = InboxFactory(kind="email", name="B", config={"address": "b@desk.test"}, default_team=team_b)
    ana = AgentFactory(username="ana", role="agent")
    team_a.members.add(ana)
    boss = AgentFactory(username="boss", role="supervisor")
    ta = ingest(email_inbound(inbox_a, address="alice@example.com", subject="Alpha visible", text="alphabody")).ticket
    tb = ingest(email_inbound(inbox_b, address="bob@example.com", subject="Bravo hidden", text="bravobody")).ticket
    Ticket.objects.filter(pk__in=[ta.pk, tb.pk]).update(assignee=None)
    Ticket.objects.filter(pk=tb.pk).update(team=team_b)
    att = attachment_store(message=tb.messages.first(), filename="secret.txt", content=b"secret")
    return {"ana": ana, "boss": boss, "ta": ta, "tb": tb, "att": att, "team_a": team_a, "inbox_b": inbox_b}


@pytest.fixture
def world(db):
    return _world()


def test_roles_and_the_selector(world):
    ana, boss, ta, tb = world["ana"], world["boss"], world["ta"], world["tb"]
    admin = AgentFactory(username="root", is_superuser=True)
    assert roles.user_role(ana) == "agent" and not roles.is_supervisor(ana)
    assert roles.user_role(boss) == "supervisor" and roles.is_supervisor(boss) and not roles.is_admin(boss)
    assert roles.is_admin(admin) and roles.is_supervisor(admin)
    assert roles.user_role(AgentFactory(username="cust", is_staff=False)) is None
    assert roles.user_role(AnonymousUser()) is None
    assert set(Group.objects.filter(name__in=roles.ROLES).values_list("name", flat=True)) == set(roles.ROLES)
    assert list(tickets_visible_to(agent=ana)) == [ta]
    assert set(tickets_visible_to(agent=boss)) == {ta, tb}
    assert set(customers_visible_to(agent=ana)) == {ta.customer}
    # assigned to ana, or routed to her team: visible although in inbox B
    Ticket.objects.filter(pk=tb.pk).update(assignee=ana)
    assert tb in tickets_visible_to(agent=ana)
    Ticket.objects.filter(pk=tb.pk).update(assignee=None, team=world["team_a"])
    assert tb in tickets_visible_to(agent=ana)


def test_role_changes_are_visible_to_listeners(world, django_capture_on_commit_callbacks):
    ana, boss = world["ana"], world["boss"]
    seen, m2m = [], []

    def on_role(sender, user, old, new, by, **kw):
        seen.append((user.username, old, new, by.username))

    def on_m2m(sender, instance, action, pk_set, **kw):
        if action in ("post_add", "post_remove"):
            m2m.append((instance.username, action))

    role_changed.connect(on_role)
    m2m_changed.connect(on_m2m, sender=ana.groups.through)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            role_set(user=ana, role="supervisor", by=boss)
    finally:
        role_changed.disconnect(on_role)
        m2m_changed.disconnect(on_m2m, sender=ana.groups.through)
    assert seen == [("ana", "agent", "supervisor", "boss")]
    assert ("ana", "post_add") in m2m and ("ana", "post_remove") in m2m
    assert roles.is_supervisor(ana)


def test_a_scoped_agent_gets_404_everywhere(world, settings):
    ana, boss, ta, tb, att = world["ana"], world["boss"], world["ta"], world["tb"], world["att"]
    desk = Client()
    desk.force_login(ana)
    api = APIClient()
    api.force_login(ana)
    cb = tb.customer
    not_found = {
        "desk ticket": desk.get(f"/desk/tickets/{tb.pk}/"),
        "desk timeline": desk.get(f"/desk/tickets/{tb.pk}/timeline/"),
        "desk reply": desk.post(f"/desk/tickets/{tb.pk}/reply/", {"body": "x", "channel": "email"}),
        "desk update": desk.post(f"/desk/tickets/{tb.pk}/update/", {"status": "solved"}),
        "desk merge": desk.post(f"/desk/tickets/{tb.pk}/merge/", {"target": str(ta.pk)}),
        "desk split": desk.post(f"/desk/tickets/{tb.pk}/split/", {"message": [tb.messages.first().pk]}),
        "desk customer": desk.get(f"/desk/customers/{cb.pk}/"),
        "api ticket": api.get(f"/api/v1/tickets/{tb.pk}/"),
        "api ticket patch": api.patch(f"/api/v1/tickets/{tb.pk}/", {"status": "solved"}, format="json"),
        "api messages": api.get(f"/api/v1/tickets/{tb.pk}/messages/"),
        "api reply": api.post(f"/api/v1/tickets/{tb.pk}/messages/", {"body": "x", "internal": True}, format="json"),
        "api events": api.get(f"/api/v1/tickets/{tb.pk}/events/"),
        "api customer": api.get(f"/api/v1/customers/{cb.pk}/"),
        "api customer timeline": api.get(f"/api/v1/customers/{cb.pk}/timeline/"),
        "api attachment": api.get(f"/api/v1/attachments/{att.pk}/"),
    }
    for path, response in not_found.items():
        assert response.status_code == 404, (path, response.status_code)
    tb.refresh_from_db()
    assert tb.status != "solved" and tb.messages.count() == 1, "nothing was written"
    # the same paths work for the visible ticket
    assert desk.get(f"/desk/tickets/{ta.pk}/").status_code == 200
    assert api.get(f"/api/v1/tickets/{ta.pk}/messages/").status_code == 200
    assert desk.get(f"/desk/customers/{ta.customer.pk}/").status_code == 200
    # lists and search
    for view in ("open", "unassigned", "all"):
        page = desk.get(f"/desk/?view={view}").content
        assert b"Bravo hidden" not in page
    assert b"Alpha visible" in desk.get("/desk/?view=open").content
    assert b"Bravo hidden" not in desk.get("/desk/?q=bravobody").content
    assert b"Bravo hidden" not in desk.get("/desk/?q=bob@example.com").content
    listing = api.get("/api/v1/tickets/").json()
    ids = [t["id"] for t in listing["results"]]
    assert ids == [ta.pk]
    customers = api.get("/api/v1/customers/").json()
    cids = [c["id"] for c in customers.get("results", customers)]
    assert cb.pk not in cids and ta.customer.pk in cids
    assert api.get("/api/v1/customers/", {"email": "bob@example.com"}).json().get("results", []) == []
    metrics = api.get("/api/v1/metrics/", {"by": "channel"}).json()
    assert sum(row["tickets"] for row in metrics["rows"]) == 1
    # the supervisor sees both
    sup = APIClient()
    sup.force_login(boss)
    assert sup.get(f"/api/v1/tickets/{tb.pk}/").status_code == 200
    assert sum(row["tickets"] for row in sup.get("/api/v1/metrics/").json()["rows"]) == 2


@pytest.mark.django_db(transaction=True)
def test_websocket_never_shows_another_teams_ticket(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    w = _world()
    ana, ta, tb = w["ana"], w["ta"], w["tb"]

    async def scenario():
        comm = WebsocketCommunicator(DeskConsumer.as_asgi(), "/ws/desk/")
        comm.scope["user"] = ana
        assert (await comm.connect())[0]
        await comm.send_json_to({"subscribe_ticket": tb.pk})
        await comm.send_json_to({"subscribe_ticket": ta.pk})
        await comm.send_json_to({"inbox": {"view": "open"}})
        await asyncio.sleep(0.2)
        frames = []
        from channels.db import database_sync_to_async

        def activity():
            services.note_add(ticket=Ticket.objects.get(pk=tb.pk), author=w["boss"], body="bravo-note")
            services.note_add(ticket=Ticket.objects.get(pk=ta.pk), author=w["boss"], body="alpha-note")

        await database_sync_to_async(activity)()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline:
            try:
                frames.append(await comm.receive_json_from(timeout=max(0.05, deadline - loop.time())))
            except TimeoutError:  # the test communicator stops the consumer on a timeout
                break
        return frames

    frames = asyncio.run(scenario())
    text = " ".join(str(f) for f in frames)
    assert "alpha-note" in text or f"row-{ta.pk}" in text, f"the visible ticket's events arrive: {frames}"
    assert "bravo-note" not in text and "Bravo hidden" not in text and f"row-{tb.pk}" not in text, frames
    assert all(f.get("ticket_id") != tb.pk for f in frames), frames


def test_scoped_inbox_query_count_is_constant(world, django_assert_max_num_queries):
    desk = Client()
    desk.force_login(world["ana"])
    with django_assert_max_num_queries(15) as few:
        assert desk.get("/desk/?view=open").status_code == 200
    for i in range(15):
        ingest(email_inbound(world["inbox_b"], address=f"b{i}@example.com", subject=f"B {i}"))
        ingest(email_inbound(InboxFactory(name="A"), address=f"a{i}@example.com", subject=f"A {i}"))
    with django_assert_max_num_queries(15) as many:
        page = desk.get("/desk/?view=open")
    assert len(many.captured_queries) == len(few.captured_queries)
    assert b"A 14" in page.content and b"B 14" not in page.content


def test_the_customer_figures_count_only_what_the_agent_may_see(world):
    """Alice also wrote to team B's inbox: Ana (team A) is not told that ticket exists, not
    even as a number in the 360 figures, on the desk or through the API."""
    from rest_framework.test import APIClient

    from customers.selectors import customer_stats

    ana, boss, ta = world["ana"], world["boss"], world["ta"]
    other = ingest(
        email_inbound(world["inbox_b"], address="alice@example.com", subject="Second, for B", text="b")
    ).ticket
    Ticket.objects.filter(pk=other.pk).update(team=world["inbox_b"].default_team, assignee=None)
    customer = ta.customer
    assert customer_stats(customer=customer, agent=boss).tickets == 2
    mine = customer_stats(customer=customer, agent=ana)
    assert (mine.tickets, mine.open_tickets) == (1, 1)
    api = APIClient()
    api.force_authenticate(ana)
    body = api.get(f"/api/v1/customers/{customer.pk}/").json()
    assert body["stats"]["tickets"] == 1 and [t["id"] for t in body["tickets"]] == [ta.pk]
