"""Benchmark: the desk inbox at 10k / 100k / 1M tickets (issue 12).

Seeds a benchmark database in steps (tickets with COPY, one message a ticket derived from
them by INSERT … SELECT, then VACUUM ANALYZE), serves this module's WSGI application with
gunicorn (2 workers, CONN_MAX_AGE=60): cxdesk itself plus a bare Django view at
/bench/bare/ through the same handler and middleware, the floor for the ratios. A
supervisor and a team-scoped agent are signed in (session cookies). Per size it measures,
over HTTP with 2 concurrent clients: the inbox page, the htmx list partial, a saved view,
and the page of the team-scoped agent — req/s, p50, p95 and req/s as a share of the bare
view's req/s in the same run. "SQL ms" is measured in this process: the same requests
through Django's test client with every query timed (CaptureQueriesContext; the sum of
the query durations as Django records them, round trip included), median of 10 requests.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_inbox_bench SECRET_KEY=x \\
        .venv/bin/python bench/inbox.py --sizes 10000,100000,1000000 --requests 200

The database in DATABASE_URL is dropped and recreated.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.http import HttpResponse
from django.urls import path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- the served application: cxdesk + a bare view, one WSGI callable -----------------


def bare(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare)]
_apps: dict = {}


def application(environ, start_response):
    """gunicorn bench.inbox:application — /bench/bare/ is a bare Django view served by the
    same process, handler and middleware as cxdesk's own pages."""
    if not _apps:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")
        from django.core.handlers.wsgi import WSGIHandler

        from cxdesk.wsgi import application as cxdesk_application

        class BareHandler(WSGIHandler):
            def get_response(self, request):
                request.urlconf = __name__
                return super().get_response(request)

        _apps.update(cxdesk=cxdesk_application, bare=BareHandler())
    app = _apps["bare"] if environ.get("PATH_INFO") == "/bench/bare/" else _apps["cxdesk"]
    return app(environ, start_response)


# --- seeding ---------------------------------------------------------------------------

CUSTOMERS = 5000
TEAMS = 6
ASSIGNEES = 12
STATUSES = [("new", 8), ("open", 14), ("pending", 8), ("solved", 40), ("closed", 30)]  # ~30% open
CHANNELS = [("email", 50), ("sms", 20), ("whatsapp", 15), ("chat", 15)]
PRIORITIES = [("normal", 80), ("low", 8), ("high", 9), ("urgent", 3)]


def _weighted(pairs):
    return [value for value, weight in pairs for _ in range(weight)]


def recreate_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def seed_people() -> dict:
    """Teams, inboxes (some with a default team), assignees, the two signed-in users,
    saved views, and CUSTOMERS customers (COPY)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.utils import timezone

    from tickets.models import SavedView, Team, Ticket

    Inbox = Ticket._meta.get_field("inbox").related_model
    User = get_user_model()
    teams = [Team.objects.create(name=f"Team {i}") for i in range(TEAMS)]
    inboxes = {
        "email": Inbox.objects.create(kind="email", name="Email", transport="file", default_team=teams[0]),
        "sms": Inbox.objects.create(kind="twilio", name="SMS", transport="file", default_team=teams[1]),
        "whatsapp": Inbox.objects.create(kind="whatsapp", name="WhatsApp", transport="file"),
        "chat": Inbox.objects.create(kind="webchat", name="Chat", transport="file", default_team=teams[2]),
    }
    agents = []
    for i in range(ASSIGNEES):
        user = User.objects.create_user(f"agent{i}", password=None, is_staff=True, first_name=f"Agent {i}")
        user.groups.add(Group.objects.get_or_create(name="agent")[0])
        teams[i % TEAMS].members.add(user)
        agents.append(user)
    supervisor = User.objects.create_user("bench-sup", password=None, is_staff=True, first_name="Sup")
    supervisor.groups.add(Group.objects.get_or_create(name="supervisor")[0])
    member = agents[3]  # a team-scoped agent (Team 3: no inbox of its own)
    views = [
        ("Texts", {"view": "open", "channel": "sms"}),
        ("Urgent", {"view": "open", "priority": "urgent"}),
        ("Waiting longest", {"view": "open", "sort": "waiting"}),
        ("Email inbox", {"view": "open", "inbox_id": str(inboxes["email"].pk)}),
    ]
    saved = [
        SavedView.objects.create(owner=supervisor, name=name, filters=f, shared=True, position=i)
        for i, (name, f) in enumerate(views)
    ]
    now = timezone.now()
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY customers_customer (name, attributes, language, created_at, updated_at) FROM STDIN"
        ) as cp:
            for i in range(CUSTOMERS):
                cp.write_row((f"Customer {i}", "{}", "", now, now))
    return {
        "teams": [t.pk for t in teams],
        "inboxes": {k: v.pk for k, v in inboxes.items()},
        "agents": [a.pk for a in agents],
        "supervisor": supervisor,
        "member": User.objects.get(pk=member.pk),
        "saved": saved,
    }


def seed_tickets(people: dict, count: int, rnd: random.Random) -> None:
    """`count` more tickets (COPY), one message each (INSERT … SELECT), VACUUM ANALYZE."""
    from django.db import connection

    statuses, channels, priorities = _weighted(STATUSES), _weighted(CHANNELS), _weighted(PRIORITIES)
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM customers_customer")
        low, high = cursor.fetchone()
        cursor.execute("SELECT coalesce(max(id), 0) FROM tickets_ticket")
        (before,) = cursor.fetchone()
    now = datetime.now(UTC)
    columns = (
        "subject, status, priority, channel, reply_token, created_at, updated_at, last_customer_message_at, "
        "last_agent_message_at, last_message_at, reopen_count, assignee_id, customer_id, inbox_id, team_id"
    )

    def line(i: int) -> str:
        status = rnd.choice(statuses)
        is_open = status in ("new", "open", "pending")
        ago = rnd.uniform(0, 30 if is_open else 730) * 86400
        last = now - timedelta(seconds=ago)
        created = last - timedelta(seconds=rnd.uniform(0, 5 * 86400))
        channel = rnd.choice(channels)
        waiting = status != "pending" and rnd.random() < 0.7
        customer_at = last if waiting else last - timedelta(seconds=3600)
        agent_at = r"\N" if waiting and status == "new" else (last if not waiting else created).isoformat()
        assignee = rnd.choice(people["agents"]) if (not is_open or rnd.random() < 0.6) else None
        team = rnd.choice(people["teams"]) if rnd.random() < 0.9 else None
        return "\t".join(
            (
                f"Bench ticket {before + i}",
                status,
                rnd.choice(priorities),
                channel,
                f"b{before + i:x}",
                created.isoformat(),
                last.isoformat(),
                customer_at.isoformat(),
                agent_at,
                last.isoformat(),
                "0",
                str(assignee) if assignee else r"\N",
                str(rnd.randint(low, high)),
                str(people["inboxes"][channel]),
                str(team) if team else r"\N",
            )
        )

    with connection.cursor() as cursor:
        with cursor.copy(f"COPY tickets_ticket ({columns}) FROM STDIN") as cp:
            chunk = []
            for i in range(count):
                chunk.append(line(i))
                if len(chunk) == 10_000:
                    cp.write("\n".join(chunk) + "\n")
                    chunk = []
            if chunk:
                cp.write("\n".join(chunk) + "\n")
        cursor.execute(
            """INSERT INTO tickets_message (direction, channel, subject, body_text, body_html, email_message_id,
                   in_reply_to, "references", status, error, attempts, thread_reason, metadata, created_at,
                   updated_at, ticket_id, content_digest, inbox_id)
               SELECT CASE WHEN last_customer_message_at = last_message_at THEN 'inbound' ELSE 'outbound' END,
                   channel, '', 'Hello, I have a question about order ' || id || '. Could you help me with it?',
                   '', '', '', '', 'received', '', 0, 'new_ticket', '{}', last_message_at, last_message_at, id, '',
                   inbox_id
               FROM tickets_ticket WHERE id > %s""",
            [before],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tickets_ticket")
        cursor.execute("VACUUM ANALYZE tickets_message")
        cursor.execute("VACUUM ANALYZE customers_customer")


# --- measuring -------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def http_run(base: str, url: str, cookie: str, headers: dict, requests_n: int, clients: int, max_s: float) -> dict:
    import requests

    local = threading.local()
    deadline = time.monotonic() + max_s

    def one(_i: int) -> float | None:
        if time.monotonic() > deadline:
            return None
        if not hasattr(local, "s"):
            local.s = requests.Session()
            if cookie:
                local.s.cookies.set("sessionid", cookie)
        started = time.perf_counter()
        response = local.s.get(base + url, headers=headers, timeout=120, allow_redirects=False)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (url, response.status_code)
        return elapsed

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(min(10, requests_n))))  # warm-up: connections, caches
        started = time.perf_counter()
        times = [t for t in pool.map(one, range(requests_n)) if t is not None]
        wall = time.perf_counter() - started
    return {"n": len(times), "rps": len(times) / wall, "p50": _pct(times, 0.5), "p95": _pct(times, 0.95)}


def sql_per_request(user, url: str, headers: dict, repeat: int = 10) -> tuple[float, int]:
    """Median SQL milliseconds and queries per request, in this process (test client)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(user)
    client.get(url, **headers)  # warm-up
    totals, counts = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url, **headers).status_code == 200
        totals.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
        counts.append(len(captured.captured_queries))
    return statistics.median(totals), max(counts)


def start_gunicorn(port: int, log: Path) -> subprocess.Popen:
    import requests

    env = {**os.environ, "CONN_MAX_AGE": "60", "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "cxdesk.settings"}
    env.pop("DEBUG", None)
    cmd = [sys.executable, "-m", "gunicorn", "bench.inbox:application", "--workers", "2",
           "--bind", f"127.0.0.1:{port}", "--timeout", "300"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/bench/bare/", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    raise SystemExit(f"gunicorn did not start; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint and size")
    parser.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    parser.add_argument("--max-seconds", type=float, default=90, help="stop an endpoint's run after this long")
    parser.add_argument("--port", type=int, default=8612)
    parser.add_argument("--label", default="", help="printed in every row (e.g. before / after)")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or not os.environ.get("SECRET_KEY"):
        raise SystemExit("set DATABASE_URL (PostgreSQL; dropped and recreated) and SECRET_KEY")
    os.environ.pop("REDIS_URL", None)  # not needed for pages; keeps the run self-contained
    os.environ["DJANGO_SETTINGS_MODULE"] = "cxdesk.settings"
    recreate_database(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.test import Client

    people = seed_people()
    sessions = {}
    for who in ("supervisor", "member"):
        client = Client()
        client.force_login(people[who])
        sessions[who] = client.cookies["sessionid"].value
    saved = people["saved"][0]
    hx = {"HX-Request": "true", "HX-Target": "inbox-list"}
    endpoints = [
        ("bare view", "", "/bench/bare/", {}),
        ("inbox page", "supervisor", "/desk/", {}),
        ("htmx list partial", "supervisor", "/desk/?view=open&sort=activity", hx),
        ("saved view page", "supervisor", f"/desk/?view=open&channel=sms&sort=activity&saved={saved.pk}", {}),
        ("inbox page, team agent", "member", "/desk/", {}),
    ]
    var = ROOT / "var"
    var.mkdir(exist_ok=True)
    server = start_gunicorn(args.port, var / "bench-inbox-gunicorn.log")
    rnd = random.Random(12)
    rows = []
    try:
        seeded = 0
        for size in [int(s) for s in args.sizes.split(",")]:
            started = time.perf_counter()
            seed_tickets(people, size - seeded, rnd)
            seeded = size
            print(f"seeded {size:,} tickets ({time.perf_counter() - started:.0f}s)", flush=True)
            bare_rps = None
            for name, who, path_, headers in endpoints:
                result = http_run(
                    f"http://127.0.0.1:{args.port}", path_, sessions.get(who, ""), headers, args.requests,
                    args.clients, args.max_seconds,
                )  # fmt: skip
                if bare_rps is None:
                    bare_rps = result["rps"]
                sql_ms, queries = ("", "")
                if who:
                    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
                    ms, n = sql_per_request(people[who], path_, meta)
                    sql_ms, queries = f"{ms:.1f}", str(n)
                row = (f"{size:,}", name, f"{result['rps']:.1f}", f"{result['p50']:.0f}", f"{result['p95']:.0f}",
                       f"{result['rps'] / bare_rps:.2f}", sql_ms, queries, str(result["n"]))  # fmt: skip
                rows.append(row)
                print(" | ".join(row), flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    label = f" ({args.label})" if args.label else ""
    print(f"\n| tickets | endpoint{label} | req/s | p50 ms | p95 ms | ÷ bare req/s | SQL ms/req | queries | n |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
