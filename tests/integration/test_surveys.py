import pytest

from channels_app.services import ingest
from surveys.models import SurveyResponse
from tests.channels_app.factories import InboxFactory, email_inbound
from tickets.models import Message
from tickets.services import ticket_set_status

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_survey_goes_out_through_the_real_worker(celery_worker_process, agent, tmp_path):
    celery_worker_process(
        extra_env={
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        }
    )
    inbox = InboxFactory(kind="email", name="Support", config={"address": "support@example.com", "auto_ack": "false"})
    ticket = ingest(email_inbound(inbox, address="i@example.com")).ticket
    ticket_set_status(ticket=ticket, status="solved", actor=agent)
    survey = wait_for(lambda: SurveyResponse.objects.filter(ticket=ticket).first(), message="the survey task")
    message = wait_for(
        lambda: Message.objects.filter(ticket=ticket, metadata__survey=True, status="sent").first(),
        message="the survey mail",
    )
    assert survey.channel == "email"
    files = list((tmp_path / "mail").glob("*.log"))
    assert any("How did we do" in f.read_text() for f in files)
    assert message.direction == "outbound"
