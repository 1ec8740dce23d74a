"""Ticket creation through the REST API: cxdesk and its closest Django peer, django-helpdesk
2.6.1 (issue 12), in the same minutes on the same machine.

The machine's speed swings within minutes (the bare view runs at 600–1,900 req/s from one
run to the next), so a peer figure measured once (52 tickets/s, in issue 12) cannot be set
beside a figure measured another day. This runs both side by side, in rounds:

    for each round: cxdesk's bare view, cxdesk's creates, cxdesk's API floor, the peer's creates,
    the peer's bare view

Each server is gunicorn, 2 gthread workers × 4 threads, each worker holding at most 4
connections (`common.one_connection_a_thread`: both cores serve), persistent database
connections, on its own PostgreSQL database; each has a bare Django view behind its own
middleware. cxdesk: `POST /api/v1/tickets/` with an API key (and its Celery worker running, as in
bench/api_create.py). The peer: `POST /api/tickets/` (its DRF `TicketViewSet`) with a DRF
token for a superuser, into one queue; the customer of each ticket is a new email, as for
cxdesk. Its mail goes to Django's dummy backend (rendered, not sent: remote SMTP is the
outside world). The peer is installed from PyPI into a venv of its own (`--venv`, pinned below).

    DATABASE_URL=postgres://postgres@/cxdesk_bench_run REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/peer_helpdesk.py --rounds 3 --tickets 500

Prints, per round and as the median of the rounds: tickets/s of each, cxdesk ÷ peer (issue
12's goal: ≥ 5×) and each one's ratio to its own bare view; and cxdesk's API floor (an
authenticated GET of an empty list, measured in the same round) ÷ the peer's creates: the
most a create could reach, were its own work free. The databases are recreated
(the peer's is DATABASE_URL's with `_peer` appended).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402
from bench.api_create import payload, setup  # noqa: E402

PEER_REQUIREMENTS = [  # django-helpdesk 2.6.1 and what it resolved to on 2026-11-27
    "django-helpdesk==2.6.1",
    "Django==5.2.19",
    "djangorestframework==3.18.3",
    "psycopg[binary]==3.3.9",
    "gunicorn==27.0.1",
    "beautifulsoup4==4.15.0",
    "django-cleanup==9.0.0",
    "django-model-utils==5.0.0",
    "email-reply-parser==0.5.12",
    "Markdown==3.11.3",
    "nh3==0.3.8",
    "oauthlib==4.0.1",
    "requests==2.34.2",
    "requests-oauthlib==2.0.0",
]

SETTINGS = """
import os
SECRET_KEY = "peer-bench"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize",
    "rest_framework", "rest_framework.authtoken", "helpdesk",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "peer_urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.postgresql", "NAME": os.environ["PEER_DB_NAME"],
    "USER": os.environ.get("PEER_DB_USER", "postgres"), "HOST": os.environ.get("PEER_DB_HOST", ""),
    "PORT": os.environ.get("PEER_DB_PORT", ""), "CONN_MAX_AGE": 60,
}}
USE_TZ = True
SITE_ID = 1
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
REST_FRAMEWORK = {"DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"]}
HELPDESK_API_ENABLED = True
HELPDESK_TEAMS_MODE_ENABLED = False  # pinax-teams is an extra; the API create does not use it
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
"""

URLS = """
from django.http import HttpResponse
from django.urls import include, path


def bare(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare), path("", include("helpdesk.urls"))]
"""

SEED = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from helpdesk.models import Queue
user = get_user_model().objects.create_superuser("bench-api", "bench@example.com", "x")
queue = Queue.objects.create(title="Support", slug="support", email_address="support@example.com")
print("SEED", Token.objects.create(user=user).key, queue.pk)
"""


def peer_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    marker = path / ".cxdesk-peer"
    if marker.exists() and marker.read_text() == "\n".join(PEER_REQUIREMENTS):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS], check=True)
    marker.write_text("\n".join(PEER_REQUIREMENTS))
    return python


def peer_project(python: Path, directory: Path, url: str) -> tuple[dict[str, str], str, int]:
    """The peer's project in `directory`, migrated, with a superuser's token and a queue."""
    from urllib.parse import urlsplit

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "peer_settings.py").write_text(SETTINGS)
    (directory / "peer_urls.py").write_text(URLS)
    parts = urlsplit(url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))},
        "DJANGO_SETTINGS_MODULE": "peer_settings",
        "PYTHONPATH": str(directory),
        "PEER_DB_NAME": parts.path.lstrip("/"),
        "PEER_DB_USER": parts.username or "postgres",
        "PEER_DB_HOST": parts.hostname or "",
        "PEER_DB_PORT": str(parts.port or ""),
    }
    admin = [str(python), "-m", "django"]
    subprocess.run([*admin, "migrate", "--noinput", "-v0"], cwd=directory, env=env, check=True)
    out = subprocess.run([*admin, "shell", "-c", SEED], cwd=directory, env=env, check=True, capture_output=True)
    token, queue = out.stdout.decode().split("SEED", 1)[1].split()
    return env, token, int(queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tickets", type=int, default=500, help="creates per server and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bare-requests", type=int, default=1500)
    parser.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "cxdesk-peer-venv"))
    args = parser.parse_args()
    url, _redis_url = common.require_env()
    common.event_loop_policy()
    peer_url = f"{url.rstrip('/')}_peer"
    common.recreate_database(url)
    common.recreate_database(peer_url)
    peer_python = peer_venv(Path(args.venv))
    log_dir = Path(tempfile.mkdtemp(prefix="cxdesk-bench-peer-"))
    peer_env, token, queue = peer_project(peer_python, log_dir / "peer", peer_url)
    os.environ["CXDESK_API_RATE"] = common.server_env(public_url="", conn_max_age=0)["CXDESK_API_RATE"]
    common.django_setup()
    key = setup()
    ours_port, peer_port = common.free_port(), common.free_port()
    ours, peer = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{peer_port}"
    print(f"{common.now_utc()}, load average before: {common.load_average()}; logs in {log_dir}")

    def ours_creates(n: int, tag: str) -> list:
        h = {"Authorization": f"Bearer {key}"}
        return [
            ("POST", f"{ours}/api/v1/tickets/", {"json": payload(f"{tag}{i}-{uuid.uuid4().hex[:6]}@b.example", i),
                                                  "headers": h})
            for i in range(n)
        ]  # fmt: skip

    def ours_floor(n: int) -> list:
        # The API's floor: an authenticated GET of an empty list (the key, the rate count,
        # DRF's cycle, one query). No create can be answered faster than this.
        return [("GET", f"{ours}/api/v1/tags/", {"headers": {"Authorization": f"Bearer {key}"}})] * n

    def peer_creates(n: int, tag: str) -> list:
        h = {"Authorization": f"Token {token}"}
        return [
            ("POST", f"{peer}/api/tickets/", {"json": {
                "queue": queue, "title": f"Order {i} has not arrived", "priority": 3,
                "description": "Hello, I ordered last week and nothing has come yet. Can you check?",
                "submitter_email": f"{tag}{i}-{uuid.uuid4().hex[:6]}@b.example"}, "headers": h})
            for i in range(n)
        ]  # fmt: skip

    env = common.server_env(public_url=ours, conn_max_age=60)
    rounds = []
    with common.Servers(log_dir) as servers:
        servers.celery(env, concurrency=2)
        servers.gunicorn(ours_port, env, workers=2, worker_class="gthread", threads=4)
        cmd = [str(peer_python), "-m", "gunicorn", "django.core.wsgi:get_wsgi_application()", "--bind",
               f"127.0.0.1:{peer_port}", "--workers", "2", "--worker-class", "gthread", "--threads", "4",
               *common.one_connection_a_thread("gthread", 4)]  # fmt: skip
        proc = servers.start("peer", cmd, {**peer_env, "PATH": os.environ.get("PATH", "")})
        common.wait_http(f"{peer}/bench/bare/", proc, log_dir / "peer.log")
        for tag, todo in (("wo", ours_creates(4 * args.clients, "w")), ("wp", peer_creates(4 * args.clients, "w"))):
            warm = asyncio.run(common.http_load(todo, args.clients))
            assert not warm.errors(), (tag, warm.errors(), (log_dir / "peer.log").read_text()[-2000:])
        for r in range(args.rounds):
            ours_bare = common.bare_load(ours, clients=args.clients, requests=args.bare_requests)
            ours_load = asyncio.run(common.http_load(ours_creates(args.tickets, f"r{r}o"), args.clients))
            floor_load = asyncio.run(common.http_load(ours_floor(args.tickets), args.clients))
            peer_load = asyncio.run(common.http_load(peer_creates(args.tickets, f"r{r}p"), args.clients))
            peer_bare = common.bare_load(peer, clients=args.clients, requests=args.bare_requests)
            assert not ours_load.errors(), ours_load.errors()
            assert not peer_load.errors(), peer_load.errors()
            assert not floor_load.errors(), floor_load.errors()
            row = {
                "round": r + 1,
                "ours_per_s": ours_load.rate,
                "ours_p95_ms": common.pct(ours_load.latencies, 95) * 1000,
                "peer_per_s": peer_load.rate,
                "peer_p95_ms": common.pct(peer_load.latencies, 95) * 1000,
                "ours_bare_per_s": ours_bare.rate,
                "peer_bare_per_s": peer_bare.rate,
                "ours_floor_per_s": floor_load.rate,
            }
            row["ours_over_peer"] = row["ours_per_s"] / row["peer_per_s"]
            row["floor_over_peer"] = row["ours_floor_per_s"] / row["peer_per_s"]
            rounds.append(row)
            print(json.dumps(row))
    print(f"load average after: {common.load_average()}")
    print(
        f"\nPOST a ticket for a new customer email, {args.clients} clients, gunicorn 2 gthread×4 workers each, "
        f"{args.tickets} per server and round:\n"
        "round  cxdesk/s (p95 ms, ÷ its bare)   django-helpdesk 2.6.1/s (p95 ms, ÷ its bare)   cxdesk ÷ peer"
        "   cxdesk's API floor/s ÷ peer"
    )
    for row in rounds:
        print(
            f"{row['round']:>5}  {row['ours_per_s']:8.1f} ({row['ours_p95_ms']:4.0f}, "
            f"{row['ours_per_s'] / row['ours_bare_per_s']:.3f})        "
            f"{row['peer_per_s']:8.1f} ({row['peer_p95_ms']:5.0f}, {row['peer_per_s'] / row['peer_bare_per_s']:.3f})"
            f"                        {row['ours_over_peer']:.2f}×"
            f"          {row['ours_floor_per_s']:7.1f}  {row['floor_over_peer']:.2f}×"
        )
    median = statistics.median(row["ours_over_peer"] for row in rounds)
    print(f"median cxdesk ÷ peer: {median:.2f}× (issue 12's goal: ≥ 5×)")
    floor = statistics.median(row["floor_over_peer"] for row in rounds)
    print(
        f"median of cxdesk's API floor (an authenticated GET of an empty list) ÷ the peer's create: {floor:.2f}×"
        " — the most a create could reach here, were its own work free"
    )


if __name__ == "__main__":
    main()
