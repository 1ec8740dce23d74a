import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from tickets.consumers import DeskConsumer

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(user):
    comm = WebsocketCommunicator(DeskConsumer.as_asgi(), "/ws/desk/")
    comm.scope["user"] = user
    return comm


def run(coro):
    import asyncio

    return asyncio.run(coro)


def test_anonymous_and_non_staff_are_refused(settings):
    from tests.tickets.factories import AgentFactory

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    customer = AgentFactory(username="cust", is_staff=False)

    async def scenario():
        for user in (AnonymousUser(), customer):
            comm = communicator(user)
            connected, code = await comm.connect()
            assert not connected
            assert code == 4403

    run(scenario())


def test_live_events_presence_and_logout_close(settings, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound
    from tests.tickets.factories import AgentFactory

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    ana = AgentFactory(username="ana2", first_name="Ana")
    ben = AgentFactory(username="ben2", first_name="Ben")
    ticket = ingest(email_inbound(email_inbox)).ticket

    async def scenario():
        a, b = communicator(ana), communicator(ben)
        assert (await a.connect())[0]
        assert (await b.connect())[0]
        await a.send_json_to({"subscribe_ticket": ticket.pk})
        assert (await a.receive_json_from())["event"] == "presence"
        await b.send_json_to({"subscribe_ticket": ticket.pk})
        seen = await a.receive_json_from()
        assert (seen["event"], seen["user"], seen["state"]) == ("presence", "Ben", "viewing")
        await b.receive_json_from()  # Ben hears his own presence
        await b.send_json_to({"typing": ticket.pk})
        typing = await a.receive_json_from()
        assert (typing["user"], typing["state"]) == ("Ben", "replying")
        await b.receive_json_from()

        # a new inbound message reaches everyone watching the ticket
        @database_sync_to_async
        def new_message():
            from django.db import transaction

            with transaction.atomic():
                r = ingest(
                    email_inbound(email_inbox, subject="Re: Help", in_reply_to=ticket.messages.first().email_message_id)
                )
                assert r.ticket.pk == ticket.pk
            return r

        await new_message()
        events = set()
        for _ in range(6):
            if await a.receive_nothing(timeout=0.2):
                break
            events.add((await a.receive_json_from())["event"])
        assert "message.created" in events
        # signing out closes that user's sockets
        await get_channel_layer().group_send(f"agent.{ben.pk}", {"type": "desk.logout"})
        kinds = []
        while not kinds or kinds[-1] != "websocket.close":
            kinds.append((await b.receive_output(timeout=1))["type"])
        assert kinds[-1] == "websocket.close"
        await a.disconnect()

    run(scenario())
