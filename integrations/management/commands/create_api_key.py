from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cxdesk.errors import ApplicationError
from integrations.services import api_key_create


class Command(BaseCommand):
    help = "create_api_key USERNAME [--name NAME] [--scope read|read_write]: prints a new API key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="API key")
        parser.add_argument("--scope", default="read_write", choices=["read", "read_write"])

    def handle(self, *args, username, name, scope, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            _, key = api_key_create(user=user, name=name, scope=scope)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(key)
