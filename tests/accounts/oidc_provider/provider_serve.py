"""Create the provider's tables, users and the cxdesk client, then serve:
python provider_serve.py REDIRECT_URI HOST:PORT (one process: one Django start-up)."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provider_settings")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402

call_command("migrate", verbosity=0, interactive=False, run_syncdb=True)
for username, email, last in (
    ("ana.idp", "Ana@cxdesk.test", "Kowalska"),  # a desk agent (case differs on purpose)
    ("stranger", "stranger@cxdesk.test", "Nobody"),  # no desk account
    ("liar", "boss@cxdesk.test", "unverified"),  # claims the boss's address, not verified
):
    User.objects.create_user(username, email=email, password="idp-pw", first_name=username, last_name=last)
Application.objects.create(
    name="cxdesk",
    client_id="cxdesk-test",
    client_secret="cxdesk-secret",  # noqa: S106
    client_type=Application.CLIENT_CONFIDENTIAL,
    authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
    redirect_uris=sys.argv[1],
    algorithm=Application.RS256_ALGORITHM,
    skip_authorization=True,
)
call_command("runserver", sys.argv[2], use_reloader=False)
