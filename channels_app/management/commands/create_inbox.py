import json

from django.core.management.base import BaseCommand, CommandError

from channels_app.services import inbox_upsert
from cxdesk.errors import ApplicationError


class Command(BaseCommand):
    help = "Create or update an inbox: create_inbox KIND NAME [--set key=value]… (secrets are never printed)."

    def add_arguments(self, parser):
        parser.add_argument("kind")
        parser.add_argument("name")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="values")

    def handle(self, *args, kind, name, values, **options):
        settings = {}
        for item in values:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--set takes key=value, got {item!r}")
            settings[key.strip()] = value
        try:
            inbox = inbox_upsert(kind=kind, name=name, values=settings)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        data = {"id": inbox.pk, "name": inbox.name, "kind": inbox.kind}
        embed = inbox.adapter.embed(inbox)
        if embed is None:
            data["webhook_url"] = inbox.adapter.webhook_url(inbox)
        else:
            data["embed"] = embed
        self.stdout.write(json.dumps(data))
