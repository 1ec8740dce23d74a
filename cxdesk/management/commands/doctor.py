"""`manage.py doctor`: check the configuration and the services, and say what to fix.

Each line is OK, WARN or ERROR with the fix. Exit status 1 if any ERROR.
--offline skips what needs the network (PUBLIC_URL, providers' APIs); --workers also
checks that a Celery worker takes a task within --timeout seconds.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from cxdesk import health

OK, WARN, ERROR = "OK", "WARN", "ERROR"


class Command(BaseCommand):
    help = "Check configuration and services (database, Redis, broker, providers' webhooks) and say what to fix."

    def add_arguments(self, parser):
        parser.add_argument("--offline", action="store_true", help="skip checks that need the network")
        parser.add_argument("--workers", action="store_true", help="also check that a Celery worker answers")
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args, **options):
        self.results: list[tuple[str, str, str]] = []
        self.check_settings()
        self.check_services()
        if options["workers"]:
            self.check_workers(options["timeout"])
        self.check_beat()
        if not options["offline"]:
            self.check_public_url(options["timeout"])
        self.check_inboxes(online=not options["offline"])
        styles = {OK: self.style.SUCCESS, WARN: self.style.WARNING, ERROR: self.style.ERROR}
        for level, name, text in self.results:
            self.stdout.write(f"{styles[level](level.ljust(5))} {name}: {text}")
        errors = sum(1 for level, _, _ in self.results if level == ERROR)
        warnings = sum(1 for level, _, _ in self.results if level == WARN)
        self.stdout.write(f"{errors} error(s), {warnings} warning(s)")
        if errors:
            raise CommandError(f"doctor found {errors} problem(s) to fix")

    def add(self, level: str, name: str, text: str) -> None:
        self.results.append((level, name, text))

    # --- configuration ------------------------------------------------------------------

    def check_settings(self) -> None:
        key = settings.SECRET_KEY
        if settings.DEBUG:
            self.add(ERROR, "DEBUG", "DEBUG is on: never in production. Unset DEBUG (or DEBUG=0).")
        else:
            self.add(OK, "DEBUG", "off")
        if key.startswith(("insecure", "django-insecure")) or len(key) < 50 or len(set(key)) < 5:
            self.add(
                ERROR,
                "SECRET_KEY",
                "too short or a development key. Set SECRET_KEY to 50+ random characters: "
                "python -c 'import secrets; print(secrets.token_urlsafe(50))'",
            )
        else:
            self.add(OK, "SECRET_KEY", "set")
        public = urlparse(settings.PUBLIC_URL)
        hosts = settings.ALLOWED_HOSTS
        if "*" in hosts:
            self.add(WARN, "ALLOWED_HOSTS", "'*' accepts any Host header; list your host names instead.")
        if public.hostname and not _host_allowed(public.hostname, hosts):
            self.add(
                ERROR,
                "ALLOWED_HOSTS",
                f"PUBLIC_URL's host {public.hostname!r} is not in ALLOWED_HOSTS {hosts}: add it (ALLOWED_HOSTS=…).",
            )
        elif public.hostname:
            self.add(OK, "ALLOWED_HOSTS", ", ".join(hosts))
        if public.scheme != "https" and public.hostname not in ("127.0.0.1", "localhost"):
            self.add(WARN, "PUBLIC_URL", f"{settings.PUBLIC_URL} is not https: put TLS in front (docs/deploy.md).")
        if public.scheme == "https":
            origin = f"{public.scheme}://{public.netloc}"
            if not getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
                self.add(
                    WARN,
                    "SECURE_PROXY_SSL_HEADER",
                    "unset: behind a TLS proxy Django sees http. Set SECURE_PROXY_SSL_HEADER=1 (make serve does).",
                )
            if origin not in settings.CSRF_TRUSTED_ORIGINS and not settings.USE_X_FORWARDED_HOST:
                self.add(WARN, "CSRF_TRUSTED_ORIGINS", f"add {origin} (CSRF_TRUSTED_ORIGINS={origin}).")
        backend = settings.EMAIL_BACKEND.rsplit(".", 1)[0]
        if backend.endswith(("filebased", "locmem", "console", "dummy")):
            self.add(
                WARN,
                "email",
                f"mail is not sent ({settings.EMAIL_BACKEND}): set EMAIL_URL=smtp://user:pass@host:587/?tls=True "
                "or an ESP backend.",
            )
        else:
            self.add(OK, "email", settings.EMAIL_BACKEND)
        if not settings.CXDESK_METRICS_TOKEN:
            self.add(WARN, "metrics", "CXDESK_METRICS_TOKEN is unset: /metrics answers 404 to everyone.")

    # --- services ---------------------------------------------------------------------

    def check_services(self) -> None:
        fixes = {
            "database": "check DATABASE_URL and that PostgreSQL is running",
            "migrations": "run: python manage.py migrate",
            "redis": "check REDIS_URL and that Redis is running",
            "broker": "check CELERY_BROKER_URL (default REDIS_URL)",
        }
        for name, result in health.run_checks().items():
            if result["ok"]:
                default = "all applied" if name == "migrations" else "reachable"
                self.add(OK if "note" not in result else WARN, name, result.get("note", default))
            else:
                self.add(ERROR, name, f"{result['error']} — {fixes[name]}")

    def check_workers(self, timeout: float) -> None:
        if settings.CELERY_TASK_ALWAYS_EAGER or not settings.REDIS_URL:
            self.add(WARN, "workers", "tasks run eagerly (no broker): fine for one process, not for production.")
            return
        from cxdesk.diagnostics import PROBE_KEY, probe

        token = uuid.uuid4().hex
        probe.delay(token)
        client = health.redis_client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = client.lrange(PROBE_KEY.format(token=token), 0, -1)
            if answer:
                self.add(OK, "workers", f"a worker answered ({answer[0]})")
                return
            time.sleep(0.2)
        self.add(ERROR, "workers", f"no Celery worker took a task in {timeout:.0f}s: start one (make worker).")

    def check_beat(self) -> None:
        if not settings.REDIS_URL:
            return
        age = health.beat_age()
        every = settings.CELERY_BEAT_SCHEDULE["beat-heartbeat"]["schedule"]
        if age is None:
            self.add(WARN, "beat", "no heartbeat from Celery beat yet: run exactly one `celery -A cxdesk beat`.")
        elif age > 3 * every + 30:
            self.add(ERROR, "beat", f"last heartbeat {age:.0f}s ago: is beat (and a worker) running?")
        else:
            self.add(OK, "beat", f"heartbeat {age:.0f}s ago")

    def check_public_url(self, timeout: float) -> None:
        url = f"{settings.PUBLIC_URL}/healthz"
        try:
            response = requests.get(url, timeout=timeout)
        except requests.RequestException as exc:
            self.add(
                ERROR, "PUBLIC_URL", f"{url} unreachable ({type(exc).__name__}): providers cannot reach us either."
            )
            return
        if response.status_code != 200:
            self.add(ERROR, "PUBLIC_URL", f"{url} answered {response.status_code}: check the proxy and ALLOWED_HOSTS.")
        else:
            self.add(OK, "PUBLIC_URL", f"{url} answers")

    # --- inboxes ------------------------------------------------------------------------

    def check_inboxes(self, *, online: bool) -> None:
        from django.apps import apps

        inbox_model = apps.get_model("tickets", "Inbox")
        for inbox in inbox_model.objects.filter(is_active=True).order_by("pk"):
            name = f"inbox {inbox.name!r} ({inbox.kind})"
            try:
                adapter = inbox.adapter
            except LookupError:
                self.add(ERROR, name, f"no adapter for kind {inbox.kind!r}: deactivate the inbox or fix its kind.")
                continue
            problems = adapter.validate_settings(inbox.config, inbox.secrets)
            if problems:
                self.add(ERROR, name, "settings: " + "; ".join(problems))
            if inbox.transport == inbox.Transport.FILE:
                self.add(WARN, name, "development transport: replies are written to var/outbox, not sent.")
            expected = adapter.webhook_url(inbox)
            if not expected or not online:
                continue
            try:
                actual = adapter.registered_webhook(inbox)
            except NotImplementedError:
                self.add(OK, name, f"set its webhook to {expected} in the provider's console (cannot be asked).")
                continue
            except Exception as exc:  # noqa: BLE001 - any provider failure is a finding
                self.add(ERROR, name, f"could not ask the provider: {exc}")
                continue
            if actual != expected:
                self.add(ERROR, name, f"the provider calls {actual or 'nothing'}; point its webhook at {expected}")
            else:
                self.add(OK, name, f"webhook points at {expected}")


def _host_allowed(host: str, allowed: list[str]) -> bool:
    from django.http.request import validate_host

    return validate_host(host, allowed)
