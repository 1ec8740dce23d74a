"""Voice in the measures, against a hand-computed fixture: calls by channel and agent,
answered / missed / voicemails, average handle time from call durations, and first-contact
resolution across channels counting an answered call as the agent's contact."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from channels_app.models import Call, Channel
from sla.metrics import call_totals, measures
from tests.channels_app.factories import InboxFactory
from tests.tickets.factories import AgentFactory, CustomerFactory
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("UTC"))
PERIOD = {"start": T0 - timedelta(hours=1), "end": T0 + timedelta(days=1)}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def ticket(channel, *, created=T0, solved=False, replies=0, agent=None):
    t = Ticket.objects.create(customer=CustomerFactory(), channel=channel, status="solved" if solved else "open")
    Ticket.objects.filter(pk=t.pk).update(
        created_at=created, solved_at=created + timedelta(hours=1) if solved else None
    )
    for _ in range(replies):
        Message.objects.create(ticket=t, direction="outbound", channel=Channel.EMAIL, author=agent, status="sent")
    return t


def call(inbox, t, sid, *, agent=None, duration=None, voicemail=False, at=T0):
    message = Message.objects.create(
        ticket=t, direction="inbound", channel=Channel.VOICE, inbox=inbox, provider_message_id=sid, status="received"
    )
    return Call.objects.create(
        inbox=inbox,
        call_sid=sid,
        message=message,
        started_at=at,
        agent=agent,
        answered_at=at if agent else None,
        status="completed" if agent else "no-answer",
        duration=duration,
        voicemail=voicemail,
    )


def test_calls_answered_missed_aht_and_fcr_across_channels(client):
    ana, ben = AgentFactory(username="ana"), AgentFactory(username="ben")
    phone = InboxFactory(kind="twilio_voice", name="Phone")
    t1 = ticket(Channel.VOICE, solved=True)  # one answered call, solved: first-contact resolution
    t2 = ticket(Channel.VOICE, solved=True, replies=1, agent=ben)  # a call and an email reply: two contacts
    t3 = ticket(Channel.VOICE)  # a missed call and a voicemail, still open
    older = ticket(Channel.EMAIL, created=T0 - timedelta(days=3))  # created before the period
    ticket(Channel.EMAIL, solved=True, replies=1, agent=ana)  # email FCR, no calls
    call(phone, t1, "CA-A", agent=ana, duration=120)
    call(phone, t2, "CA-B", agent=ben, duration=300)
    call(phone, t3, "CA-C")  # missed
    call(phone, t3, "CA-D", voicemail=True)
    call(phone, older, "CA-E", agent=ana, duration=60)  # a call in the period on an older ticket
    call(phone, t3, "CA-F", agent=ana, duration=999, at=T0 - timedelta(days=2))  # outside the period

    rows = {r["channel"]: r for r in measures(**PERIOD, by="channel")}
    voice, email = rows["voice"], rows["email"]
    assert (voice["tickets"], voice["solved"]) == (3, 2)
    assert voice["first_contact_resolution"] == 0.5  # t1 yes (one call), t2 no (call + reply)
    assert email["first_contact_resolution"] == 1.0 and email["calls"] == 0
    assert (voice["calls"], voice["calls_answered"], voice["calls_missed"], voice["voicemails"]) == (5, 3, 1, 1)
    assert voice["call_handle_minutes"] == 2.7  # (120 + 300 + 60) / 3 s = 160 s

    by_agent = {r["agent"]: r for r in measures(**PERIOD, by="agent")}
    assert (by_agent["ana"]["calls"], by_agent["ana"]["call_handle_minutes"]) == (2, 1.5)  # (120 + 60) / 2 s
    assert (by_agent["ben"]["calls"], by_agent["ben"]["call_handle_minutes"]) == (1, 5.0)
    unanswered = by_agent["—"]
    assert (unanswered["calls"], unanswered["calls_missed"], unanswered["voicemails"]) == (2, 1, 1)
    assert by_agent["ana"]["tickets"] == 0  # ana answered calls but owns no ticket of the period

    totals = call_totals(**PERIOD)
    assert totals == {
        "calls": 5,
        "calls_answered": 3,
        "calls_missed": 1,
        "voicemails": 1,
        "call_handle_minutes": 2.7,
        "answer_rate": 0.6,
    }

    client.force_login(AgentFactory(username="boss"))
    page = client.get("/desk/reports/", {"start": "2026-11-02T08:00:00Z", "end": "2026-11-03T09:00:00Z"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-figure="calls">5<' in html and 'data-figure="answer-rate">60 %<' in html
    assert 'data-figure="aht">2.7 min<' in html and "<th>Call AHT (min)</th>" in html
