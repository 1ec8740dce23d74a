"""Twilio Programmable Voice: signed webhooks, TwiML (parsed), continuity ringing, team and
voicemail routes, status callbacks as events (forward only, idempotent), the recording
fetched once through Twilio's API (mocked at HTTP), missed calls, and the phone-system API."""

import io
import json
import xml.etree.ElementTree as ET  # noqa: S405 — parses our own TwiML
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.management import call_command
from twilio.request_validator import RequestValidator

from channels_app.models import AgentPhone, Call, Channel, Inbox
from channels_app.services import ingest
from customers.models import Identity
from routing.models import AgentProfile
from sla.models import SlaPolicy, TicketSla
from tests.channels_app.factories import InboxFactory, inbound
from tests.sockets import sent_events
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets.models import Attachment, Message, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "voice-token"
BASE = "https://desk.example.com"
CALLER = "+48600100200"


@pytest.fixture
def voice_inbox(settings):
    settings.PUBLIC_URL = BASE
    return InboxFactory(
        kind="twilio_voice",
        name="Phone",
        config={"account_sid": SID, "phone_number": "+15005550006", "default_region": "PL"},
        secrets={"auth_token": TOKEN},
        transport=Inbox.Transport.LIVE,
    )


_capture = None


@pytest.fixture(autouse=True)
def _run_on_commit(django_capture_on_commit_callbacks, settings):
    """Each webhook runs its after-commit work (broadcasts, the recording fetch) as in production."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # agents sign in nowhere here
    global _capture
    _capture = django_capture_on_commit_callbacks


@pytest.fixture
def api(db):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    _, key = api_key_create(user=AgentFactory(username="pbx"), name="pbx")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def hook(client, inbox, params, *, event=None, status_path=False, signature=None, **query):
    path = f"/hooks/twilio-voice/{inbox.pk}/" + ("status/" if status_path else "")
    if event:
        path += "?" + "&".join(f"{k}={v}" for k, v in {"event": event, **query}.items())
    signature = signature or RequestValidator(TOKEN).compute_signature(BASE + path, params)
    with _capture(execute=True):
        return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def incoming(client, inbox, sid="CA1", caller=CALLER):
    params = {"CallSid": sid, "AccountSid": SID, "From": caller, "To": "+15005550006", "CallStatus": "ringing",
              "Direction": "inbound"}  # fmt: skip
    return hook(client, inbox, params)


def twiml(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/xml")
    return ET.fromstring(response.content)  # noqa: S314


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def agent_with_phone(username, *, number="", sip="", status=None, first_name=""):
    user = AgentFactory(username=username, first_name=first_name or username.title())
    AgentPhone.objects.create(user=user, number=number, sip_uri=sip)
    if status:
        AgentProfile.objects.create(user=user, status=status)
    return user


def call_events(ticket):
    return list(
        TicketEvent.objects.filter(ticket=ticket, kind__in=["call", "call_missed"])
        .order_by("id")
        .values_list("kind", "data__old", "data__new")
    )


def test_create_inbox_prints_the_voice_webhook_and_never_the_token(settings):
    settings.PUBLIC_URL = BASE
    out = io.StringIO()
    call_command("create_inbox", "twilio_voice", "Phone line", "--set", f"account_sid={SID}",
                 "--set", "auth_token=s3cret-token", "--set", "phone_number=+15005550006", stdout=out)  # fmt: skip
    printed = json.loads(out.getvalue())
    inbox = Inbox.objects.get(name="Phone line")
    assert printed == {"id": inbox.pk, "name": "Phone line", "kind": "twilio_voice",
                       "webhook_url": f"{BASE}/hooks/twilio-voice/{inbox.pk}/"}  # fmt: skip
    assert "s3cret" not in out.getvalue() and inbox.secrets == {"auth_token": "s3cret-token"}


def test_a_bad_signature_is_403_and_stores_nothing(client, voice_inbox):
    params = {"CallSid": "CA1", "From": CALLER, "To": "+15005550006", "CallStatus": "ringing"}
    response = hook(client, voice_inbox, params, signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status_code == 403
    forged = RequestValidator("other-token").compute_signature(f"{BASE}/hooks/twilio-voice/{voice_inbox.pk}/", params)
    assert hook(client, voice_inbox, params, signature=forged).status_code == 403
    assert not Message.objects.exists() and not Call.objects.exists()


def test_the_owner_of_the_callers_open_ticket_rings_and_sees_the_screen_pop(client, voice_inbox, sms_inbox):
    ana = agent_with_phone("ana", number="+48500000001")
    agent_with_phone("ben", number="+48500000002")  # available, but not the owner
    with _capture(execute=True):
        sms = ingest(inbound(sms_inbox, address=CALLER, text="My parcel is late"))
    Ticket.objects.filter(pk=sms.ticket.pk).update(assignee=ana)

    root = twiml(incoming(client, voice_inbox, caller="+48 600 100 200"))
    dial = root.find("Dial")
    numbers = dial.findall("Number")
    assert [n.text for n in numbers] == ["+48500000001"]
    leg = query(numbers[0].get("statusCallback"))
    assert leg == {"event": "leg", "agent": str(ana.pk)}
    assert numbers[0].get("statusCallbackEvent") == "initiated ringing answered completed"
    assert query(dial.get("action")) == {"event": "dial"} and dial.get("answerOnBridge") == "true"
    assert dial.get("record") == "record-from-answer-dual"
    # one person, one ticket: the call joined the SMS ticket under the same phone identity
    call = Call.objects.get()
    assert call.message.ticket_id == sms.ticket.pk and call.message.channel == Channel.VOICE
    assert call.message.identity_id == sms.message.identity_id
    assert Identity.objects.filter(kind="phone").count() == 1
    assert (call.route, call.rung) == ("agent", [ana.pk])
    assert call_events(sms.ticket) == [("call", "", "ringing")]
    pops = [e for e in sent_events() if e["event"] == "call.ringing"]
    assert [e["group"] for e in pops] == [f"agent.{ana.pk}"]
    assert pops[0]["ticket_id"] == sms.ticket.pk and pops[0]["caller"] == CALLER and pops[0]["rung"] is True


def test_an_unavailable_owner_passes_the_call_to_the_team(client, voice_inbox, sms_inbox):
    team = TeamFactory(name="Support")
    ana = agent_with_phone("ana", number="+48500000001", status="away")
    ben = agent_with_phone("ben", number="+48500000002")
    cleo = agent_with_phone("cleo", sip="sip:cleo@pbx.example.com")
    dan = AgentFactory(username="dan")  # no phone: never rung, but sees the pop
    team.members.add(ana, ben, cleo, dan)
    sms = ingest(inbound(sms_inbox, address=CALLER))
    Ticket.objects.filter(pk=sms.ticket.pk).update(assignee=ana, team=team)

    dial = twiml(incoming(client, voice_inbox)).find("Dial")
    assert [n.text for n in dial.findall("Number")] == ["+48500000002"]
    assert [s.text for s in dial.findall("Sip")] == ["sip:cleo@pbx.example.com"]
    assert query(dial.find("Sip").get("statusCallback"))["agent"] == str(cleo.pk)
    assert Call.objects.get().route == "team"
    groups = sorted(e["group"] for e in sent_events() if e["event"] == "call.ringing")
    assert groups == sorted(f"agent.{u.pk}" for u in (ana, ben, cleo, dan))


def test_nobody_available_answers_with_voicemail_and_transcription(client, voice_inbox):
    root = twiml(incoming(client, voice_inbox))
    assert root.find("Dial") is None
    assert "leave a message" in root.find("Say").text
    record = root.find("Record")
    assert record.get("transcribe") == "true" and record.get("playBeep") == "true"
    assert query(record.get("transcribeCallback")) == {"event": "transcription"}
    assert query(record.get("action")) == {"event": "voicemail"}
    assert query(record.get("recordingStatusCallback")) == {"event": "recording"}
    ticket = Ticket.objects.get()  # a new caller: a new ticket on the voice channel
    assert ticket.channel == Channel.VOICE and Call.objects.get().route == "voicemail"


@responses.activate
def test_an_answered_call_becomes_events_and_a_timeline_entry_with_its_recording_once(client, voice_inbox):
    ana = agent_with_phone("ana", number="+48500000001", first_name="Ana")
    team = TeamFactory(name="Support")
    team.members.add(ana)
    voice_inbox.default_team = team
    voice_inbox.save()
    SlaPolicy.objects.create(name="Phone", channel="voice", first_response_minutes=15, resolution_minutes=480)
    twiml(incoming(client, voice_inbox))
    ticket = Ticket.objects.get()
    assert ticket.assignee_id is None and ticket.first_response_at is None
    leg = {"CallSid": "CAleg1", "ParentCallSid": "CA1", "AccountSid": SID}
    for status in ("initiated", "ringing", "in-progress", "ringing"):  # a late "ringing" changes nothing
        twiml(hook(client, voice_inbox, {**leg, "CallStatus": status}, event="leg", agent=ana.pk))
    recording_url = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/RE1"
    responses.get(recording_url + ".mp3", body=b"ID3-fake-mp3", content_type="audio/mpeg")
    for _ in range(2):  # every callback twice: nothing doubles
        twiml(hook(client, voice_inbox, {**leg, "CallStatus": "completed", "CallDuration": "192"}, event="leg",
                   agent=ana.pk))  # fmt: skip
        assert len(twiml(hook(client, voice_inbox, {"CallSid": "CA1", "DialCallStatus": "completed",
                                                    "DialCallDuration": "192"}, event="dial"))) == 0  # fmt: skip
        twiml(hook(client, voice_inbox, {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "201"},
                   status_path=True))  # fmt: skip
        twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "RE1", "RecordingUrl": recording_url,
                                         "RecordingStatus": "completed"}, event="recording"))  # fmt: skip
    call = Call.objects.get()
    assert (call.status, call.agent_id, call.duration, call.voicemail) == ("completed", ana.pk, 192, False)
    assert call_events(ticket) == [
        ("call", "", "ringing"),
        ("call", "ringing", "in-progress"),
        ("call", "in-progress", "completed"),
    ]
    answered = TicketEvent.objects.get(ticket=ticket, data__new="in-progress")
    assert answered.actor_id == ana.pk
    message = Message.objects.get(pk=call.message_id)
    assert message.direction == "inbound" and message.channel == "voice"
    assert message.body_text == f"Incoming call from {CALLER} — answered by Ana, 3:12"
    assert message.metadata["call"]["duration"] == 192
    attachment = Attachment.objects.get(message=message)
    assert attachment.filename == "RE1.mp3" and attachment.size == len(b"ID3-fake-mp3") and attachment.sha256
    assert len(responses.calls) == 1
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    client.force_login(AgentFactory(username="boss"))
    page = client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert f'<audio controls preload="none" src="/api/v1/attachments/{attachment.pk}/"></audio>' in page
    assert client.get(f"/api/v1/attachments/{attachment.pk}/").getvalue() == b"ID3-fake-mp3"
    assert [
        e["event"] for e in sent_events() if e["group"] == f"agent.{ana.pk}" and e["event"].startswith("call.")
    ] == [
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    # answering was the first response: the ticket the call opened is Ana's, open, its SLA clock stopped
    ticket.refresh_from_db()
    assert (ticket.assignee_id, ticket.status) == (ana.pk, "open") and ticket.first_response_at is not None
    assert TicketSla.objects.get(ticket=ticket).first_response_met_at is not None
    # … so the same customer's next call rings Ana first (continuity), not the whole team
    ben = agent_with_phone("ben", number="+48500000002")
    team.members.add(ben)
    dial = twiml(incoming(client, voice_inbox, sid="CA2")).find("Dial")
    assert [n.text for n in dial.findall("Number")] == ["+48500000001"]
    assert Call.objects.get(call_sid="CA2").message.ticket_id == ticket.pk


@responses.activate
def test_a_voicemail_keeps_its_transcript_and_recording_and_is_not_a_missed_call(client, voice_inbox):
    twiml(incoming(client, voice_inbox))
    ticket = Ticket.objects.get()
    recording_url = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/REvm"
    responses.get(recording_url + ".mp3", body=b"voicemail-bytes", content_type="audio/mpeg")
    goodbye = twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "REvm", "RecordingUrl": recording_url,
                                               "RecordingDuration": "14"}, event="voicemail"))  # fmt: skip
    assert goodbye.find("Hangup") is not None
    twiml(hook(client, voice_inbox, {"CallSid": "CA1", "CallStatus": "completed", "CallDuration": "30"},
               status_path=True))  # fmt: skip
    for _ in range(2):
        twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "REvm", "TranscriptionStatus": "completed",
                                         "TranscriptionText": "Please call me about order 1042."},
                   event="transcription"))  # fmt: skip
        twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "REvm", "RecordingUrl": recording_url,
                                         "RecordingStatus": "completed"}, event="recording"))  # fmt: skip
    call = Call.objects.get()
    assert call.voicemail and call.transcript == "Please call me about order 1042."
    assert call_events(ticket) == [("call", "", "ringing"), ("call", "ringing", "no-answer")]
    message = call.message
    message.refresh_from_db()
    assert "voicemail" in message.body_text and "Voicemail transcript: Please call me about order 1042." in (
        message.body_text
    )
    assert Attachment.objects.get(message=message).size == len(b"voicemail-bytes")
    assert len(responses.calls) == 1


@responses.activate
def test_a_recording_over_the_attachment_limit_is_not_stored(client, voice_inbox, settings):
    settings.CXDESK_MAX_ATTACHMENT_BYTES = 1000
    twiml(incoming(client, voice_inbox))
    url = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Recordings/REbig"
    responses.get(url + ".mp3", body=b"x" * 200_000, content_type="audio/mpeg")
    twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "REbig", "RecordingUrl": url,
                                     "RecordingStatus": "completed"}, event="recording"))  # fmt: skip
    attachment = Attachment.objects.get()
    assert attachment.sha256 == "" and attachment.size == 0 and not attachment.file
    assert len(responses.calls) == 1  # a permanent failure: not retried


def test_a_missed_call_without_voicemail_opens_a_ticket_that_says_call_back(client, voice_inbox):
    ben = agent_with_phone("ben", number="+48500000002")
    team = TeamFactory(name="Support")
    team.members.add(ben)
    voice_inbox.default_team = team
    voice_inbox.save()
    twiml(incoming(client, voice_inbox, caller="+48600999888"))
    # nobody picks up: the dial ends with no-answer and the caller is offered voicemail
    after = twiml(hook(client, voice_inbox, {"CallSid": "CA1", "DialCallStatus": "no-answer"}, event="dial"))
    assert after.find("Record") is not None and after.find("Record").get("transcribe") == "true"
    # … and hangs up without a word
    twiml(hook(client, voice_inbox, {"CallSid": "CA1", "RecordingSid": "REx", "RecordingDuration": "0"},
               event="voicemail"))  # fmt: skip
    for _ in range(2):
        twiml(hook(client, voice_inbox, {"CallSid": "CA1", "CallStatus": "completed"}, status_path=True))
    ticket = Ticket.objects.get()
    assert ticket.is_open and ticket.channel == Channel.VOICE
    assert ticket.customer.identities.get().address == "+48600999888"
    assert call_events(ticket) == [
        ("call", "", "ringing"),
        ("call", "ringing", "no-answer"),
        ("call_missed", None, None),
    ]
    assert list(ticket.tags.values_list("name", flat=True)) == ["call-back"]
    assert "missed, call back" in Call.objects.get().message.body_text
    assert TicketEvent.objects.get(kind="call_missed").get_kind_display() == "Missed call — call back"


@pytest.mark.parametrize("status", ["busy", "failed"])
def test_a_busy_or_failed_dial_is_an_event_and_goes_to_voicemail(client, voice_inbox, status):
    ben = agent_with_phone("ben", number="+48500000002")
    team = TeamFactory(name="Support")
    team.members.add(ben)
    voice_inbox.default_team = team
    voice_inbox.save()
    twiml(incoming(client, voice_inbox))
    after = twiml(hook(client, voice_inbox, {"CallSid": "CA1", "DialCallStatus": status}, event="dial"))
    assert after.find("Record") is not None
    assert call_events(Ticket.objects.get()) == [("call", "", "ringing"), ("call", "ringing", status)]


def test_a_caller_who_hangs_up_while_ringing_is_a_missed_call_on_their_open_ticket(client, voice_inbox, sms_inbox):
    sms = ingest(inbound(sms_inbox, address=CALLER))
    Ticket.objects.filter(pk=sms.ticket.pk).update(status="pending")
    twiml(incoming(client, voice_inbox))
    twiml(hook(client, voice_inbox, {"CallSid": "CA1", "CallStatus": "canceled"}, status_path=True))
    ticket = Ticket.objects.get()
    assert ticket.pk == sms.ticket.pk and ticket.status == "open"  # a pending ticket is open again
    assert ("call_missed", None, None) in call_events(ticket)


def test_a_repeated_incoming_webhook_answers_the_same_and_stores_one_call(client, voice_inbox):
    agent_with_phone("ana", number="+48500000001")
    team = TeamFactory(name="Support")
    team.members.add(*AgentPhone.objects.values_list("user", flat=True))
    voice_inbox.default_team = team
    voice_inbox.save()
    first = incoming(client, voice_inbox).content
    second = incoming(client, voice_inbox).content
    assert first == second
    assert Call.objects.count() == 1 and Message.objects.count() == 1
    assert len([e for e in sent_events() if e["event"] == "call.ringing"]) == 1


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "not a number"])
def test_a_withheld_number_is_told_so_and_nothing_is_stored(client, voice_inbox, caller):
    root = twiml(incoming(client, voice_inbox, caller=caller))
    assert "hidden numbers" in root.find("Say").text and root.find("Hangup") is not None
    assert not Message.objects.exists() and not Ticket.objects.exists()


def test_the_screen_pop_context_is_a_constant_handful_of_queries(voice_inbox, sms_inbox, django_assert_max_num_queries):
    from customers.services import page_view_record
    from tickets.selectors import screen_pop_context

    agent = AgentFactory(username="ana")
    for i in range(5):
        ingest(inbound(sms_inbox, address=CALLER, text=f"message {i}"))
    ticket = Ticket.objects.get()
    for i in range(8):
        page_view_record(customer=ticket.customer, url=f"https://shop.example.com/p/{i}", title=f"Page {i}")
    with django_assert_max_num_queries(6):  # five, and one for the role that scopes what the agent sees
        context = screen_pop_context(agent=agent, ticket_id=ticket.pk)
        assert [p.title for p in context["pages"]] == ["Page 7", "Page 6", "Page 5", "Page 4", "Page 3"]
        assert [m.body_text for m in context["last_messages"]] == ["message 4"]
        assert len(context["identities"]) == 1 and context["open_tickets"] == [ticket]


def test_agents_log_the_call_outcome_as_a_note_from_a_ready_template(client, voice_inbox):
    from tickets.models import CannedResponse

    twiml(incoming(client, voice_inbox))
    ticket = Ticket.objects.get()
    template = CannedResponse.objects.get(shortcut="call-outcome")
    agent = AgentFactory(username="ana")
    client.force_login(agent)
    page = client.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert "Log call outcome" in page and "Incoming call from +48600100200" in page
    body = template.body.replace("Call outcome: ", "Call outcome: refund agreed")
    response = client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": body, "internal": "on"})
    assert response.status_code in (200, 302)
    note = ticket.messages.get(direction="note")
    assert note.body_text.startswith("Call outcome: refund agreed") and note.author == agent


def test_a_reply_after_calls_goes_by_sms_or_the_last_written_channel(client, voice_inbox, sms_inbox):
    from tickets.services import reply

    agent = AgentFactory(username="ana")
    twiml(incoming(client, voice_inbox))
    ticket = Ticket.objects.get()
    first = reply(ticket=ticket, author=agent, body="Sorry we missed you — we will call at 3.")
    assert (first.channel, first.inbox_id) == ("sms", sms_inbox.pk)
    with _capture(execute=True):
        ingest(inbound(sms_inbox, address=CALLER, channel=Channel.WHATSAPP, text="On WhatsApp now"))
    twiml(incoming(client, voice_inbox, sid="CA2"))  # a later call does not change the written channel
    assert reply(ticket=ticket, author=agent, body="Noted.").channel == "whatsapp"


def test_unknown_events_and_calls_are_clear(client, voice_inbox):
    assert hook(client, voice_inbox, {"CallSid": "CA9"}, event="nonsense").status_code == 400
    # a callback for a call we never saw is acknowledged and ignored
    twiml(hook(client, voice_inbox, {"CallSid": "CA9", "CallStatus": "completed"}, status_path=True))
    assert not Call.objects.exists()


def test_the_phone_system_api_path_still_works_beside_voice(client, voice_inbox, api):
    """Another telephony system: screen-pop lookup by phone and a message through the REST API."""
    twiml(incoming(client, voice_inbox))
    ticket = Ticket.objects.get()
    found = api.get("/api/v1/customers/", {"phone": "+48 600 100 200"}).json()["results"]
    assert [c["id"] for c in found] == [ticket.customer_id]
    created = api.post(
        "/api/v1/tickets/",
        {
            "subject": "Call from the PBX",
            "body": "Logged by the phone system",
            "customer": {"phone": "+48 600 100 200"},
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["customer"]["id"] == ticket.customer_id
    note = api.post(f"/api/v1/tickets/{ticket.pk}/messages/", {"body": "Outcome: refund agreed", "internal": True},
                    format="json")  # fmt: skip
    assert note.status_code == 201, note.content
    assert ticket.messages.filter(direction="note", body_text="Outcome: refund agreed").exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_call_delivered_five_times_at_once_is_one_call(voice_inbox):
    import threading

    from django.db import connections
    from django.test import Client

    agent_with_phone("ana", number="+48500000001")
    team = TeamFactory(name="Support")
    team.members.add(*AgentPhone.objects.values_list("user", flat=True))
    voice_inbox.default_team = team
    voice_inbox.save()
    barrier, answers = threading.Barrier(5), []

    def ring():
        try:
            barrier.wait()
            answers.append(incoming(Client(), voice_inbox, sid="CArace"))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ring) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.content for a in answers} == {answers[0].content} and b"+48500000001" in answers[0].content
    assert Call.objects.count() == 1 and Message.objects.count() == 1
    assert TicketEvent.objects.filter(kind="call").count() == 1
