import json
from io import StringIO

import pytest
import responses
from django.core.management import call_command

from channels_app.models import Inbox
from tests import DATA
from tickets.models import Attachment, Message

pytestmark = pytest.mark.django_db

BOT = "123456:ABC-test"


@pytest.fixture
def tg_inbox():
    from tests.channels_app.factories import InboxFactory

    return InboxFactory(
        kind="telegram", name="Telegram", transport=Inbox.Transport.LIVE,
        secrets={"bot_token": BOT, "secret_token": "s3cr3t-token"},
    )  # fmt: skip


def post(client, inbox, raw: bytes, token="s3cr3t-token"):
    headers = {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": token} if token is not None else {}
    return client.post(f"/hooks/telegram/{inbox.pk}/", data=raw, content_type="application/json", **headers)


def test_text_update_lands_once_with_name(client, tg_inbox):
    raw = (DATA / "webhooks/telegram/text.json").read_bytes()
    for _ in range(5):
        assert post(client, tg_inbox, raw).status_code == 200
    message = Message.objects.get()
    assert message.body_text == "Добрый день! Посылка 4711 так и не пришла"
    assert message.channel == "telegram"
    assert message.identity.kind == "telegram"
    assert message.identity.address == "7001002003"
    assert message.identity.customer.name == "Иван Петров"
    assert message.provider_message_id == "880000001"


def test_wrong_or_missing_secret_is_403(client, tg_inbox):
    raw = (DATA / "webhooks/telegram/text.json").read_bytes()
    assert post(client, tg_inbox, raw, token="guess").status_code == 403
    assert post(client, tg_inbox, raw, token=None).status_code == 403
    assert Message.objects.count() == 0


def test_malformed_and_unknown_updates(client, tg_inbox):
    assert post(client, tg_inbox, b"[]").status_code == 400
    assert post(client, tg_inbox, b"nope").status_code == 400
    edited = json.dumps({"update_id": 9, "edited_message": {"text": "x"}}).encode()
    assert post(client, tg_inbox, edited).status_code == 200
    assert Message.objects.count() == 0


@responses.activate
def test_photo_takes_the_largest_size_and_is_downloaded(client, tg_inbox, django_capture_on_commit_callbacks):
    responses.get(
        f"https://api.telegram.org/bot{BOT}/getFile",
        json={"ok": True, "result": {"file_id": "OWN-PHOTO-large", "file_path": "photos/file_1.jpg"}},
    )
    responses.get(f"https://api.telegram.org/file/bot{BOT}/photos/file_1.jpg", body=b"PHOTO", content_type="image/jpeg")
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, tg_inbox, (DATA / "webhooks/telegram/photo.json").read_bytes()).status_code == 200
    assert "file_id=OWN-PHOTO-large" in responses.calls[0].request.url
    att = Attachment.objects.get()
    assert att.file.read() == b"PHOTO"
    assert Message.objects.get().body_text == "Вот коробка"


@responses.activate
def test_reply_goes_out_by_send_message(client, tg_inbox, agent, django_capture_on_commit_callbacks):
    from tickets.services import reply

    post(client, tg_inbox, (DATA / "webhooks/telegram/text.json").read_bytes())
    responses.post(f"https://api.telegram.org/bot{BOT}/sendMessage", json={"ok": True, "result": {"message_id": 77}})
    with django_capture_on_commit_callbacks(execute=True):
        out = reply(ticket=Message.objects.get().ticket, author=agent, body="Проверяем!")
    assert json.loads(responses.calls[0].request.body) == {"chat_id": "7001002003", "text": "Проверяем!"}
    out.refresh_from_db()
    assert out.status == "sent"


@responses.activate
def test_set_webhook_command(tg_inbox, settings):
    settings.PUBLIC_URL = "https://desk.example.com"
    responses.post(
        f"https://api.telegram.org/bot{BOT}/setWebhook",
        json={"ok": True, "result": True, "description": "Webhook was set"},
    )
    out = StringIO()
    call_command("telegram_set_webhook", "Telegram", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed == {
        "inbox": "Telegram",
        "url": f"https://desk.example.com/hooks/telegram/{tg_inbox.pk}/",
        "ok": True,
        "description": "Webhook was set",
    }
    sent = json.loads(responses.calls[0].request.body)
    assert sent["url"] == printed["url"]
    assert sent["secret_token"] == "s3cr3t-token"
    assert BOT not in out.getvalue()
