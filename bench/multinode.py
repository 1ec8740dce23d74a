"""Webhook ingest and live-delivery latency, one node of each kind vs two, through the proxy.

Starts the production shape with deploy/serve.py (nginx in front; gunicorn, uvicorn,
Celery worker(s), beat) on a fresh benchmark database, signs Twilio SMS webhooks, posts
them through the proxy and measures:
  - ingest: POST → 200 (the message is committed);
  - live: POST sent → the agent's websocket (connected through the proxy) has the
    rendered message (`message.created`);
  - bare: GET /healthz through the same proxy and gunicorn (a Django view with no DB),
    the floor that the ratios are given against.
Sequential requests (latency) and then 4 concurrent clients (throughput).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_bench REDIS_URL=redis://127.0.0.1:6379/9 \\
        .venv/bin/python bench/multinode.py --messages 100

The database in DATABASE_URL is dropped and recreated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TWILIO_TOKEN = "bench-token"  # noqa: S105 - a fake inbox secret


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def recreate_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def seed(listen: str) -> tuple[int, str]:
    """An agent with a session and a Twilio inbox signed for the proxy's address."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from channels_app.models import Inbox

    inbox, _ = Inbox.objects.get_or_create(
        name="Bench SMS",
        defaults={
            "kind": "twilio",
            "transport": "file",
            "config": {"phone_number": "+48500000000", "default_region": "PL", "public_url": f"http://{listen}"},
            "secrets": {"auth_token": TWILIO_TOKEN},
        },
    )
    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "first_name": "Bench"}
    )
    client = Client()
    client.force_login(user)
    return inbox.pk, client.cookies["sessionid"].value


class Run:
    def __init__(self, listen: str, inbox_id: int, session: str) -> None:
        import requests

        self.base = f"http://{listen}"
        self.url = f"{self.base}/hooks/twilio/{inbox_id}/"
        self.http = threading.local()
        self.session = session
        self.requests = requests

    def _client(self):
        if not hasattr(self.http, "s"):
            self.http.s = self.requests.Session()
        return self.http.s

    def post(self, body: str, sender: str = "+48600100200") -> float:
        from twilio.request_validator import RequestValidator

        params = {"MessageSid": "SM" + uuid.uuid4().hex, "From": sender, "To": "+48500000000", "Body": body}
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(self.url, params)
        started = time.perf_counter()
        response = self._client().post(self.url, data=params, headers={"X-Twilio-Signature": signature}, timeout=30)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        return elapsed

    def bare(self) -> float:
        started = time.perf_counter()
        response = self._client().get(self.base + "/healthz", timeout=10)
        assert response.status_code == 200
        return time.perf_counter() - started


def measure(run: Run, messages: int) -> dict:
    from websockets.sync.client import connect

    from tickets.models import Message

    run.post("warm-up: opens the ticket")
    ticket = Message.objects.filter(direction="inbound").latest("id").ticket
    for _ in range(10):
        run.bare()
    bare = [run.bare() for _ in range(messages)]

    ingest, live = [], []
    ws = connect(
        run.base.replace("http://", "ws://") + "/ws/desk/",
        additional_headers={"Cookie": f"sessionid={run.session}"},
        origin=run.base,
    )
    with ws:
        ws.send(json.dumps({"subscribe_ticket": ticket.pk}))
        while json.loads(ws.recv(timeout=30)).get("event") != "presence":  # subscribed
            pass
        for i in range(messages):
            token = f"bench-{i}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            ingest.append(run.post(token))
            while True:
                event = json.loads(ws.recv(timeout=30))
                if event.get("event") == "message.created" and token in event.get("html", ""):
                    live.append(time.perf_counter() - started)
                    break

    # Throughput: 4 concurrent clients, each its own customer (own ticket).
    total = messages * 2
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: run.post(f"load {i}", sender=f"+4860020{i % 4:04d}"), range(total)))
    throughput = total / (time.perf_counter() - started)
    return {
        "bare_p50": _pct(bare, 0.5),
        "ingest_p50": _pct(ingest, 0.5),
        "ingest_p95": _pct(ingest, 0.95),
        "live_p50": _pct(live, 0.5),
        "live_p95": _pct(live, 0.95),
        "ingest_mean": statistics.mean(ingest) * 1000,
        "throughput": throughput,
    }


def start_cluster(nodes: int, listen: str, base: int, var_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "CXDESK_VAR_DIR": str(var_dir), "GUNICORN_WORKERS": "1", "CELERY_CONCURRENCY": "1",
           "LOG_LEVEL": "WARNING", "CELERY_TASK_ALWAYS_EAGER": "0"}  # fmt: skip
    cmd = [sys.executable, str(ROOT / "deploy" / "serve.py"), "--listen", listen, "--internal-base", str(base),
           "--web", str(nodes), "--asgi", str(nodes), "--workers", str(nodes), "--skip-setup"]  # fmt: skip
    log = (var_dir / "serve.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    import requests

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            ok = all(
                requests.get(f"http://127.0.0.1:{p}/healthz", timeout=1).status_code == 200
                for p in [*(base + 1 + i for i in range(nodes)), *(base + 101 + i for i in range(nodes))]
            )
            if ok and requests.get(f"http://{listen}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    raise SystemExit(f"cluster did not start; see {var_dir / 'serve.log'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--listen", default="127.0.0.1:8450")
    parser.add_argument("--internal-base", type=int, default=8500)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or not os.environ.get("REDIS_URL") or not os.environ.get("SECRET_KEY"):
        raise SystemExit("set DATABASE_URL (PostgreSQL, will be recreated), REDIS_URL and SECRET_KEY")
    recreate_database(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)
    inbox_id, session = seed(args.listen)
    var_dir = ROOT / "var" / "bench-multinode"
    var_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for nodes in (1, 2):
        proc = start_cluster(nodes, args.listen, args.internal_base, var_dir)
        try:
            results[nodes] = measure(Run(args.listen, inbox_id, session), args.messages)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
        time.sleep(1)
    print(f"{args.messages} sequential webhooks per run, then {args.messages * 2} with 4 concurrent clients")
    print("nodes  bare p50   ingest p50/p95 (× bare)    live p50/p95 (× bare)     msg/s (4 clients)")
    for nodes, r in results.items():
        print(
            f"{nodes}x     {r['bare_p50']:6.1f} ms  {r['ingest_p50']:6.1f}/{r['ingest_p95']:6.1f} ms "
            f"({r['ingest_p50'] / r['bare_p50']:4.1f}×)   {r['live_p50']:6.1f}/{r['live_p95']:6.1f} ms "
            f"({r['live_p50'] / r['bare_p50']:4.1f}×)   {r['throughput']:6.1f}"
        )


if __name__ == "__main__":
    main()
