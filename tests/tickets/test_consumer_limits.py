"""Desk websocket limits: frame size, rate, coalesced typing, malformed frames isolated,
sockets closed when the user's access changes (pushed, and checked on receive)."""

import asyncio
import json

import pytest

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound
from tests.sockets import db
from tests.sockets import desk_socket as communicator
from tests.tickets.factories import AgentFactory
from tickets import consumers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _layers(in_memory_layers):
    pass


async def drain(comm, seconds=0.3) -> list[dict]:
    """Every frame until none arrives for `seconds` (without cancelling the app on timeout)."""
    frames = []
    while True:
        if await comm.receive_nothing(timeout=seconds, interval=0.02):
            return frames
        out = await comm.receive_output()
        if out["type"] == "websocket.close":
            frames.append({"closed": out["code"]})
            return frames
        frames.append(json.loads(out["text"]))


async def closed(comm, timeout=2.0) -> int:
    while True:
        out = await comm.receive_output(timeout=timeout)
        if out["type"] == "websocket.close":
            return out["code"]


def test_an_oversized_frame_closes_only_that_socket(email_inbox):
    ana, ben = AgentFactory(username="big-a"), AgentFactory(username="big-b")

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0] and (await b.connect())[0]
        await a.send_to(text_data=json.dumps({"ping": True, "pad": "x" * (1024 * 1024)}))
        assert await closed(a) == 1009
        await b.send_json_to({"ping": True})
        assert not any("closed" in f for f in await drain(b))
        await b.disconnect()

    asyncio.run(scenario())


def test_malformed_frames_get_an_error_and_never_hurt_other_sockets(email_inbox):
    ana, ben = AgentFactory(username="mal-a"), AgentFactory(username="mal-b")
    ticket = ingest(email_inbound(email_inbox, subject="Malformed")).ticket

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0] and (await b.connect())[0]
        await b.send_json_to({"subscribe_ticket": ticket.pk})
        await drain(b)
        bad = [
            "not json{",
            "[]",
            "5",
            '{"subscribe_ticket": "1"}',
            '{"typing": {"x": 1}}',
            '{"inbox": {"view": 5, "q": ["x"], "status": {"a": 1}}}',
            '{"inbox": {"q": "a\\u0000b"}}',
            '{"subscribe_ticket": 99999999999999999999999}',
            "[" * 5000 + "]" * 5000,
        ]
        for frame in bad:
            await a.send_to(text_data=frame)
        await a.send_to(bytes_data=b"\x00\x01")
        frames = await drain(a)
        assert not any("closed" in f for f in frames), frames
        assert sum(1 for f in frames if "error" in f) >= 6
        # Ana's socket still works, and so does Ben's: a new message reaches him
        await a.send_json_to({"ping": True})
        await db(lambda: ingest(email_inbound(email_inbox, subject="Re: Malformed", text="still here")))
        got = await drain(b, 0.5)
        assert any(f.get("event") == "message.created" for f in got)
        await a.disconnect()
        await b.disconnect()

    asyncio.run(scenario())


def test_300_typing_frames_are_not_300_broadcasts(email_inbox, monkeypatch):
    ana, ben = AgentFactory(username="typ-a", first_name="Ana"), AgentFactory(username="typ-b")
    ticket = ingest(email_inbound(email_inbox, subject="Typing")).ticket
    monkeypatch.setattr(consumers, "RATE_FRAMES", 1000)  # measure coalescing, not the rate limit

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0] and (await b.connect())[0]
        await a.send_json_to({"subscribe_ticket": ticket.pk})
        await b.send_json_to({"subscribe_ticket": ticket.pk})
        await drain(a)
        await drain(b)
        for _ in range(300):
            await a.send_json_to({"typing": ticket.pk})
        frames = await drain(b, 0.5)
        presence = [f for f in frames if f.get("event") == "presence"]
        assert 1 <= len(presence) <= 2, len(presence)
        assert "Ana is replying" in presence[0]["html"]
        await a.disconnect()
        await b.disconnect()

    asyncio.run(scenario())


def test_a_flood_is_rate_limited_then_closed(email_inbox):
    ana = AgentFactory(username="flood-a")

    async def scenario():
        a = communicator(ana)
        assert (await a.connect())[0]
        for _ in range(consumers.RATE_FRAMES + consumers.FLOOD_FRAMES + 2):
            await a.send_json_to({"x": 1})
        frames = await drain(a, 2.0)
        assert {"error": "too many messages; slow down"} in frames
        assert frames[-1] == {"closed": 1008}

    asyncio.run(scenario())


def test_access_changes_close_open_sockets_without_waiting_for_a_frame(email_inbox):
    changes = {
        "deactivate": lambda u: setattr(u, "is_active", False),
        "unstaff": lambda u: setattr(u, "is_staff", False),
        "password": lambda u: u.set_password("a completely new one"),
    }
    users = {name: AgentFactory(username=f"acc-{name}") for name in changes}

    def apply(name):
        user = type(users[name]).objects.get(pk=users[name].pk)
        changes[name](user)
        user.save()

    async def scenario():
        for name in changes:
            comm = communicator(users[name])
            assert (await comm.connect())[0]
            await db(lambda name=name: apply(name))
            assert await closed(comm) == 4401, name

    asyncio.run(scenario())


def test_a_password_changed_without_signals_is_caught_on_the_next_frame_and_other_saves_keep_the_socket(email_inbox):
    from django.contrib.auth.hashers import make_password

    ana, ben = AgentFactory(username="hash-a"), AgentFactory(username="keep-b")

    def rename():
        user = type(ben).objects.get(pk=ben.pk)
        user.first_name = "Benedict"
        user.save()

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0] and (await b.connect())[0]
        await db(lambda: type(ana).objects.filter(pk=ana.pk).update(password=make_password("elsewhere")))
        await a.send_json_to({"ping": True})
        assert await closed(a) == 4401
        await db(rename)
        await b.send_json_to({"ping": True})
        assert not any("closed" in f for f in await drain(b))
        await b.disconnect()

    asyncio.run(scenario())
