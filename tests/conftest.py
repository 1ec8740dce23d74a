import pytest


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Attachments, outbox files and mail go to a per-test folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CXDESK_OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CXDESK_OUTBOX_EAGER_SWEEP = False  # tests sweep explicitly (tests/outbox)
    from cxdesk.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    from cxdesk.realtime import clear_sent_events

    clear_sent_events()


@pytest.fixture
def email_inbox(db):
    from tests.channels_app.factories import InboxFactory

    return InboxFactory(kind="email", name="Support", config={"address": "support@example.com"})


@pytest.fixture
def sms_inbox(db):
    from tests.channels_app.factories import InboxFactory

    return InboxFactory(kind="twilio", name="SMS", config={"default_region": "PL"}, transport="file")


@pytest.fixture
def agent(db):
    from tests.tickets.factories import AgentFactory

    return AgentFactory(username="ana", first_name="Ana")
