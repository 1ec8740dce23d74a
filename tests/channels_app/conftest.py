"""Fixtures shared by the channel tests."""

import pytest

from channels_app.models import Inbox
from tests.channels_app.factories import InboxFactory

SID = "AC0123456789abcdef0123456789abcdef"


@pytest.fixture
def twilio_inbox(settings):
    settings.PUBLIC_URL = "https://example.com"
    # The vectors (tests/data/webhooks/twilio/vectors.json) were signed for https://example.com/hooks/twilio/3/
    return InboxFactory(
        id=3,
        kind="twilio",
        name="Twilio",
        config={"account_sid": SID, "phone_number": "+15005550006", "default_region": "PL"},
        transport=Inbox.Transport.LIVE,
        secrets={"auth_token": "12345"},
    )
