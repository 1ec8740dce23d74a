"""One commit, one publish per group, over the real Redis channel layer."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from channels_app.services import ingest
from cxdesk import realtime
from tests.channels_app.factories import inbound
from tests.sockets import sent_events
from tickets import services
from tickets.models import Ticket


@pytest.fixture
def redis_layer():
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "channels_redis.core.RedisChannelLayer":
        pytest.fail("run with REDIS_URL set: this test publishes through the Redis channel layer")
    return get_channel_layer()


def _listen(layer, groups: list[str]) -> tuple[str, list[str]]:
    async def join():
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        return channel

    return asyncio.run(join()), groups


def _received(layer, channel: str) -> list[dict]:
    async def drain():
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(layer.receive(channel), 0.5))
            except TimeoutError:
                return out

    return asyncio.run(drain())


def test_an_inbound_message_is_one_publish_per_group(redis_layer, sms_inbox, django_capture_on_commit_callbacks):
    first = ingest(inbound(sms_inbox, text="first"))
    Ticket.objects.filter(pk=first.ticket.pk).update(status=Ticket.Status.PENDING)
    desk, _ = _listen(redis_layer, ["inbox"])
    ticket_socket, _ = _listen(redis_layer, [f"ticket.{first.ticket.pk}"])
    with django_capture_on_commit_callbacks(execute=True):
        second = ingest(inbound(sms_inbox, text="second: reopens the pending ticket"))
    assert second.ticket.pk == first.ticket.pk
    assert realtime.flush(5)

    on_ticket = _received(redis_layer, ticket_socket)
    assert len(on_ticket) == 1, "the ticket's events of one commit travel as one channel-layer message"
    batch = on_ticket[0]
    assert batch["type"] == "desk.batch"
    names = [e["event"] for e in batch["events"]]
    assert "message.created" in names and "ticket.event" in names and "ticket.updated" in names
    published = [e["event"] for e in sent_events() if e["group"] == f"ticket.{first.ticket.pk}"]
    assert names == published[-len(names) :], "in the order the transaction produced them"

    on_desk = _received(redis_layer, desk)
    assert len(on_desk) == 1
    assert {e["event"] for e in on_desk[0]["events"]} >= {"ticket.activity", "ticket.updated"}


def test_a_rolled_back_transaction_publishes_nothing(redis_layer, sms_inbox, django_capture_on_commit_callbacks):
    ticket = ingest(inbound(sms_inbox)).ticket
    listener, _ = _listen(redis_layer, [f"ticket.{ticket.pk}"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.ticket_update(ticket=ticket, priority="urgent")
    assert callbacks, "the update registers its broadcasts for the commit"
    # Not executed: the transaction never committed.
    assert realtime.flush(5)
    assert _received(redis_layer, listener) == []


def test_batched_keeps_one_message_per_group_in_order():
    messages = [
        {"type": "desk.event", "group": "a", "event": "1"},
        {"type": "desk.event", "group": "b", "event": "2"},
        {"type": "desk.event", "group": "a", "event": "3"},
    ]
    out = realtime.batched(messages)
    assert [group for group, _ in out] == ["a", "b"]
    assert [e["event"] for e in out[0][1]["events"]] == ["1", "3"]
    assert out[1][1] == messages[1], "a lone event goes as it is"


@pytest.mark.django_db
def test_one_publish_per_transaction_and_a_rolled_back_savepoint_publishes_nothing(
    monkeypatch, django_capture_on_commit_callbacks
):
    from django.db import transaction

    calls = []
    monkeypatch.setattr(realtime, "publish", lambda *messages: calls.append([m["event"] for m in messages]))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            realtime.broadcast_on_commit("g", "kept")
            try:
                with transaction.atomic():
                    realtime.broadcast_on_commit("g", "dropped")
                    raise RuntimeError("the savepoint rolls back")
            except RuntimeError:
                pass
            for i in range(3):
                realtime.broadcast_on_commit("g", f"after {i}")
    assert calls == [["kept", "after 0", "after 1", "after 2"]]


def test_groups_nobody_listens_to_are_not_sent_to(redis_layer, monkeypatch):
    listener, _ = _listen(redis_layer, ["listened"])
    sent_to = []
    group_send = redis_layer.group_send

    async def counted(group, message):
        sent_to.append(group)
        await group_send(group, message)

    monkeypatch.setattr(redis_layer, "group_send", counted)
    realtime.publish(
        realtime._message("nobody.1", "a", {}),
        realtime._message("listened", "b", {}),
        realtime._message("nobody.2", "c", {}),
        realtime._message("listened", "d", {}),
    )
    assert realtime.flush(5)
    assert sent_to == ["listened"], "one send, to the one group with a member"
    received = _received(redis_layer, listener)
    assert [e["event"] for e in received[0]["events"]] == ["b", "d"]

    async def leave():
        await redis_layer.group_discard("listened", listener)

    asyncio.run(leave())
    realtime.publish(realtime._message("listened", "e", {}))
    assert realtime.flush(5)
    assert sent_to == ["listened"], "its last member gone, the group is not sent to"
