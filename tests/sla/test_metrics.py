"""Every measure against a hand-computed fixture on two channels."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels_app.models import Channel
from sla.metrics import measures, volume_by_hour
from sla.models import SlaPolicy, TicketSla
from tests.tickets.factories import AgentFactory, CustomerFactory
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("UTC"))


def make(channel, *, created_min, first_reply_min=None, solved_min=None, replies=0, reopens=0, status=None, sla=None):
    agent = AgentFactory(username="m-agent")
    t = Ticket.objects.create(
        customer=CustomerFactory(),
        channel=channel,
        subject="m",
        status=status or ("solved" if solved_min is not None else "open"),
    )
    created = T0 + timedelta(minutes=created_min)
    Ticket.objects.filter(pk=t.pk).update(
        created_at=created,
        first_response_at=created + timedelta(minutes=first_reply_min) if first_reply_min is not None else None,
        solved_at=created + timedelta(minutes=solved_min) if solved_min is not None else None,
        reopen_count=reopens,
    )
    for _ in range(replies):
        Message.objects.create(ticket=t, direction="outbound", channel=channel, author=agent, status="sent")
    if sla:
        policy = SlaPolicy.objects.get_or_create(
            name="p", defaults={"first_response_minutes": 30, "resolution_minutes": 600}
        )[0]
        TicketSla.objects.create(
            ticket=t, policy=policy, started_at=created, first_response_due=created, resolution_due=created, **sla
        )
    return t


def test_measures_by_channel_match_hand_computed_values():
    # email: three tickets
    make(
        Channel.EMAIL,
        created_min=0,
        first_reply_min=10,
        solved_min=60,
        replies=1,
        sla={"first_response_met_at": T0, "resolved_at": T0},
    )  # FCR, SLA met
    make(
        Channel.EMAIL,
        created_min=60,
        first_reply_min=30,
        solved_min=120,
        replies=2,
        reopens=1,
        sla={
            "first_response_met_at": T0,
            "first_response_breached_at": T0,
            "resolved_at": T0,
            "resolution_breached_at": T0,
        },
    )
    make(Channel.EMAIL, created_min=120)  # open, no reply
    # sms: two tickets
    make(Channel.SMS, created_min=0, first_reply_min=2, solved_min=20, replies=1)
    make(Channel.SMS, created_min=5, first_reply_min=4, status="pending", replies=1)
    rows = {r["channel"]: r for r in measures(start=T0 - timedelta(days=1), end=T0 + timedelta(days=1), by="channel")}
    email, sms = rows["email"], rows["sms"]
    assert (email["tickets"], email["backlog"], email["solved"]) == (3, 1, 2)
    assert email["first_response_minutes"] == 20.0  # (10 + 30) / 2
    assert email["resolution_minutes"] == 90.0  # (60 + 120) / 2
    assert email["handle_minutes"] == 70.0  # (50 + 90) / 2
    assert email["first_contact_resolution"] == 0.5  # 1 of 2 solved: one reply, never reopened
    assert email["reopen_rate"] == 0.5
    assert email["sla_first_response_attainment"] == 0.5
    assert email["sla_resolution_attainment"] == 0.5
    assert (sms["tickets"], sms["backlog"], sms["solved"]) == (2, 1, 1)
    assert sms["first_response_minutes"] == 3.0  # (2 + 4) / 2
    assert sms["resolution_minutes"] == 20.0
    assert sms["first_contact_resolution"] == 1.0
    assert sms["reopen_rate"] == 0.0
    assert sms["sla_first_response_attainment"] is None
    by_hour = {
        (v["channel"], v["hour"]): v["tickets"]
        for v in volume_by_hour(start=T0 - timedelta(days=1), end=T0 + timedelta(days=1))
    }
    assert by_hour == {("email", 9): 1, ("email", 10): 1, ("email", 11): 1, ("sms", 9): 2}


def test_api_and_dashboard_and_csv(client, email_inbox):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    make(Channel.EMAIL, created_min=0, first_reply_min=10, solved_min=60, replies=1)
    staff = AgentFactory(username="boss")
    _, key = api_key_create(user=staff, name="m")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    body = api.get("/api/v1/metrics/", {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T00:00:00Z"}).json()
    assert body["rows"][0]["first_response_minutes"] == 10.0
    assert api.get("/api/v1/metrics/", {"by": "planet"}).status_code == 400
    client.force_login(staff)
    page = client.get("/desk/reports/", {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T00:00:00Z"})
    assert page.status_code == 200
    assert b"<svg" in page.content
    csv = client.get(
        "/desk/reports/", {"start": "2026-11-01T00:00:00Z", "end": "2026-11-03T00:00:00Z", "format": "csv"}
    )
    assert csv["Content-Disposition"].startswith("attachment")
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("channel,tickets,backlog,first_response_minutes")
    assert lines[1].startswith("email,1,0,10.0")
