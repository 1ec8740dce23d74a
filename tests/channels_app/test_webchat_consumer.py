"""The widget's websocket (/ws/chat/) with the in-memory channel layer: Origin refused,
a visitor resumes with its signed token, a message is ingested once, an agent's reply
reaches the visitor, notes never do, typing both ways, limits and bad frames."""

import asyncio
import functools
import json

import pytest
from channels.testing import WebsocketCommunicator

from channels_app.consumers import WebchatConsumer
from channels_app.models import ChatVisitor
from tests.channels_app.factories import InboxFactory
from tests.sockets import db, frame_until
from tickets import services
from tickets.consumers import DeskConsumer
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db(transaction=True)
SHOP = "https://shop.example.com"


@pytest.fixture(autouse=True)
def _layers(in_memory_layers):
    pass


@pytest.fixture
def chat_inbox(db):
    return InboxFactory(kind="webchat", name="Chat", config={"allowed_origins": SHOP})


def visitor_socket(inbox, origin=SHOP):
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(WebchatConsumer.as_asgi(), f"/ws/chat/?inbox={inbox.pk}", headers=headers)


def sync(fn):
    """Run an async test body in its own event loop (as tests/tickets/test_consumers.py does)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def start(comm, **extra):
    connected, _ = await comm.connect()
    assert connected
    await comm.send_json_to({"type": "start", **extra})
    return await frame_until(comm, lambda f: f["type"] == "session")


@sync
async def test_origin_not_allowed_is_refused(chat_inbox):
    for origin in ("https://evil.example.net", None):
        comm = visitor_socket(chat_inbox, origin=origin)
        connected, code = await comm.connect()
        assert not connected
        assert code == 4403
    comm = WebsocketCommunicator(WebchatConsumer.as_asgi(), "/ws/chat/?inbox=999", headers=[(b"origin", SHOP.encode())])
    connected, _ = await comm.connect()
    assert not connected


@sync
async def test_message_ingested_once_and_visitor_resumes(chat_inbox):
    comm = visitor_socket(chat_inbox)
    session = await start(comm)
    assert session["messages"] == []
    token = session["token"]
    for _ in range(2):  # a resend of the same client_id (reconnect) is not doubled
        await comm.send_json_to({"type": "message", "text": "Where is my order?", "client_id": "c1"})
        ack = await frame_until(comm, lambda f: f["type"] == "ack")
    assert await db(lambda: Message.objects.filter(channel="chat").count()) == 1
    ticket = await db(lambda: Ticket.objects.get())
    assert ticket.channel == "chat"
    assert ack["id"] == await db(lambda: Message.objects.get().pk)
    await comm.disconnect()

    again = visitor_socket(chat_inbox)
    resumed = await start(again, token=token)
    assert [m["text"] for m in resumed["messages"]] == ["Where is my order?"]
    assert await db(lambda: ChatVisitor.objects.count()) == 1
    await again.disconnect()
    # A forged or other-inbox token is a new visitor, never someone else's conversation.
    other = await db(lambda: InboxFactory(kind="webchat", name="Other", config={"allowed_origins": SHOP}))
    comm3 = visitor_socket(other)
    fresh = await start(comm3, token=token)
    assert fresh["messages"] == []
    await comm3.disconnect()


@sync
async def test_agent_reply_reaches_visitor_and_notes_never_do(chat_inbox, agent):
    comm = visitor_socket(chat_inbox)
    await start(comm)
    await comm.send_json_to({"type": "message", "text": "Hello", "client_id": "c1"})
    await frame_until(comm, lambda f: f["type"] == "ack")
    ticket = await db(lambda: Ticket.objects.get())

    await db(lambda: services.note_add(ticket=ticket, author=agent, body="SECRET internal note"))
    await db(lambda: services.reply(ticket=ticket, author=agent, body="Hi, checking now"))
    got = await frame_until(comm, lambda f: f["type"] == "message" and f["from"] == "agent")
    assert got["text"] == "Hi, checking now"
    assert got["author"]
    # Nothing that carries the note's text ever reached the visitor.
    while not await comm.receive_nothing(timeout=0.3):
        assert "SECRET" not in json.dumps(await comm.receive_json_from())
    await comm.send_json_to({"type": "history"})
    history = await frame_until(comm, lambda f: f["type"] == "history")
    assert [m["text"] for m in history["messages"]] == ["Hello", "Hi, checking now"]
    # The visitor read it: a read receipt on the agent's message.
    await comm.send_json_to({"type": "read", "id": got["id"]})
    await comm.send_json_to({"type": "ping"})
    await frame_until(comm, lambda f: f["type"] == "pong")
    assert await db(lambda: Message.objects.get(pk=got["id"]).status) == Message.Status.READ
    await comm.disconnect()


@sync
async def test_typing_both_ways(chat_inbox, agent):
    comm = visitor_socket(chat_inbox)
    await start(comm)
    await comm.send_json_to({"type": "message", "text": "Hello", "client_id": "c1"})
    await frame_until(comm, lambda f: f["type"] == "ack")
    ticket = await db(lambda: Ticket.objects.get())
    desk = WebsocketCommunicator(DeskConsumer.as_asgi(), "/ws/desk/")
    desk.scope["user"] = agent
    assert (await desk.connect())[0]
    await desk.send_json_to({"subscribe_ticket": ticket.pk})
    await frame_until(comm, lambda f: f["type"] == "read")  # the agent opened it
    await desk.send_json_to({"typing": ticket.pk})
    await frame_until(comm, lambda f: f["type"] == "typing")
    await comm.send_json_to({"type": "typing"})
    await comm.send_json_to({"type": "typing"})  # coalesced: one event per 3 s
    await frame_until(desk, lambda f: f.get("event") == "visitor.typing")
    while not await desk.receive_nothing(timeout=0.5):
        assert (await desk.receive_json_from()).get("event") != "visitor.typing"
    # The agent has the ticket open: the visitor's next message comes back as read.
    await comm.send_json_to({"type": "message", "text": "still there?", "client_id": "c2"})
    await frame_until(comm, lambda f: f["type"] == "ack")
    await frame_until(comm, lambda f: f["type"] == "read")
    await desk.disconnect()
    await comm.disconnect()


@sync
async def test_bad_frames_get_clear_errors_and_limits_hold(chat_inbox, settings):
    settings.CXDESK_WEBCHAT_RATE = 8
    comm = visitor_socket(chat_inbox)
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(text_data="not json")
    assert (await comm.receive_json_from())["code"] == "invalid"
    await comm.send_json_to({"type": "message", "text": "hi", "client_id": "x"})
    assert (await comm.receive_json_from())["code"] == "no_session"
    await comm.send_json_to({"type": "start"})
    await frame_until(comm, lambda f: f["type"] == "session")
    await comm.send_to(text_data=json.dumps({"type": "message", "text": "x" * 20000, "client_id": "big"}))
    assert (await comm.receive_json_from())["code"] == "too_large"
    await comm.send_json_to({"type": "message", "text": "   ", "client_id": "e"})
    assert (await comm.receive_json_from())["code"] == "empty_body"
    await comm.send_json_to({"type": "page", "url": "javascript:alert(1)"})
    assert (await comm.receive_json_from())["fields"] == {"url": ["invalid"]}
    await comm.send_json_to({"type": "nonsense"})
    assert (await comm.receive_json_from())["code"] == "invalid"
    await comm.send_json_to([1, 2])
    assert (await comm.receive_json_from())["code"] == "invalid"
    codes = []
    for _ in range(4):
        await comm.send_json_to({"type": "ping"})
        codes.append((await comm.receive_json_from()).get("code"))
    assert codes[-1] == "rate_limited"
    assert await db(lambda: Message.objects.count()) == 0
    await comm.disconnect()
