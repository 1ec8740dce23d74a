"""Signed Twilio SMS webhooks under load: acknowledged and end-to-end messages/s.

Half the messages open a conversation (a new number), half continue one (a number that
wrote before). gunicorn (2 workers, `--worker-class sync` and/or `gthread`) serves
`bench.wsgi_bare:application` — cxdesk plus a bare Django view at /bench/bare/ — and a real
Celery worker runs the background work from a real Redis broker, as in production.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_bench_run REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/webhook_ingest.py --clients 8 --messages 2000 --worker-class sync,gthread

Prints, per worker class:
  - acknowledged: messages/s answered 200 by the webhook, and p50/p95 of its response;
  - end to end: messages/s until every message is a committed Message row and nothing is
    left to do in the background (no pending outbox task or raw delivery, the broker's
    queues empty and nothing unacknowledged);
  - the bare view's req/s with the same clients on the same server, measured before the
    webhooks and again after the drain, and the ratios to the mean of the two;
  - queries per webhook request (new conversation, continuing one), counted in this process
    with CaptureQueriesContext, and with --profile the top 15 functions of one in-process
    ingest by cumulative time.
The database in DATABASE_URL is dropped and recreated; the Redis database is used for the
broker, the channel layer and the cache (its Celery queues are purged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - a fake inbox secret


def number(run: int, i: int) -> str:
    return f"+48{600_000_000 + run * 1_000_000 + i}"


def plan(run: int, messages: int, warm: int, lag: int) -> tuple[list[str], list[str]]:
    """Senders of the warm-up (first messages, untimed) and of the timed messages: even
    positions are new numbers, odd ones continue a number that wrote `lag` messages earlier
    (or one of the warm-up's)."""
    warmup = [number(run, i) for i in range(warm)]
    timed = []
    for k in range(messages):
        i = k // 2
        if k % 2 == 0:
            timed.append(number(run, warm + i))
        else:
            timed.append(number(run, warm + i - lag) if i >= lag else warmup[i % warm])
    return warmup, timed


def requests_for(url: str, senders: list[str], tag: str) -> list[tuple[str, str, dict]]:
    out = []
    for k, sender in enumerate(senders):
        params, signature = common.twilio_sms(url, TOKEN, sender=sender, body=f"{tag} {k}: where is my order?")
        out.append(("POST", url, {"data": params, "headers": {"X-Twilio-Signature": signature}}))
    return out


def inbound_count(inbox_id: int) -> int:
    from tickets.models import Message

    return Message.objects.filter(inbox_id=inbox_id, direction="inbound").count()


def wait_drained(inbox_id: int, expected: int, redis_url: str, timeout: float) -> float:
    """Block until `expected` inbound messages are committed and the background is idle;
    returns the perf_counter time it was seen (or raises after `timeout`)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if inbound_count(inbox_id) >= expected and common.background_pending() == 0 and common.queues_empty(redis_url):
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(
        f"not drained after {timeout:.0f}s: {inbound_count(inbox_id)}/{expected} messages, "
        f"{common.background_pending()} background rows pending"
    )


def run_one(args, run: int, worker_class: str, inbox_id: int, base: str, redis_url: str, log_dir: Path) -> dict:
    url = f"{base}/hooks/twilio/{inbox_id}/"
    warm = max(16, 2 * args.clients)
    warmup, timed = plan(run, args.messages, warm, lag=2 * args.clients)
    warm_requests = requests_for(url, warmup, f"warm-{run}")
    timed_requests = requests_for(url, timed, f"run-{run}")
    env = common.server_env(public_url=base, conn_max_age=args.conn_max_age)
    threads = args.threads if worker_class == "gthread" else 1
    port = int(base.rsplit(":", 1)[1])
    with common.Servers(log_dir) as servers:
        servers.celery(env, concurrency=args.celery_concurrency)
        servers.gunicorn(port, env, workers=args.workers, worker_class=worker_class, threads=threads)
        bare = common.bare_load(base, clients=args.clients, requests=args.bare_requests)
        before = inbound_count(inbox_id)
        warm_load = asyncio.run(common.http_load(warm_requests, args.clients))
        assert not warm_load.errors(), warm_load.errors()
        wait_drained(inbox_id, before + warm, redis_url, timeout=120)
        tickets_before = tickets_count(inbox_id)
        if args.drain_after:
            hold_slots()
        started = time.perf_counter()
        load = asyncio.run(common.http_load(timed_requests, args.clients))
        drain_started = time.perf_counter()
        if args.drain_after:
            release_slots()
        drained = wait_drained(inbox_id, before + warm + args.messages, redis_url, timeout=args.timeout)
        bare_after = common.bare_load(base, clients=args.clients, requests=args.bare_requests)
    bare_rate = common.bare_mean(bare, bare_after)
    e2e = args.messages / (drained - started)
    drain_rate = args.messages / (drained - drain_started) if args.drain_after else None
    return {
        "worker_class": worker_class,
        "threads": threads,
        "workers": args.workers,
        "conn_max_age": args.conn_max_age,
        "clients": args.clients,
        "messages": args.messages,
        "errors": load.errors(),
        "ack_per_s": load.rate,
        "ack_p50_ms": common.pct(load.latencies, 50) * 1000,
        "ack_p95_ms": common.pct(load.latencies, 95) * 1000,
        "e2e_per_s": e2e,
        "drain_per_s": drain_rate,
        "bare_per_s": bare_rate,
        "bare_before_per_s": bare.rate,
        "bare_after_per_s": bare_after.rate,
        "bare_p50_ms": common.pct(bare.latencies, 50) * 1000,
        "bare_p95_ms": common.pct(bare.latencies, 95) * 1000,
        "ack_ratio": load.rate / bare_rate,
        "e2e_ratio": e2e / bare_rate,
        "new_tickets": tickets_count(inbox_id) - tickets_before,
        "expected_new_tickets": args.messages - args.messages // 2,
    }


def hold_slots() -> None:
    """--drain-after: every drainer slot taken, as if drainers were busy (or on other hosts):
    the timed webhooks are only stored, and the acknowledgements have the cores to themselves."""
    from django.conf import settings
    from django.core.cache import cache

    from channels_app.webhook_queue import SLOT_KEY

    for slot in range(settings.CXDESK_WEBHOOK_DRAINERS):
        cache.set(SLOT_KEY.format(slot), 1, 3600)


def release_slots() -> None:
    """Hand each slot to a drainer, as an acknowledgement that finds it free does (`wake`):
    each drainer takes its slot's deliveries until none is left."""
    from django.conf import settings
    from django.core.cache import cache

    from channels_app.tasks import drain_webhooks
    from channels_app.webhook_queue import SLOT_KEY, SLOT_SECONDS

    for slot in range(settings.CXDESK_WEBHOOK_DRAINERS):
        cache.set(SLOT_KEY.format(slot), 1, SLOT_SECONDS)
        drain_webhooks.delay(slot)


def tickets_count(inbox_id: int) -> int:
    from tickets.models import Ticket

    return Ticket.objects.filter(inbox_id=inbox_id).count()


def in_process(inbox_id: int, base: str, profile: bool) -> dict:
    """Queries of one webhook request in this process (the server's code, the same database),
    for a new conversation and a continuing one; optionally a cProfile of the latter."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    url = f"{base}/hooks/twilio/{inbox_id}/"
    path = f"/hooks/twilio/{inbox_id}/"
    out: dict = {}
    client = Client()  # one handler: its middleware (whitenoise's file scan) loads once

    def post(sender: str, body: str) -> int:
        params, signature = common.twilio_sms(url, TOKEN, sender=sender, body=body)
        return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code

    post(number(9, 0), "warm-up of this process")
    for label, sender in (("new", number(9, 1)), ("continuing", number(9, 1)), ("continuing_again", number(9, 1))):
        with CaptureQueriesContext(connection) as queries:
            status = post(sender, f"in-process {label}")
        assert status == 200, status
        out[f"queries_{label}"] = len(queries.captured_queries)
    if profile:
        # Where an ingest's time goes, past Django's middleware wrappers: the app's own code,
        # the SQL, the broadcasts, the Celery publish, the signature check.
        only = (
            r"services\.py|selectors\.py|receivers\.py|realtime\.py|webhooks\.py|twilio\.py|"
            r"\(execute\)|\(commit\)|apply_async|group_send|validate|run_and_clear_commit_hooks|render"
        )
        out["profile"] = common.profile_top(lambda: post(number(9, 1), "profiled"), repeat=10, only=only)
    return out


def purge(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(*common.QUEUES, "unacked", "unacked_index")
    # A drainer's slot held by a task purged above (an earlier run cut short) would leave
    # this run's deliveries to the beat sweep, which does not run here.
    stale = client.keys("*cxdesk:webhook-drainer:*")
    if stale:
        client.delete(*stale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync,gthread", help="comma-separated: sync, gthread")
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--conn-max-age", type=int, default=0, help="CONN_MAX_AGE of the server processes")
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--bare-requests", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the background to drain")
    parser.add_argument("--profile", action="store_true", help="cProfile in-process ingests")
    parser.add_argument("--in-process-only", action="store_true", help="only the query count (and --profile)")
    parser.add_argument(
        "--drain-after",
        action="store_true",
        help="hold the drainers while the webhooks come (acknowledgements alone), then time the drain",
    )
    args = parser.parse_args()
    url, redis_url = common.require_env()
    broker = os.environ.get("CELERY_BROKER_URL", redis_url)
    common.event_loop_policy()
    common.recreate_database(url)
    common.django_setup()
    purge(broker)
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    inbox_id = common.twilio_inbox(name="Bench SMS", token=TOKEN, public_url=base)
    log_dir = Path(tempfile.mkdtemp(prefix="cxdesk-bench-ingest-"))
    print(f"{common.now_utc()}, load average before: {common.load_average()}; logs in {log_dir}")
    results = []
    classes = [] if args.in_process_only else [c.strip() for c in args.worker_class.split(",")]
    for run, worker_class in enumerate(classes):
        results.append(run_one(args, run, worker_class, inbox_id, base, broker, log_dir))
        print(json.dumps(results[-1]))
    extra = in_process(inbox_id, base, args.profile)
    purge(broker)
    print(f"load average after: {common.load_average()}")
    if results:
        print(
            f"\n{args.messages} signed Twilio SMS webhooks (half new numbers, half continuing), {args.clients} clients, "
            f"gunicorn {args.workers} workers, CONN_MAX_AGE={args.conn_max_age}, Celery worker ×{args.celery_concurrency}"
        )
        print(
            "class     acknowledged msg/s  p50 / p95 ms       end-to-end msg/s   bare req/s before/after (p95)   "
            "ack ÷ bare  e2e ÷ bare"
        )
        for r in results:
            name = r["worker_class"] + (f"×{r['threads']}" if r["threads"] > 1 else "")
            print(
                f"{name:<9} {r['ack_per_s']:>18.1f}  {r['ack_p50_ms']:>6.1f} / {r['ack_p95_ms']:>6.1f}    "
                f"{r['e2e_per_s']:>16.1f}   {r['bare_before_per_s']:>8.0f} / {r['bare_after_per_s']:<5.0f} "
                f"({r['bare_p95_ms']:.1f})       "
                f"{r['ack_ratio']:>10.3f}  {r['e2e_ratio']:>10.3f}"
                + (f"   drained alone {r['drain_per_s']:.1f} msg/s" if r["drain_per_s"] else "")
                + (f"   errors {r['errors']}" if r["errors"] else "")
                + (f"   new tickets {r['new_tickets']}/{r['expected_new_tickets']}")
            )
    print(
        f"queries per webhook request: new conversation {extra['queries_new']}, continuing "
        f"{extra['queries_continuing']} (again: {extra['queries_continuing_again']})"
    )
    print("goal (issue 12): acknowledged ≥ 0.5× the bare view with p95 < 50 ms; ≥ 300 msg/s end to end")
    if "profile" in extra:
        print("\n10 in-process ingests (a continuing SMS through the webhook view), top 20 by cumulative time:")
        print(extra["profile"])


if __name__ == "__main__":
    main()
