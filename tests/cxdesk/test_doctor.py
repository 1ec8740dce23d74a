from io import StringIO

import pytest
import responses
from django.core.management import CommandError, call_command

from tests.channels_app.factories import InboxFactory

pytestmark = pytest.mark.django_db

GOOD_KEY = "k3Y-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP"


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.SECRET_KEY = GOOD_KEY
    settings.PUBLIC_URL = "https://desk.example.com"
    settings.ALLOWED_HOSTS = ["desk.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CSRF_TRUSTED_ORIGINS = ["https://desk.example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.CXDESK_METRICS_TOKEN = "t"
    settings.REDIS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    return settings


def run(*args) -> tuple[str, bool]:
    out = StringIO()
    try:
        call_command("doctor", *args, stdout=out)
    except CommandError:
        return out.getvalue(), False
    return out.getvalue(), True


def _twilio(sms_url: str):
    responses.get(
        "https://api.twilio.com/2010-04-01/Accounts/AC123/IncomingPhoneNumbers.json",
        json={"incoming_phone_numbers": [{"phone_number": "+15005550006", "sms_url": sms_url}]},
    )


@responses.activate
def test_a_healthy_production_config_passes(production):
    responses.get("https://desk.example.com/healthz", json={"status": "ok"})
    inbox = InboxFactory(
        kind="twilio",
        name="SMS",
        config={"account_sid": "AC123", "phone_number": "+15005550006"},
        secrets={"auth_token": "tok"},
    )
    _twilio(f"https://desk.example.com/hooks/twilio/{inbox.pk}/")
    text, ok = run()
    assert ok, text
    assert "ERROR" not in text
    assert f"webhook points at https://desk.example.com/hooks/twilio/{inbox.pk}/" in text


@responses.activate
def test_it_says_what_to_fix(production, settings):
    settings.DEBUG = True
    settings.SECRET_KEY = "insecure-dev-key-only-for-debug"
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    responses.get("https://desk.example.com/healthz", status=502)
    InboxFactory(
        kind="twilio",
        name="SMS",
        config={"account_sid": "AC123", "phone_number": "+15005550006"},
        secrets={"auth_token": "tok"},
    )
    _twilio("https://old-host.example.net/sms")
    InboxFactory(kind="telegram", name="Bot", config={}, secrets={"bot_token": "123:abc", "secret_token": "s" * 20})
    responses.post("https://api.telegram.org/bot123:abc/getWebhookInfo", json={"ok": True, "result": {"url": ""}})
    text, ok = run()
    assert not ok
    assert "ERROR DEBUG" in text
    assert "ERROR SECRET_KEY" in text and "token_urlsafe" in text
    assert "ERROR ALLOWED_HOSTS" in text and "'desk.example.com'" in text
    assert "WARN  email" in text and "EMAIL_URL" in text
    assert "ERROR PUBLIC_URL" in text and "502" in text
    assert "the provider calls https://old-host.example.net/sms; point its webhook at" in text
    assert "inbox 'Bot' (telegram): the provider calls nothing" in text


def test_services_down_are_errors_with_the_fix(production, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    text, ok = run("--offline")
    assert not ok
    assert "ERROR redis" in text and "check REDIS_URL" in text
    assert "OK    database" in text
