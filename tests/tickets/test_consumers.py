"""The desk websocket with the in-memory channel layer: who may connect, the out-of-band
HTML it sends (rendered from the page's own partials), presence, collisions, inbox rows
and counts, notifications, and closing sockets on sign-out or lost access."""

import asyncio
import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.template.loader import render_to_string

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound
from tests.sockets import db, unbatched
from tests.sockets import desk_socket as communicator
from tests.sockets import frame_until as until
from tests.tickets.factories import AgentFactory
from tickets import consumers, services
from tickets.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _layers(in_memory_layers):
    pass


def test_anonymous_and_non_staff_are_refused():
    customer = AgentFactory(username="cust", is_staff=False)
    inactive = AgentFactory(username="gone", is_active=False)

    async def scenario():
        for user in (AnonymousUser(), customer, inactive):
            comm = communicator(user)
            connected, code = await comm.connect()
            assert not connected
            assert code == 4403

    asyncio.run(scenario())


def test_ticket_live_timeline_presence_collision_and_status(email_inbox):
    ana = AgentFactory(username="ana2", first_name="Ana")
    ben = AgentFactory(username="ben2", first_name="Ben")
    ticket = ingest(email_inbound(email_inbox, subject="Help")).ticket

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0]
        assert (await b.connect())[0]
        await a.send_json_to({"subscribe_ticket": ticket.pk})
        alone = await until(a, lambda f: f["event"] == "presence")
        assert 'id="presence"' in alone["html"] and "is viewing" not in alone["html"]
        await b.send_json_to({"subscribe_ticket": ticket.pk})
        await until(a, lambda f: f["event"] == "presence" and "Ben is viewing" in f["html"])
        # Ben sees Ana, never himself
        own = await until(b, lambda f: f["event"] == "presence" and "Ana is viewing" in f["html"])
        assert "Ben is" not in own["html"]
        await b.send_json_to({"typing": ticket.pk})
        await until(a, lambda f: f["event"] == "presence" and "Ben is replying" in f["html"])

        # a new inbound message: the same partial the page renders, appended out of band
        new = await db(lambda: ingest(email_inbound(email_inbox, subject="Re: Help", text="Any news at all?")))
        assert new.ticket.pk == ticket.pk
        frame = await until(a, lambda f: f["event"] == "message.created")
        message = await db(lambda: Message.objects.select_related("author", "identity").get(pk=new.message.pk))
        page_item = await db(lambda: render_to_string("tickets/_timeline.html#message", {"m": message}))
        assert frame["html"] == f'<ol hx-swap-oob="beforeend:#timeline-items">{page_item}</ol>'
        assert "Any news at all?" in frame["html"]

        # Ana is typing when Ben's reply goes out: she is warned; Ben is not
        await a.send_json_to({"typing": ticket.pk})
        sent = await db(lambda: services.reply(ticket=ticket, author=ben, body="Courier says Monday."))
        warned = await until(a, lambda f: f["event"] == "message.created" and f["message_id"] == sent.pk)
        assert "Courier says Monday." in warned["html"]
        assert "Ben replied while you were typing" in warned["html"]
        assert 'hx-swap-oob="beforeend:#notices"' in warned["html"]
        own = await until(b, lambda f: f["event"] == "message.created" and f["message_id"] == sent.pk)
        assert "while you were typing" not in own["html"]
        # the send (Celery eager, email backend) updates the delivery status in place
        status = await until(a, lambda f: f["event"] == "message.status" and f["message_id"] == sent.pk)
        assert f'hx-swap-oob="true" id="status-{sent.pk}"' in status["html"]
        assert "Sent" in status["html"]

        # Ben leaves: Ana's presence line empties
        await b.disconnect()
        await until(a, lambda f: f["event"] == "presence" and "Ben" not in f["html"])
        await a.disconnect()

    asyncio.run(scenario())


def test_notes_and_events_reach_only_the_desk_and_render_their_partials(email_inbox):
    ana = AgentFactory(username="ana3", first_name="Ana")
    ticket = ingest(email_inbound(email_inbox)).ticket

    async def scenario():
        a = communicator(ana)
        assert (await a.connect())[0]
        await a.send_json_to({"subscribe_ticket": ticket.pk})
        await until(a, lambda f: f["event"] == "presence")
        note = await db(lambda: services.note_add(ticket=ticket, author=ana, body="Private: VIP"))
        frame = await until(a, lambda f: f["event"] == "message.created" and f["message_id"] == note.pk)
        assert "Internal note" in frame["html"] and "Private: VIP" in frame["html"]
        await db(lambda: services.ticket_update(ticket=ticket, actor=ana, priority="urgent"))
        frames = {}
        while not {"ticket.event", "ticket.updated"} <= frames.keys():
            frame = await until(a, lambda f: f["event"] in ("ticket.event", "ticket.updated"))
            frames.setdefault(frame["event"], frame)
        assert 'id="event-' in frames["ticket.event"]["html"] and "Priority changed" in frames["ticket.event"]["html"]
        header = frames["ticket.updated"]["html"]
        assert header.startswith('<header id="ticket-header" hx-swap-oob="true">') and "Urgent" in header
        await a.disconnect()

    asyncio.run(scenario())
    from tests.sockets import sent_events

    groups = {e["group"] for e in sent_events() if e.get("message_id") and e["event"] == "message.created"}
    assert groups == {f"ticket.{ticket.pk}"}, "a note is announced to the desk's ticket group only"


def test_inbox_rows_move_and_counts_update(email_inbox, sms_inbox):
    ana = AgentFactory(username="ana4", first_name="Ana")
    older = ingest(email_inbound(email_inbox, address="old@example.com", subject="Older")).ticket

    async def scenario():
        a = communicator(ana)
        assert (await a.connect())[0]
        await a.send_json_to({"inbox": {"view": "open", "sort": "activity"}})
        await until(a, lambda f: f["event"] == "inbox.following")
        fresh = await db(lambda: ingest(email_inbound(email_inbox, address="new@example.com", subject="Brand new")))
        frame = await until(a, lambda f: f["event"] == "ticket.activity" and f["ticket_id"] == fresh.ticket.pk)
        html = frame["html"]
        assert f'<div id="row-{fresh.ticket.pk}" hx-swap-oob="delete">' in html
        assert 'hx-swap-oob="afterbegin:#inbox-rows"' in html and "Brand new" in html
        assert 'id="view-counts" hx-swap-oob="true"' in html
        assert re.search(r'data-view="open">.*?All open <span class="count">2</span>', html)
        # a view that no longer contains the ticket removes its row
        await a.send_json_to({"inbox": {"view": "open", "channel": "sms"}})
        await db(lambda: ingest(email_inbound(email_inbox, address="old@example.com", subject="Re: Older")))
        frame = await until(a, lambda f: f["event"] == "ticket.activity" and f["ticket_id"] == older.pk)
        assert f'<div id="row-{older.pk}" hx-swap-oob="delete"></div>' in frame["html"]
        assert "afterbegin" not in frame["html"]
        # sorted by waiting time: the row is updated where it is
        await a.send_json_to({"inbox": {"view": "open", "sort": "waiting"}})
        await db(lambda: ingest(email_inbound(email_inbox, address="old@example.com", subject="Re: Older")))
        frame = await until(a, lambda f: f["event"] == "ticket.activity" and f["ticket_id"] == older.pk)
        assert f'hx-swap-oob="true" id="row-{older.pk}"' in frame["html"]
        await a.disconnect()

    asyncio.run(scenario())


def test_a_burst_of_activity_is_one_frame_per_ticket_and_counts_once(email_inbox, monkeypatch):
    from django.db import transaction

    # A commit's events come from more than one place (the commit, then the routing task's
    # outbox): all within the coalescing window here, however slow the machine.
    monkeypatch.setattr(consumers, "INBOX_SOON", 0.5)
    ana = AgentFactory(username="ana6", first_name="Ana")

    def burst():
        with transaction.atomic():
            first = ingest(email_inbound(email_inbox, address="a@example.com", subject="A")).ticket
            ingest(email_inbound(email_inbox, address="a@example.com", subject="Re: A", in_reply_to="<none@x>"))
            second = ingest(email_inbound(email_inbox, address="b@example.com", subject="B")).ticket
        return first, second

    async def scenario():
        a = communicator(ana)
        assert (await a.connect())[0]
        await a.send_json_to({"inbox": {"view": "open", "sort": "activity"}})
        await until(a, lambda f: f["event"] == "inbox.following")
        first, second = await db(burst)
        frames = []
        while not await a.receive_nothing(timeout=1.0):  # (a timed-out receive would stop the consumer)
            frames.extend(unbatched(await a.receive_json_from()))
        inbox_frames = [f for f in frames if f.get("ticket_id") in (first.pk, second.pk) and "html" in f]
        assert sorted(f["ticket_id"] for f in inbox_frames) == sorted({first.pk, second.pk}), frames
        assert sum('id="view-counts"' in f["html"] for f in inbox_frames) == 1, "the counts are rendered once"
        await a.disconnect()

    asyncio.run(scenario())


def test_assignment_and_mention_notify_the_agent(email_inbox):
    ana = AgentFactory(username="ana5", first_name="Ana")
    ben = AgentFactory(username="ben5", first_name="Ben")
    ticket = ingest(email_inbound(email_inbox, subject="Refund")).ticket

    async def scenario():
        a = communicator(ana)
        assert (await a.connect())[0]
        await db(lambda: services.ticket_update(ticket=ticket, actor=ben, assignee=ana))
        frame = await until(a, lambda f: f["event"] == "notification.created" and f["kind"] == "assigned")
        assert "Assigned to you" in frame["html"] and "/desk/notifications/" in frame["html"]
        assert 'id="bell-count" data-count="1"' in frame["html"], "the bell's count moves"
        await db(lambda: services.note_add(ticket=ticket, author=ben, body="@ana5 can you check the refund?"))
        frame = await until(a, lambda f: f["event"] == "notification.created" and f["kind"] == "mention")
        assert "Mentioned in a note" in frame["html"] and "can you check the refund" in frame["html"]
        assert 'data-count="2"' in frame["html"]
        await a.disconnect()

    asyncio.run(scenario())


def test_sign_out_and_lost_access_close_sockets(email_inbox):
    from django.test import Client

    ana = AgentFactory(username="ana6", first_name="Ana")
    ben = AgentFactory(username="ben6", first_name="Ben")

    async def closed(comm) -> int:
        while True:
            out = await comm.receive_output(timeout=2)
            if out["type"] == "websocket.close":
                return out["code"]

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0]
        assert (await b.connect())[0]

        def sign_out():
            client = Client()
            client.force_login(ben)
            assert client.post("/accounts/logout/").status_code in (200, 302)

        await db(sign_out)
        assert await closed(b) == 4401
        # Ana loses staff while connected: her next message closes the socket
        await db(lambda: type(ana).objects.filter(pk=ana.pk).update(is_staff=False))
        await a.send_json_to({"ping": True})
        assert await closed(a) == 4403

    asyncio.run(scenario())


def test_live_fragments_render_in_each_agents_language(email_inbox):
    from accounts.models import StaffProfile

    ana = AgentFactory(username="ana-ru", first_name="Ana")
    StaffProfile.objects.create(user=ana, language="ru")
    ben = AgentFactory(username="ben-en", first_name="Ben")
    ticket = ingest(email_inbound(email_inbox)).ticket

    async def scenario():
        sockets = {"ru": communicator(ana), "en": communicator(ben)}
        for comm in sockets.values():
            assert (await comm.connect())[0]
            await comm.send_json_to({"subscribe_ticket": ticket.pk})
            await until(comm, lambda f: f["event"] == "presence")
        await db(lambda: services.note_add(ticket=ticket, author=ana, body="VIP"))
        await db(lambda: services.ticket_update(ticket=ticket, actor=ana, priority="urgent"))
        html = {}
        for language, comm in sockets.items():
            note = await until(comm, lambda f: f["event"] == "message.created")
            event = await until(comm, lambda f: f["event"] == "ticket.event")
            html[language] = note["html"] + event["html"]
            await comm.disconnect()
        return html

    html = asyncio.run(scenario())
    assert "Внутренняя заметка" in html["ru"] and "Приоритет изменён" in html["ru"]
    assert "Internal note" in html["en"] and "Priority changed" in html["en"]
    assert "Internal note" not in html["ru"]
