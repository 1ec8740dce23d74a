import pytest


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Attachments, outbox files and mail go to a per-test folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CXDESK_OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Tests run inside a transaction whose commit hooks do not fire, so the webhook tests ingest
    # in the request; the queued path has its own (tests/channels_app/test_webhook_queue.py,
    # and the integration tests' real workers run the production default).
    settings.CXDESK_WEBHOOKS = "inline"
    settings.CXDESK_OUTBOX_EAGER_SWEEP = False  # tests sweep explicitly (tests/outbox)
    from cxdesk.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = False
    from django.core.cache import cache

    from integrations.throttling import _keys

    cache.delete_many(_keys("127.0.0.1"))  # API-key guess counters do not leak between tests


@pytest.fixture(autouse=True)
def _nothing_kept():
    """The configuration a process keeps (`cxdesk.memo.kept`) is read afresh by each test: the
    previous test's rows were rolled back without a write this process could see."""
    from cxdesk.memo import kept_clear

    kept_clear()


@pytest.fixture(autouse=True)
def _default_language(settings):
    """Each test starts in the site's language (a view that activated a customer's language
    in an earlier test, in this thread, must not leak into the next)."""
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _record_broadcasts(monkeypatch):
    """Every live event published during the test, readable with tests.sockets.sent_events()."""
    from cxdesk import realtime
    from tests.sockets import SENT

    SENT.clear()
    publish = realtime.publish

    def recording(*messages):
        SENT.extend(messages)
        publish(*messages)

    monkeypatch.setattr(realtime, "publish", recording)


PUBLIC_TEST_ADDRESS = "93.184.215.14"  # a public address; nothing connects to it (responses intercepts)


@pytest.fixture(autouse=True)
def _fake_dns(monkeypatch):
    """The outside world's DNS: names resolve to a public address (provider calls are mocked
    with `responses`); IP literals and localhost resolve for real, so SSRF checks see them."""
    import ipaddress
    import socket

    from cxdesk import http

    def resolve(host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host.lower() not in ("localhost", "localhost.localdomain"):
                return [PUBLIC_TEST_ADDRESS]
        return list(dict.fromkeys(i[4][0] for i in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))

    monkeypatch.setattr(http, "resolve", resolve)


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


@pytest.fixture
def desk(agent):
    """A test client signed in as `agent` (kept on it as `.agent`)."""
    from django.test import Client

    client = Client()
    client.force_login(agent)
    client.agent = agent
    return client


@pytest.fixture
def in_memory_layers(settings):
    """In-memory channel layer and cache for consumer tests (use with `autouse` wrappers)."""
    from django.core.cache import cache

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _no_stray_connections_at_the_end(django_db_setup, django_db_blocker):
    """Persistent connections (CONN_MAX_AGE, as in production) held by threads the suite
    started — live servers, asgiref's worker thread — would keep the test database from being
    dropped at the end; they are ended first."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
