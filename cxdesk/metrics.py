"""Prometheus metrics at `/metrics`, for a scraper with `Authorization: Bearer
$CXDESK_METRICS_TOKEN` (no token configured, or a wrong one: 404, as if it did not exist;
the proxy in deploy/ also refuses /metrics from outside unless the token is sent).

Two kinds of series:
- django-prometheus' request/DB/cache metrics of this node. Under gunicorn with several
  workers they are in prometheus_client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`,
  set by deploy/serve.py), so a scrape sums every worker of the node.
- the desk's own figures, computed at scrape time from PostgreSQL and Redis (so they are
  the same whichever node is scraped, and nothing is lost when a process restarts):
  cxdesk_messages_ingested_total{channel}, cxdesk_dead_letters{source}, cxdesk_inbound_pending{source},
  cxdesk_outbound_failed_total{channel}, cxdesk_webhook_deliveries{status},
  cxdesk_celery_queue_depth{queue}, cxdesk_websocket_connections,
  cxdesk_sla_breaches_total{target}, cxdesk_beat_heartbeat_age_seconds.
  The database counts are cached for CXDESK_METRICS_CACHE_SECONDS (default 15). None of
  them reads the tables that grow with the desk's history whole: the inbound total counts
  only the newest messages at each scrape (`_ingested`); the others read an index of what
  they count (pending and failed deliveries, failed messages, breached SLAs).
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import time
from collections import Counter

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse

log = logging.getLogger(__name__)
WS_KEY_PREFIX = "cxdesk:ws:conns:"
WS_TTL = 90


def authorized(request: HttpRequest) -> bool:
    token = settings.CXDESK_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def metrics(request: HttpRequest) -> HttpResponse:
    if not authorized(request):
        raise Http404
    import prometheus_client
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        node = CollectorRegistry()
        multiprocess.MultiProcessCollector(node)
    else:
        node = prometheus_client.REGISTRY
    desk = CollectorRegistry(auto_describe=False)
    desk.register(DeskCollector())
    body = generate_latest(node) + generate_latest(desk)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)


def _db_counts() -> dict:
    cache_seconds = int(getattr(settings, "CXDESK_METRICS_CACHE_SECONDS", 15))
    cached = cache.get("cxdesk:metrics:db") if cache_seconds else None
    if cached is not None:
        return cached
    message = apps.get_model("tickets", "Message")
    raw = apps.get_model("channels_app", "RawInbound")
    delivery = apps.get_model("integrations", "WebhookDelivery")
    ticket_sla = apps.get_model("sla", "TicketSla")
    counts = {
        "ingested": _ingested(message),
        "outbound_failed": dict(
            message.objects.filter(direction="outbound", status="failed")
            .values_list("channel")
            .annotate(n=Count("id"))
            .order_by()
        ),
        "dead_letters": dict(
            raw.objects.filter(status="failed").values_list("source").annotate(n=Count("id")).order_by()
        ),
        "inbound_pending": dict(
            raw.objects.filter(status="pending").values_list("source").annotate(n=Count("id")).order_by()
        ),
        "webhook_deliveries": dict(delivery.objects.values_list("status").annotate(n=Count("id")).order_by()),
        "sla_breaches": {
            "first_response": ticket_sla.objects.filter(first_response_breached_at__isnull=False).count(),
            "resolution": ticket_sla.objects.filter(resolution_breached_at__isnull=False).count(),
        },
    }
    if cache_seconds:
        cache.set("cxdesk:metrics:db", counts, cache_seconds)
    return counts


INGESTED_KEY = "cxdesk:metrics:ingested"
INGESTED_LAG = 20_000  # the newest message ids, counted afresh at each scrape


def _ingested(message) -> dict[str, int]:
    """Inbound messages ever stored, per channel, without reading the messages table whole
    (it grows with the desk's history: 2M messages took a 330 ms scan, every scrape).

    Messages up to an id `frozen` are counted once, and their counts kept in the cache with
    it, with no expiry; each scrape counts only the ids after it, over the primary key. The
    frozen id follows the newest one INGESTED_LAG ids behind, so a message whose id was drawn
    before the count but committed after it (a drainer's batch draws its ids first) is still
    among the ids counted afresh. What is frozen is never read again: a message deleted later
    (retention, erasure) stays counted, as a counter of events should. Should the cache lose
    the entry, the next scrape counts everything once more (the counter may then drop, which
    Prometheus takes as a reset)."""

    def counted(**ids) -> dict[str, int]:
        rows = message.objects.filter(direction="inbound", **ids).values_list("channel").annotate(n=Count("id"))
        return dict(rows.order_by())

    newest = message.objects.aggregate(newest=Max("id"))["newest"] or 0
    state = cache.get(INGESTED_KEY)
    if not state or state["frozen"] > newest:  # none yet, lost, or another database
        state = {"frozen": 0, "base": {}}
    frozen = newest - INGESTED_LAG
    if frozen > state["frozen"]:
        base = Counter(state["base"])
        base.update(counted(id__gt=state["frozen"], id__lte=frozen))
        state = {"frozen": frozen, "base": dict(base)}
        cache.set(INGESTED_KEY, state, timeout=None)
    totals = Counter(state["base"])
    totals.update(counted(id__gt=state["frozen"]))
    return dict(totals)


class DeskCollector:
    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from .health import QUEUES, beat_age, redis_client

        try:
            counts = _db_counts()
        except Exception:  # a scrape must still answer; /readyz says what is down
            log.exception("metrics: database counts failed")
            counts = {}
        families = [
            ("ingested", CounterMetricFamily, "cxdesk_messages_ingested", "Inbound messages stored", "channel"),
            ("outbound_failed", CounterMetricFamily, "cxdesk_outbound_failed", "Outbound messages failed", "channel"),
            ("dead_letters", GaugeMetricFamily, "cxdesk_dead_letters", "Inbound deliveries that failed", "source"),
            (
                "inbound_pending",
                GaugeMetricFamily,
                "cxdesk_inbound_pending",
                "Inbound deliveries stored and not yet ingested (queued webhooks waiting for a drainer)",
                "source",
            ),
            ("webhook_deliveries", GaugeMetricFamily, "cxdesk_webhook_deliveries", "Webhook deliveries", "status"),
            ("sla_breaches", CounterMetricFamily, "cxdesk_sla_breaches", "Tickets with a breached SLA", "target"),
        ]
        for key, kind, name, doc, label in families:
            family = kind(name, doc, labels=[label])
            for value, n in sorted(counts.get(key, {}).items()):
                family.add_metric([str(value)], n)
            yield family
        if settings.REDIS_URL:
            depth = GaugeMetricFamily("cxdesk_celery_queue_depth", "Tasks waiting per queue", labels=["queue"])
            sockets = GaugeMetricFamily("cxdesk_websocket_connections", "Open desk websockets (all ASGI nodes)")
            try:
                client = redis_client()
                if settings.CELERY_BROKER_URL.startswith("redis"):
                    broker = redis_client(settings.CELERY_BROKER_URL)
                    for queue in QUEUES:
                        depth.add_metric([queue], broker.llen(queue))
                keys = list(client.scan_iter(match=WS_KEY_PREFIX + "*", count=500))
                sockets.add_metric([], sum(int(v or 0) for v in client.mget(keys)) if keys else 0)
            except Exception:
                log.exception("metrics: Redis figures failed")
            yield depth
            yield sockets
        age = beat_age()
        beat = GaugeMetricFamily("cxdesk_beat_heartbeat_age_seconds", "Seconds since Celery beat last ran")
        if age is not None:
            beat.add_metric([], age)
        yield beat


class WebsocketCounter:
    """ASGI middleware around the websocket router: counts this process's open sockets in
    Redis (`cxdesk:ws:conns:<host>:<pid>`, expiring so a dead process drops out)."""

    def __init__(self, app) -> None:
        self.app = app
        self.open = 0
        self.key = f"{WS_KEY_PREFIX}{socket.gethostname()}:{os.getpid()}"
        self.written = 0.0

    async def _publish(self, force: bool = False) -> None:
        if not settings.REDIS_URL or (not force and time.monotonic() - self.written < WS_TTL / 3):
            return
        self.written = time.monotonic()
        try:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
            try:
                await client.set(self.key, self.open, ex=WS_TTL)
            finally:
                await client.aclose()
        except Exception:  # metrics never break a socket
            log.warning("websocket count not published", exc_info=True)

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "websocket":
            return await self.app(scope, receive, send)
        counted = False

        async def counting_send(message):
            nonlocal counted
            if message.get("type") == "websocket.accept" and not counted:
                counted = True
                self.open += 1
                await self._publish(force=True)
            return await send(message)

        async def refreshing_receive():
            message = await receive()
            await self._publish()
            return message

        try:
            return await self.app(scope, refreshing_receive, counting_send)
        finally:
            if counted:
                self.open -= 1
                await self._publish(force=True)
