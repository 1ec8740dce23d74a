"""CPU per operation, in one process: the steadier measure on a machine whose speed swings.

Calls `bench.wsgi_bare:application` (cxdesk's WSGI application and the bare view, as
gunicorn serves them in the other benchmarks) directly, without a server or a network, and
times each operation by this process's user CPU (`os.times()`), which other processes on
the machine disturb far less than wall-clock rates:

  - the bare view (`/bench/bare/`);
  - a signed Twilio SMS webhook's acknowledgement (its durable INSERT included);
  - the drain of those deliveries by `webhook_queue.drain()` (what a Celery drainer runs);
  - `POST /api/v1/tickets/` with an API key, each for a new customer email;
  - the API's floor: `GET /api/v1/tags/` (an empty list) with the same key, what every API
    call costs before its own work (the key, the rate count, DRF's cycle, one query).

    DATABASE_URL=postgres://postgres@/cxdesk_bench_run REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/in_process.py --messages 2000 --creates 500

Prints milliseconds of user CPU per operation and each one's cost in bare views (the
operation's CPU ÷ the bare view's, both measured in this run). The database in
DATABASE_URL is dropped and recreated; the Redis database's Celery queues are purged (the
acknowledgements wake drainers that nobody runs: this process drains).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.test import RequestFactory  # noqa: E402

from bench import common  # noqa: E402

HOST, PORT = "127.0.0.1", "8123"


def call(application, env: dict) -> str:
    status: list[str] = []
    body = application(env, lambda s, h, exc_info=None: status.append(s))
    for _chunk in body:
        pass
    getattr(body, "close", lambda: None)()
    return status[0]


def user_cpu_per(n: int, run) -> float:
    """Milliseconds of this process's user CPU per call of run(i), i in range(n)."""
    before = os.times().user
    for i in range(n):
        run(i)
    return (os.times().user - before) / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="webhooks acknowledged, then drained")
    parser.add_argument("--creates", type=int, default=500, help="API creates")
    parser.add_argument("--bare", type=int, default=3000, help="bare view requests")
    args = parser.parse_args()
    url, redis_url = common.require_env()
    common.recreate_database(url)
    os.environ["CXDESK_API_RATE"] = common.server_env(public_url="", conn_max_age=0)["CXDESK_API_RATE"]
    common.django_setup()
    from bench import api_create, webhook_ingest

    webhook_ingest.purge(os.environ.get("CELERY_BROKER_URL", redis_url))
    base = f"http://{HOST}:{PORT}"
    inbox_id = common.twilio_inbox(name="Bench SMS", token=webhook_ingest.TOKEN, public_url=base)
    key = api_create.setup()
    from bench.wsgi_bare import application
    from channels_app import webhook_queue

    # Every request's WSGI environ is built ahead (Django's RequestFactory), outside the timing.
    requests = RequestFactory(HTTP_HOST=f"{HOST}:{PORT}", SERVER_NAME=HOST, SERVER_PORT=PORT)
    hook_path = f"/hooks/twilio/{inbox_id}/"
    warm, timed = webhook_ingest.plan(0, args.messages, 32, lag=16)
    hooks = []
    for k, sender in enumerate(warm + timed):
        params, signature = common.twilio_sms(base + hook_path, webhook_ingest.TOKEN, sender=sender, body=f"n{k}")
        hooks.append(
            requests.post(
                hook_path, urlencode(params), "application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
            ).environ
        )
    bares = [requests.get("/bench/bare/").environ for _ in range(2 * args.bare + 50)]
    creates = [
        requests.post(
            "/api/v1/tickets/",
            json.dumps(api_create.payload(f"p{i}@bench.example", i)),
            "application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        ).environ
        for i in range(args.creates + 50)
    ]

    def hook(i: int) -> None:
        assert call(application, hooks[i]).startswith("200")

    def bare(i: int) -> None:
        assert call(application, bares.pop()).startswith("200")

    def create(i: int) -> None:
        assert call(application, creates[i]).startswith("201")

    floors = [
        requests.get("/api/v1/tags/", HTTP_AUTHORIZATION=f"Bearer {key}").environ for _ in range(args.creates + 50)
    ]

    def floor(i: int) -> None:
        assert call(application, floors[i]).startswith("200")

    print(f"{common.now_utc()}, load average before: {common.load_average()}")
    for i in range(len(warm)):  # warm: the first of everything (imports, compiled statements)
        hook(i)
    webhook_queue.drain()
    for i in range(50):
        bare(i)
        create(args.creates + i)
        floor(args.creates + i)
    hooks = hooks[len(warm) :]
    bare_before = user_cpu_per(args.bare, bare)
    ack = user_cpu_per(args.messages, hook)
    started = os.times().user
    stored = webhook_queue.drain()
    drain = (os.times().user - started) / max(stored, 1) * 1000
    creates = user_cpu_per(args.creates, create)
    floor_ms = user_cpu_per(args.creates, floor)
    bare_after = user_cpu_per(args.bare, bare)
    bare_ms = (bare_before + bare_after) / 2
    webhook_ingest.purge(os.environ.get("CELERY_BROKER_URL", redis_url))  # the wake-ups nobody ran
    print(f"user CPU per operation, in process (bare view before/after: {bare_before:.3f} / {bare_after:.3f} ms):")
    for name, value in [
        ("bare view", bare_ms),
        ("SMS webhook acknowledged", ack),
        (f"SMS drained ({stored} messages)", drain),
        ("API create", creates),
        ("API floor (GET of an empty list)", floor_ms),
    ]:
        print(f"  {name:34s} {value:7.3f} ms  = {value / bare_ms:5.2f} bare views")


if __name__ == "__main__":
    main()
