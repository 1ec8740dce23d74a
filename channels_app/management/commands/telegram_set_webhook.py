import json
import secrets

from django.core.management.base import BaseCommand, CommandError

from channels_app.models import Inbox
from channels_app.services import inbox_upsert
from channels_app.types import SendError


class Command(BaseCommand):
    help = "Register a Telegram inbox's webhook with the Bot API (creates a secret_token if none is set)."

    def add_arguments(self, parser):
        parser.add_argument("inbox", help="Telegram inbox name")
        parser.add_argument("--url", help="Webhook URL (default: PUBLIC_URL/hooks/telegram/<id>/)")

    def handle(self, *args, inbox: str, url: str | None = None, **options):
        box = Inbox.objects.filter(name=inbox, kind="telegram").first()
        if box is None:
            raise CommandError(f"no telegram inbox named {inbox!r}")
        if not box.secrets.get("secret_token"):
            box = inbox_upsert(
                kind="telegram", name=box.name, values={"secret_token": secrets.token_urlsafe(24).replace("_", "-")}
            )
        target = url or box.adapter.webhook_url(box)
        try:
            result = box.adapter.set_webhook(box, target)
        except SendError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            json.dumps(
                {
                    "inbox": box.name,
                    "url": target,
                    "ok": bool(result.get("ok")),
                    "description": result.get("description", ""),
                }
            )
        )
