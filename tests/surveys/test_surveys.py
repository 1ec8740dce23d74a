import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from channels_app.services import ingest
from surveys.models import SurveyResponse
from tests.channels_app.factories import email_inbound, inbound
from tickets.models import Message
from tickets.services import reply, ticket_set_status

pytestmark = pytest.mark.django_db


def solve(ticket, agent, capture):
    with capture(execute=True):
        reply(ticket=ticket, author=agent, body="Done!")
        ticket_set_status(ticket=ticket, status="solved", actor=agent)


def test_solving_an_email_ticket_sends_a_one_click_survey(email_inbox, agent, django_capture_on_commit_callbacks):
    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    ticket = ingest(email_inbound(email_inbox, address="s@example.com", subject="Broken")).ticket
    solve(ticket, agent, django_capture_on_commit_callbacks)
    survey = SurveyResponse.objects.get(ticket=ticket)
    mail_msg = mail.outbox[-1]
    assert mail_msg.extra_headers["Auto-Submitted"] == "auto-replied"
    link = re.search(r"http://127\.0\.0\.1:8000(/survey/[^/\s]+/)\?csat=4", mail_msg.body).group(1)
    client = Client()
    page = client.get(link, {"csat": 4})
    assert page.status_code == 200
    survey.refresh_from_db()
    assert survey.csat == 4
    client.post(link, {"csat": "5", "ces": "6", "comment": "quick and kind"})
    survey.refresh_from_db()
    assert (survey.csat, survey.ces, survey.comment) == (5, 6, "quick and kind")
    assert client.post(link, {"csat": "9"}).status_code == 400
    # changes are allowed for 7 days only
    SurveyResponse.objects.filter(pk=survey.pk).update(answered_at=timezone.now() - timedelta(days=8))
    assert client.post(link, {"csat": "1"}).status_code == 400
    survey.refresh_from_db()
    assert survey.csat == 5
    assert Client().get("/survey/not-a-token/").status_code == 404
    # the ticket's first response is the agent's reply, not the survey
    assert Message.objects.filter(ticket=ticket, metadata__survey=True).count() == 1


def test_one_survey_per_ticket_and_sms_gets_a_short_text(
    sms_inbox, agent, django_capture_on_commit_callbacks, settings
):
    ticket = ingest(inbound(sms_inbox, address="+48600100222", text="help")).ticket
    solve(ticket, agent, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        ticket_set_status(ticket=ticket, status="open", actor=agent)
        ticket_set_status(ticket=ticket, status="solved", actor=agent)
    assert SurveyResponse.objects.filter(ticket=ticket).count() == 1
    text = Message.objects.get(ticket=ticket, metadata__survey=True)
    assert text.channel == "sms"
    assert "/survey/" in text.body_text
    assert len(text.body_text) < 160


def test_survey_shows_in_desk_360_and_api(email_inbox, agent, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    from integrations.services import api_key_create

    email_inbox.config["auto_ack"] = "false"
    email_inbox.save()
    ticket = ingest(email_inbound(email_inbox, address="t@example.com")).ticket
    solve(ticket, agent, django_capture_on_commit_callbacks)
    SurveyResponse.objects.filter(ticket=ticket).update(csat=2, ces=3, answered_at=timezone.now(), comment="slow")
    desk = Client()
    desk.force_login(agent)
    assert "CSAT 2/5" in desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert (
        "<b>2.0/5</b><span>satisfaction</span>" in desk.get(f"/desk/customers/{ticket.customer_id}/").content.decode()
    )
    _, key = api_key_create(user=agent, name="k")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get(f"/api/v1/tickets/{ticket.pk}/").json()["satisfaction"]["csat"] == 2
