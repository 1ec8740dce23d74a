"""Ticket creation through the REST API under load, and the same-new-email race.

gunicorn (2 workers) serves `bench.wsgi_bare:application` (cxdesk plus a bare Django view
at /bench/bare/) with a real Celery worker on Redis. N clients POST /api/v1/tickets/ with a
Bearer key, each ticket for a new customer email, as fast as they are answered.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_bench_run REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/api_create.py --clients 8 --tickets 1000

Prints tickets/s and p50/p95, the bare view's req/s with the same clients on the same server
(before and after the creates) and the ratio to their mean, the API's floor (an authenticated
GET of an empty list: what any API call costs before its own work) and the create's ratio to
it, the ratio to the peer's 52 tickets/s as issue 12 measured it once (goal ≥ 5×; side by side
in the same minutes: bench/peer_helpdesk.py), queries per create (counted in this process),
then the race: P pairs of simultaneous creates for the same new email (barrier-synchronised
threads, real HTTP) → the answers' status codes, how many 5xx, and how many customers hold
each address (must be one). The database in DATABASE_URL is dropped and recreated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

PEER_TICKETS_PER_S = 52.0  # django-helpdesk 2.6.1 as issue 12 measured it once; side by side: bench/peer_helpdesk.py


def setup() -> str:
    """A staff user (supervisor) and an API key for it."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user("bench-api", password=None, is_staff=True, first_name="Bench")
    user.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_api_key", "bench-api", "--name", "bench", stdout=out)
    return out.getvalue().strip()


def payload(email: str, n: int) -> dict:
    return {
        "subject": f"Order {n} has not arrived",
        "body": "Hello, I ordered last week and nothing has come yet. Can you check?",
        "customer": {"email": email, "name": f"Customer {n}"},
    }


def in_process(key: str, profile: bool) -> tuple[int, str]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    client.post("/api/v1/tickets/", payload("warm@bench.example", 0), content_type="application/json", **headers)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/v1/tickets/", payload("counted@bench.example", 1), content_type="application/json", **headers
        )
    assert response.status_code == 201, response.content
    count = len(queries.captured_queries)  # now: the next request (request_started) resets the query log
    text = ""
    if profile:
        counter = iter(range(10**6))

        def create() -> None:
            n = next(counter)
            r = client.post("/api/v1/tickets/", payload(f"p{n}@bench.example", n), content_type="application/json",
                            **headers)  # fmt: skip
            assert r.status_code == 201, r.content

        only = (
            r"services\.py|selectors\.py|receivers\.py|realtime\.py|api\.py|throttling\.py|idempot|authentic|"
            r"\(execute\)|\(commit\)|apply_async|group_send|run_and_clear_commit_hooks|serializ"
        )
        text = common.profile_top(create, repeat=10, only=only)
    return count, text


def race(base: str, key: str, pairs: int) -> dict:
    import requests

    from customers.models import Identity
    from tickets.models import Ticket

    statuses: list[int] = []
    customers_per_address: list[int] = []
    tickets_per_address: list[int] = []
    bodies: Counter = Counter()
    for pair in range(pairs):
        email = f"race-{pair}-{uuid.uuid4().hex[:8]}@bench.example"
        barrier = threading.Barrier(2, timeout=30)
        answers: list[int] = []
        sessions = [requests.Session(), requests.Session()]
        for s in sessions:  # connected before the barrier: the two requests leave together
            s.get(f"{base}/bench/bare/", timeout=10)

        def create(session, n: int, email: str = email, barrier=barrier, answers=answers) -> None:
            barrier.wait()
            r = session.post(f"{base}/api/v1/tickets/", json=payload(email, n),
                             headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip
            answers.append(r.status_code)
            if r.status_code != 201:
                try:
                    bodies[(r.status_code, r.json().get("error", {}).get("code", ""))] += 1
                except ValueError:
                    bodies[(r.status_code, r.text[:60])] += 1

        threads = [threading.Thread(target=create, args=(s, n)) for n, s in enumerate(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        statuses += answers
        address = email.lower()
        customers_per_address.append(
            Identity.objects.filter(kind="email", address=address).values("customer").distinct().count()
        )
        tickets_per_address.append(
            Ticket.objects.filter(customer__identities__kind="email", customer__identities__address=address).count()
        )
    return {
        "pairs": pairs,
        "statuses": dict(Counter(statuses)),
        "5xx": sum(s >= 500 for s in statuses),
        "non_201": sum(s != 201 for s in statuses),
        "pairs_with_one_customer": sum(c == 1 for c in customers_per_address),
        "pairs_with_two_tickets": sum(c == 2 for c in tickets_per_address),
        "failures": {f"{k[0]} {k[1]}": v for k, v in bodies.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tickets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    parser.add_argument("--conn-max-age", type=int, default=0)
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--bare-requests", type=int, default=3000)
    parser.add_argument("--pairs", type=int, default=20, help="same-new-email race pairs")
    parser.add_argument("--profile", action="store_true", help="cProfile 10 in-process creates")
    parser.add_argument("--in-process-only", action="store_true", help="only the query count (and --profile)")
    args = parser.parse_args()
    url, redis_url = common.require_env()
    broker = os.environ.get("CELERY_BROKER_URL", redis_url)
    common.event_loop_policy()
    common.recreate_database(url)
    os.environ["CXDESK_API_RATE"] = common.server_env(public_url="", conn_max_age=0)["CXDESK_API_RATE"]
    common.django_setup()  # the in-process creates share the servers' rate (their key's count is in Redis)
    key = setup()
    port = common.free_port()
    base = f"http://127.0.0.1:{port}"
    log_dir = Path(tempfile.mkdtemp(prefix="cxdesk-bench-api-"))
    print(f"{common.now_utc()}, load average before: {common.load_average()}; logs in {log_dir}")
    env = common.server_env(public_url=base, conn_max_age=args.conn_max_age)
    threads = args.threads if args.worker_class == "gthread" else 1
    headers = {"Authorization": f"Bearer {key}"}
    creates = [
        ("POST", f"{base}/api/v1/tickets/", {"json": payload(f"c{n}-{uuid.uuid4().hex[:6]}@bench.example", n),
                                              "headers": headers})
        for n in range(args.tickets)
    ]  # fmt: skip
    warm = [
        ("POST", f"{base}/api/v1/tickets/", {"json": payload(f"w{n}@bench.example", n), "headers": headers})
        for n in range(4 * args.clients)
    ]
    if args.in_process_only:
        queries, profile = in_process(key, args.profile)
        print(f"queries per create: {queries}\n{profile}")
        return
    with common.Servers(log_dir) as servers:
        servers.celery(env, concurrency=args.celery_concurrency)
        servers.gunicorn(port, env, workers=args.workers, worker_class=args.worker_class, threads=threads)
        bare = common.bare_load(base, clients=args.clients, requests=args.bare_requests)
        # The API's own floor: an authenticated read of an empty list (the key looked up, the
        # rate counted, one query, DRF's cycle) — what any API call costs before its work.
        floor = asyncio.run(
            common.http_load([("GET", f"{base}/api/v1/tags/", {"headers": headers})] * args.bare_requests, args.clients)
        )
        warmed = asyncio.run(common.http_load(warm, args.clients))
        assert not warmed.errors(), warmed.errors()
        load = asyncio.run(common.http_load(creates, args.clients))
        bare_after = common.bare_load(base, clients=args.clients, requests=args.bare_requests)
        raced = race(base, key, args.pairs)
    bare_rate = common.bare_mean(bare, bare_after)
    queries, profile = in_process(key, args.profile)
    import redis

    redis.Redis.from_url(broker).delete(*common.QUEUES, "unacked", "unacked_index")
    result = {
        "worker_class": args.worker_class,
        "threads": threads,
        "clients": args.clients,
        "tickets": args.tickets,
        "errors": load.errors(),
        "tickets_per_s": load.rate,
        "p50_ms": common.pct(load.latencies, 50) * 1000,
        "p95_ms": common.pct(load.latencies, 95) * 1000,
        "bare_per_s": bare_rate,
        "bare_before_per_s": bare.rate,
        "bare_after_per_s": bare_after.rate,
        "api_floor_per_s": floor.rate,
        "bare_p95_ms": common.pct(bare.latencies, 95) * 1000,
        "ratio_to_bare": load.rate / bare_rate,
        "ratio_to_peer": load.rate / PEER_TICKETS_PER_S,
        "queries_per_create": queries,
        "race": raced,
    }
    print(json.dumps(result))
    print(f"load average after: {common.load_average()}")
    name = args.worker_class + (f"×{threads}" if threads > 1 else "")
    print(
        f"\nPOST /api/v1/tickets/ ×{args.tickets}, {args.clients} clients, gunicorn {args.workers} {name} workers, "
        f"CONN_MAX_AGE={args.conn_max_age}:\n"
        f"  {load.summary()} tickets; errors {load.errors() or 'none'}\n"
        f"  API floor (GET /api/v1/tags/, empty, same key) {floor.summary()} → the create is "
        f"{load.rate / floor.rate:.2f}× it\n"
        f"  bare view {bare.summary()}, after the load {bare_after.summary()} → "
        f"{common.ratio(load.rate, bare_rate)} (their mean); "
        f"{load.rate / PEER_TICKETS_PER_S:.2f}× the peer's {PEER_TICKETS_PER_S:.0f} tickets/s (goal ≥ 5×)\n"
        f"  queries per create: {queries}\n"
        f"  race, {raced['pairs']} pairs of simultaneous creates for one new email: answers {raced['statuses']}, "
        f"{raced['5xx']} 5xx, {raced['non_201']} not 201 {raced['failures'] or ''}; "
        f"{raced['pairs_with_one_customer']}/{raced['pairs']} addresses with exactly one customer, "
        f"{raced['pairs_with_two_tickets']}/{raced['pairs']} with both tickets"
    )
    if profile:
        print(f"\n10 in-process creates, top 20 by cumulative time:\n{profile}")


if __name__ == "__main__":
    main()
