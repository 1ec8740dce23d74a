"""Health checks for load balancers, operators and `manage.py doctor`.

`/healthz`: the process answers (no database, no Redis) — a liveness probe.
`/readyz`: this node can serve — database reachable, migrations applied, Redis (cache and
channel layer) and the Celery broker reachable. JSON naming each check; 503 if one failed.
With `Authorization: Bearer $CXDESK_METRICS_TOKEN` each failed check carries its error:

    {"status": "fail", "checks": {"database": {"ok": true, "ms": 1.2}, "redis": {"ok": false,
     "error": "Error 111 connecting to 127.0.0.1:6379. Connection refused."}, ...}}

Beat's heartbeat and the queue depths are reported too, for information (a web node is
ready even when beat is down; `doctor` and the metrics say so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse

QUEUES = ("default", "inbound", "outbound", "webhooks")
BEAT_KEY = "cxdesk:beat:last"
TIMEOUT = 2.0


class CheckFailed(Exception):
    pass


def redis_client(url: str | None = None):
    import redis

    return redis.Redis.from_url(
        url or settings.REDIS_URL, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, decode_responses=True
    )


def check_database() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def check_migrations() -> dict[str, Any]:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = [f"{m.app_label}.{m.name}" for m, _backwards in plan]
        raise CheckFailed(f"{len(names)} migration(s) not applied: {', '.join(names[:5])} — run manage.py migrate")
    return {}


def check_redis() -> dict[str, Any]:
    if not settings.REDIS_URL:
        return {"note": "REDIS_URL not set: in-process cache and channel layer (one process only)"}
    redis_client().ping()
    return {}


def check_broker() -> dict[str, Any]:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"note": "tasks run eagerly inside the web process (no broker)"}
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        client = redis_client(url)
        client.ping()
        return {"queues": {q: client.llen(q) for q in QUEUES}}
    from cxdesk.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT)
    return {}


def beat_age() -> float | None:
    """Seconds since beat's last heartbeat (None: never seen, or no Redis)."""
    if not settings.REDIS_URL:
        return None
    try:
        last = redis_client().get(BEAT_KEY)
    except Exception:  # noqa: BLE001 - reported by check_redis
        return None
    return None if last is None else max(0.0, time.time() - float(last))


READY_CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "database": check_database,
    "migrations": check_migrations,
    "redis": check_redis,
    "broker": check_broker,
}


def run_checks(checks: dict[str, Callable[[], dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, check in (checks or READY_CHECKS).items():
        started = time.perf_counter()
        try:
            extra = check()
            results[name] = {"ok": True, **extra}
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none raised
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return results


def outbox_backlog() -> dict[str, Any]:
    """Pending work kept in the database (not a readiness failure by itself): how much is
    pending or failed, and how late the oldest due row is."""
    try:
        from django.utils import timezone

        from outbox.models import OutboxTask
        from outbox.services import backlog

        counts = backlog()
        oldest = (
            OutboxTask.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
            .order_by("next_attempt_at")
            .values_list("next_attempt_at", flat=True)
            .first()
        )
        lag = int((timezone.now() - oldest).total_seconds()) if oldest else 0
        return {"pending": counts.get("pending", 0), "failed": counts.get("failed", 0), "oldest_due_seconds": lag}
    except Exception as exc:  # noqa: BLE001 - information only
        return {"error": f"{type(exc).__name__}"}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Which checks failed for anyone (load balancers); the error texts, queue lengths and
    timings (host names, ports) only for the metrics token's bearer or with DEBUG."""
    from .metrics import authorized

    checks = run_checks()
    ok = all(c["ok"] for c in checks.values())
    if not (authorized(request) or settings.DEBUG):
        checks = {name: {"ok": c["ok"]} for name, c in checks.items()}
    age = beat_age()
    info = {"beat_heartbeat_age_seconds": None if age is None else round(age, 1), "outbox": outbox_backlog()}
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks, "info": info}, status=200 if ok else 503)
