import json
import logging
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cxdesk import health, metrics, observability, retention

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_names_each_check(client, settings):
    settings.REDIS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "migrations", "redis", "broker"}
    assert all(c["ok"] for c in body["checks"].values())


def test_readyz_is_503_and_says_which_failed(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CXDESK_METRICS_TOKEN = "ops-token"
    public = client.get("/readyz")
    assert public.status_code == 503
    assert public.json()["checks"]["redis"] == {"ok": False}  # which, but no hosts or errors
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer ops-token")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]
    assert body["checks"]["broker"]["ok"] is False


def test_readyz_reports_unapplied_migrations(monkeypatch):
    class Executor:
        def __init__(self, connection):
            self.loader = type("L", (), {"graph": type("G", (), {"leaf_nodes": lambda self: []})()})()

        def migration_plan(self, targets):
            return [(type("M", (), {"app_label": "tickets", "name": "0099_new"})(), False)]

    monkeypatch.setattr("django.db.migrations.executor.MigrationExecutor", Executor)
    result = health.run_checks({"migrations": health.check_migrations})
    assert result["migrations"]["ok"] is False
    assert "tickets.0099_new" in result["migrations"]["error"]
    assert "migrate" in result["migrations"]["error"]


def test_metrics_are_hidden_without_the_token(client, settings):
    settings.CXDESK_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.CXDESK_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404


def test_metrics_count_the_desk(client, settings, sms_inbox):
    from channels_app.models import RawInbound
    from channels_app.services import ingest
    from tests.channels_app.factories import inbound

    settings.CXDESK_METRICS_TOKEN = "s3cret-token"
    settings.CXDESK_METRICS_CACHE_SECONDS = 0
    cache.delete(metrics.INGESTED_KEY)
    ingest(inbound(sms_inbox))
    RawInbound.objects.create(source="webhook", payload=b"", sha256="x", status="failed")
    RawInbound.objects.create(source="webhook", payload=b"", sha256="y", status="pending")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'cxdesk_messages_ingested_total{channel="sms"} 1.0' in text
    assert 'cxdesk_dead_letters{source="webhook"} 1.0' in text
    assert 'cxdesk_inbound_pending{source="webhook"} 1.0' in text
    assert "cxdesk_sla_breaches_total" in text
    assert "cxdesk_webhook_deliveries" in text
    assert "django_http_requests_total_by_method_total" in text  # django-prometheus


@pytest.fixture
def ingested_state():
    cache.delete(metrics.INGESTED_KEY)
    yield
    cache.delete(metrics.INGESTED_KEY)


def test_ingested_counts_only_the_newest_ids_at_each_scrape(sms_inbox, monkeypatch, ingested_state):
    """Messages behind the newest INGESTED_LAG ids are counted once and kept; a scrape counts
    the rest over the primary key, never the whole table."""
    from channels_app.services import ingest
    from tests.channels_app.factories import inbound
    from tickets.models import Message

    monkeypatch.setattr(metrics, "INGESTED_LAG", 2)
    stored = [ingest(inbound(sms_inbox, address=f"+4860010020{i}", text=f"m{i}")).message for i in range(5)]
    Message.objects.filter(pk=stored[-1].pk).update(channel="whatsapp")
    assert metrics._ingested(Message) == {"sms": 4, "whatsapp": 1}
    frozen = cache.get(metrics.INGESTED_KEY)["frozen"]
    assert stored[0].pk <= frozen < stored[-1].pk

    Message.objects.filter(pk=stored[0].pk).delete()  # retention: gone, but it was ingested
    with CaptureQueriesContext(connection) as queries:
        assert metrics._ingested(Message) == {"sms": 4, "whatsapp": 1}
    live = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert len(live) == 1 and '"tickets_message"."id" >' in live[0], "only the ids after the frozen one"
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + live[0])
            plan = " ".join(row[0] for row in cursor.fetchall())
        assert "tickets_message_pkey" in plan, plan

    ingest(inbound(sms_inbox, address="+48600100299", text="later"))
    assert metrics._ingested(Message) == {"sms": 5, "whatsapp": 1}

    cache.delete(metrics.INGESTED_KEY)  # the cache lost it: everything is counted once more
    assert metrics._ingested(Message) == {"sms": 4, "whatsapp": 1}


def test_breaches_are_counted_from_an_index_of_the_breached_only():
    from sla.models import TicketSla

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL: the plan is PostgreSQL's")
    for target in ("first_response", "resolution"):
        with CaptureQueriesContext(connection) as queries:
            TicketSla.objects.filter(**{f"{target}_breached_at__isnull": False}).count()
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + queries.captured_queries[-1]["sql"])
            plan = " ".join(row[0] for row in cursor.fetchall())
        assert f"sla_{'frt' if target == 'first_response' else 'res'}_breached_idx" in plan, plan


def test_request_id_is_echoed_and_generated(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="abc12345-from-proxy")
    assert given["X-Request-ID"] == "abc12345-from-proxy"
    made = client.get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")
    assert made["X-Request-ID"] != "bad id with spaces"
    assert len(made["X-Request-ID"]) == 32


def test_json_log_lines_carry_the_request_id():
    formatter = observability.JsonFormatter()
    token = observability.request_id_var.set("req-12345678")
    try:
        record = logging.LogRecord("cxdesk.test", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
        observability.RequestIdFilter().filter(record)
        record.inbox = 7
    finally:
        observability.request_id_var.reset(token)
    line = json.loads(formatter.format(record))
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-12345678"
    assert line["level"] == "WARNING"
    assert line["inbox"] == 7


def test_request_id_rides_in_celery_task_headers():
    headers: dict = {}
    token = observability.request_id_var.set("req-abcdefgh")
    try:
        observability._before_publish(headers=headers)
    finally:
        observability.request_id_var.reset(token)
    assert headers == {observability.CELERY_HEADER: "req-abcdefgh"}

    task = type("T", (), {"request": type("R", (), {observability.CELERY_HEADER: "req-abcdefgh"})()})()
    observability._task_prerun(task_id="t1", task=task)
    assert observability.get_request_id() == "req-abcdefgh"
    observability._task_postrun(task_id="t1")
    assert observability.get_request_id() == "-"


def test_retention_deletes_only_expired_processed_rows(settings):
    from channels_app.models import RawInbound

    settings.CXDESK_RETAIN_RAW_INBOUND_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    kept_failed = RawInbound.objects.create(source="webhook", payload=b"", sha256="a", status="failed")
    kept_recent = RawInbound.objects.create(source="webhook", payload=b"", sha256="b", status="processed")
    gone = RawInbound.objects.create(source="webhook", payload=b"", sha256="c", status="processed")
    RawInbound.objects.filter(pk__in=[kept_failed.pk, gone.pk]).update(created_at=old)
    done = retention.purge()
    assert done["raw_inbound"] == 1
    assert set(RawInbound.objects.values_list("pk", flat=True)) == {kept_failed.pk, kept_recent.pk}
    assert done["webhook_deliveries"] == 0
    assert done["activity_trail"] in ("skipped (no model)", 0)
