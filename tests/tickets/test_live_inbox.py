"""The live inbox at scale (tickets/consumers.py, issue 12, ninth and tenth passes): the
process receives the "inbox" group once and hands each change to its sockets; a socket's
changed rows come in one frame; a change is read once for all the sockets (and again after a
later change); the view counts at most every COUNTS_EVERY with a trailing refresh; roles are
decided per event without a query per socket; no hop to the database thread per dispatched
message. The Python rules each socket decides with: test_live_rules.py."""

import asyncio
import re

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound
from tests.sockets import db, unbatched
from tests.sockets import desk_socket as communicator
from tests.sockets import frame_until as until
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets import consumers, selectors

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _layers(in_memory_layers):
    pass


async def _follow(comm) -> None:
    assert (await comm.connect())[0]
    await comm.send_json_to({"inbox": {"view": "open", "sort": "activity"}})
    await until(comm, lambda f: f["event"] == "inbox.following")


async def _messages(comm, quiet: float = 0.6) -> list[dict]:
    """Every websocket message until `quiet` seconds pass without one."""
    out = []
    while not await comm.receive_nothing(timeout=quiet):
        out.append(await comm.receive_json_from())
    return out


def test_the_process_is_one_member_of_the_inbox_group_for_all_its_sockets(email_inbox):
    ana, ben = AgentFactory(username="hub-ana"), AgentFactory(username="hub-ben")

    async def scenario():
        layer = get_channel_layer()
        a, b = communicator(ana), communicator(ben)
        await _follow(a)
        await _follow(b)
        assert len(layer.groups.get("inbox", {})) == 1, "one member, not one per socket"
        new = await db(lambda: ingest(email_inbound(email_inbox, address="hub@example.com", subject="Hub")))
        for comm in (a, b):
            frame = await until(comm, lambda f: f.get("ticket_id") == new.ticket.pk and f["event"] == "ticket.activity")
            assert "Hub" in frame["html"]
        await a.disconnect()
        again = await db(lambda: ingest(email_inbound(email_inbox, address="hub2@example.com", subject="Still")))
        frame = await until(b, lambda f: f.get("ticket_id") == again.ticket.pk)
        assert "Still" in frame["html"], "the others still follow"
        await b.disconnect()
        await asyncio.sleep(0.05)
        assert not layer.groups.get("inbox"), "the last socket gone, the process leaves the group"

    asyncio.run(scenario())


def test_a_sockets_changed_rows_come_in_one_frame_and_no_dispatch_hops_to_the_database_thread(email_inbox, monkeypatch):
    from django.db import transaction

    hops = []
    monkeypatch.setattr("channels.consumer.aclose_old_connections", lambda: hops.append(1) or asyncio.sleep(0))
    # A commit's events come from more than one place (the commit, then the routing task's
    # outbox): all within the coalescing window here, however slow the machine.
    monkeypatch.setattr(consumers, "INBOX_SOON", 0.5)
    ana = AgentFactory(username="rows-ana")

    def burst():
        with transaction.atomic():
            one = ingest(email_inbound(email_inbox, address="r1@example.com", subject="One")).ticket
            two = ingest(email_inbound(email_inbox, address="r2@example.com", subject="Two")).ticket
        return one, two

    async def scenario():
        a = communicator(ana)
        await _follow(a)
        one, two = await db(burst)
        batches = [m for m in await _messages(a, quiet=1.5) if m.get("event") == "inbox.rows"]
        assert len(batches) == 1, batches
        assert sorted(f["ticket_id"] for f in unbatched(batches[0])) == sorted([one.pk, two.pk])
        await a.disconnect()

    asyncio.run(scenario())
    assert hops == [], "channels' dispatch would hop to the database thread per message"


def test_counts_follow_at_most_every_counts_every_and_the_last_change_is_counted(email_inbox, monkeypatch):
    monkeypatch.setattr(consumers, "COUNTS_EVERY", 1.0)
    ana = AgentFactory(username="counts-ana")

    async def scenario():
        a = communicator(ana)
        await _follow(a)
        await db(lambda: ingest(email_inbound(email_inbox, address="c1@example.com", subject="C1")))
        first = await until(a, lambda f: f["event"] == "ticket.activity")
        assert 'id="view-counts"' in first["html"], "the first change is counted at once"
        await asyncio.sleep(0.2)
        await db(lambda: ingest(email_inbound(email_inbox, address="c2@example.com", subject="C2")))
        messages = await _messages(a, quiet=1.5)
        rows = [f for m in messages for f in unbatched(m) if f["event"] == "ticket.activity"]
        assert rows and all('id="view-counts"' not in f["html"] for f in rows), "not counted again so soon"
        counts = [m for m in messages if m["event"] == "inbox.counts"]
        assert len(counts) == 1 and re.search(
            r'data-view="open">.*?All open <span class="count">2</span>', counts[0]["html"]
        ), messages
        await a.disconnect()

    asyncio.run(scenario())


def test_a_role_taken_away_while_connected_counts_at_the_next_change(email_inbox):
    from django.contrib.auth.models import Group

    team = TeamFactory(name="Billing")
    email_inbox.default_team = team
    email_inbox.save()
    ana = AgentFactory(username="demoted")  # a supervisor: sees every ticket

    async def scenario():
        a = communicator(ana)
        await _follow(a)
        first = await db(lambda: ingest(email_inbound(email_inbox, address="d@example.com", subject="Billing q")))
        await until(a, lambda f: f.get("ticket_id") == first.ticket.pk and f["event"] == "ticket.activity")
        # Now an agent in no team: the Billing inbox's tickets are no longer hers to see.
        await db(lambda: ana.groups.set([Group.objects.get_or_create(name="agent")[0]]))
        await db(lambda: ingest(email_inbound(email_inbox, address="d@example.com", subject="Re: Billing q")))
        shown = [
            f for m in await _messages(a, quiet=1.5) for f in unbatched(m) if f.get("ticket_id") == first.ticket.pk
        ]
        assert shown == [], "not even that something happened"
        await a.disconnect()

    asyncio.run(scenario())


def test_several_rows_are_one_query_compiled_once(email_inbox):
    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (the ids as one array parameter)")
    agent = AgentFactory(username="rows-sup")
    tickets = [
        ingest(email_inbound(email_inbox, address=f"q{n}@example.com", subject=f"Q{n}")).ticket for n in range(4)
    ]
    selectors._row_statements.clear()
    filters = {"view": "open", "sort": "activity"}
    ids = [t.pk for t in tickets[:3]]
    with CaptureQueriesContext(connection) as ctx:
        rows = selectors.inbox_rows_by_id(agent=agent, ticket_ids=ids, filters=filters)
    assert len([q for q in ctx.captured_queries if "tickets_ticket" in q["sql"]]) == 1
    assert rows == {pk: selectors.inbox_row(agent=agent, ticket_id=pk, filters=filters) for pk in ids}
    compiled = []
    real = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        compiled.append(1)
        return real(self, *args, **kwargs)

    SQLCompiler.as_sql = counting
    try:
        others = selectors.inbox_rows_by_id(agent=agent, ticket_ids=[tickets[3].pk, 10**9], filters=filters)
    finally:
        SQLCompiler.as_sql = real
    assert list(others) == [tickets[3].pk] and compiled == [], "run again with other ids, not compiled again"


def test_two_sockets_following_at_once_make_one_member(email_inbox, monkeypatch):
    from channels.layers import InMemoryChannelLayer

    real = InMemoryChannelLayer.group_add

    async def over_the_network(self, group, channel):  # Redis answers later: the joins overlap
        await asyncio.sleep(0.05)
        await real(self, group, channel)

    monkeypatch.setattr(InMemoryChannelLayer, "group_add", over_the_network)
    ana, ben = AgentFactory(username="once-ana"), AgentFactory(username="once-ben")

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0] and (await b.connect())[0]
        for comm in (a, b):  # both frames in flight before either is answered
            await comm.send_json_to({"inbox": {"view": "open"}})
        for comm in (a, b):
            await until(comm, lambda f: f["event"] == "inbox.following")
        assert len(get_channel_layer().groups.get("inbox", {})) == 1
        await a.disconnect()
        await b.disconnect()

    asyncio.run(scenario())


def test_a_change_that_arrives_during_a_render_is_rendered_without_another_change(email_inbox, monkeypatch):
    import threading

    rendering, release = threading.Event(), threading.Event()
    real = consumers.DeskConsumer._render_inbox

    def slow_first(self, ticket_ids, count=True):
        if not release.is_set():
            rendering.set()
            release.wait(5)
        return real(self, ticket_ids, count)

    monkeypatch.setattr(consumers.DeskConsumer, "_render_inbox", slow_first)
    ana = AgentFactory(username="during-ana")

    async def scenario():
        loop = asyncio.get_running_loop()
        a = communicator(ana)
        await _follow(a)
        await db(lambda: ingest(email_inbound(email_inbox, address="x1@example.com", subject="First")))
        assert await loop.run_in_executor(None, rendering.wait, 5), "the first render started"
        second = await db(lambda: ingest(email_inbound(email_inbox, address="x2@example.com", subject="Second")))
        release.set()
        frame = await until(a, lambda f: f.get("ticket_id") == second.ticket.pk, timeout=4)
        assert "Second" in frame["html"]
        await a.disconnect()

    asyncio.run(scenario())


def test_a_change_is_read_once_for_all_the_sockets_and_each_agent_sees_what_their_scope_shows(email_inbox, monkeypatch):
    billing = TeamFactory(name="Read-once billing")
    email_inbox.default_team = billing
    email_inbox.save()
    sup = AgentFactory(username="once-sup")
    member = AgentFactory(username="once-member", role="agent")
    member.teams.set([billing])
    outsider = AgentFactory(username="once-outsider", role="agent")  # in no team
    reads = []
    real = selectors.inbox_live_rows
    monkeypatch.setattr(selectors, "inbox_live_rows", lambda ids: reads.append(sorted(ids)) or real(ids))

    async def scenario():
        comms = [communicator(user) for user in (sup, member, outsider)]
        for comm in comms:
            await _follow(comm)
        ticket = (await db(lambda: ingest(email_inbound(email_inbox, address="o@example.com", subject="Once")))).ticket
        for comm in comms[:2]:
            frame = await until(comm, lambda f: f.get("ticket_id") == ticket.pk and f["event"] == "ticket.activity")
            assert "Once" in frame["html"]
        shown = [f for m in await _messages(comms[2]) for f in unbatched(m) if f.get("ticket_id") == ticket.pk]
        assert shown == [], "another team's ticket: not even its id"
        for comm in comms:
            await comm.disconnect()
        return ticket

    ticket = asyncio.run(scenario())
    assert reads == [[ticket.pk]], "read once for the three sockets"


def test_live_rows_are_read_again_after_a_change_even_one_during_a_read(email_inbox, monkeypatch):
    from tickets.models import Ticket

    ticket = ingest(email_inbound(email_inbox, address="again@example.com", subject="Before")).ticket
    live = consumers.LiveRows()
    reads = []
    real = selectors.inbox_live_rows
    monkeypatch.setattr(selectors, "inbox_live_rows", lambda ids: reads.append(1) or real(ids))
    live.changed(ticket.pk)
    assert live.rows([ticket.pk])[ticket.pk].row.subject == "Before"
    assert live.rows([ticket.pk]).keys() == {ticket.pk} and len(reads) == 1, "no change since: not read again"
    Ticket.objects.filter(pk=ticket.pk).update(subject="After")
    live.changed(ticket.pk)
    assert live.rows([ticket.pk])[ticket.pk].row.subject == "After" and len(reads) == 2

    def changed_meanwhile(ids):  # a change published while the read is on its way
        rows = real(ids)
        Ticket.objects.filter(pk=ticket.pk).update(subject="Later")
        live.changed(ticket.pk)
        return rows

    monkeypatch.setattr(selectors, "inbox_live_rows", changed_meanwhile)
    Ticket.objects.filter(pk=ticket.pk).update(subject="During")
    live.changed(ticket.pk)
    assert live.rows([ticket.pk])[ticket.pk].row.subject == "During"
    monkeypatch.setattr(selectors, "inbox_live_rows", real)
    assert live.rows([ticket.pk])[ticket.pk].row.subject == "Later", "what was read before the change is not taken"


def test_inbox_renders_run_on_their_own_thread_not_the_event_loops_pool(email_inbox, monkeypatch):
    import threading

    threads = set()
    real = consumers.DeskConsumer._render_inbox

    def noting(self, ticket_ids, count=True):
        threads.add(threading.current_thread().name)
        return real(self, ticket_ids, count)

    monkeypatch.setattr(consumers.DeskConsumer, "_render_inbox", noting)
    ana, ben = AgentFactory(username="thread-ana"), AgentFactory(username="thread-ben")

    async def scenario():
        comms = [communicator(ana), communicator(ben)]
        for comm in comms:
            await _follow(comm)
        ticket = (await db(lambda: ingest(email_inbound(email_inbox, address="t@example.com", subject="T")))).ticket
        for comm in comms:
            await until(comm, lambda f: f.get("ticket_id") == ticket.pk and f["event"] == "ticket.activity")
            await comm.disconnect()

    asyncio.run(scenario())
    assert len(threads) == 1 and next(iter(threads)).startswith("inbox-render"), threads
