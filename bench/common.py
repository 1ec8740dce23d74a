"""Shared parts of the benchmarks: a fresh database, the servers (gunicorn with the app and
a bare view, uvicorn, a real Celery worker), signed Twilio requests, agents with sessions,
an HTTP load generator, percentiles and the ratio to the bare view.

Every benchmark prints its figures beside a bare Django view (`bench/wsgi_bare.py`,
`/bench/bare/`) served by the same server processes in the same run (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
QUEUES = ("default", "inbound", "outbound", "webhooks")


# --- figures -----------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0–100, nearest rank) of `values`; nan when empty."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


# --- database and Django ------------------------------------------------------------------


def require_env(*, redis: bool = True) -> tuple[str, str]:
    url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not url.startswith("postgres") or (redis and not redis_url):
        sys.exit("set DATABASE_URL (PostgreSQL; the database is dropped and recreated) and REDIS_URL")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["DJANGO_SETTINGS_MODULE"] = "cxdesk.settings"
    # Channel-layer groups of an earlier run in the same Redis database are not ours.
    os.environ.setdefault("CHANNELS_PREFIX", f"bench{uuid.uuid4().hex[:8]}")
    return url, redis_url


def recreate_database(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def django_setup(*, migrate: bool = True) -> None:
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def command_json(*args: str) -> dict:
    """Run a management command (a stable interface: DESIGN.md) and parse its JSON output."""
    from django.core.management import call_command

    out = StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def twilio_inbox(*, name: str, token: str, public_url: str, number: str = "+48500000000") -> int:
    """A Twilio SMS inbox whose signatures are computed for `public_url` (the server's base)."""
    made = command_json(
        "create_inbox", "twilio", name,
        "--set", f"auth_token={token}", "--set", f"phone_number={number}",
        "--set", "default_region=PL", "--set", f"public_url={public_url}", "--set", "transport=file",
    )  # fmt: skip
    return made["id"]


def seed_agents(
    count: int, *, inbox_name: str, inbox_kind: str = "twilio", prefix: str = "agent"
) -> list[tuple[int, str]]:
    """`count` agents in one team attached to the inbox (so they see its tickets), each with
    a database session; returns (user id, session key) pairs."""
    from tickets.models import Team

    team, _ = Team.objects.get_or_create(name=f"Bench {prefix}")
    command_json("create_inbox", inbox_kind, inbox_name, "--set", f"default_team={team.name}")
    return team_agent_sessions(team, count, prefix=prefix)


def team_agent_sessions(team, count: int, *, prefix: str = "agent") -> list[tuple[int, str]]:
    """`count` staff members of `team`, each signed in with a database session; returns
    (user id, session key) pairs for their cookies."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    User = get_user_model()
    sessions = []
    for i in range(count):
        user = User.objects.create_user(f"{prefix}{i}", password=None, is_staff=True, first_name=f"Agent{i}")
        team.members.add(user)
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append((user.pk, store.session_key))
    return sessions


def twilio_sms(url: str, token: str, *, sender: str, body: str, to: str = "+48500000000") -> tuple[dict, str]:
    """The form fields of an inbound SMS webhook and their X-Twilio-Signature for `url`."""
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": sender, "To": to,
              "Body": body, "NumMedia": "0"}  # fmt: skip
    return params, RequestValidator(token).compute_signature(url, params)


# --- servers ------------------------------------------------------------------------------


def one_connection_a_thread(worker_class: str, threads: int) -> list[str]:
    """gunicorn options that spread the clients' connections over every gthread worker.

    A gthread worker accepts every connection it is offered and keeps it alive: the clients'
    8 keep-alive connections landed 8/0 or 7/1 on the two workers in most phases of the runs
    watched with `ss -tnp`, so the load, the bare view's too, ran on one core (the GIL) and
    the ratios swung with it. A worker that holds no more connections than it has threads takes
    its share; it then answers each request on a connection of its own (`Connection: close`),
    as nginx's requests to deploy/'s sync workers are, and as providers' webhooks arrive."""
    return ["--worker-connections", str(threads)] if worker_class == "gthread" else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(*, public_url: str, conn_max_age: int, **extra: str) -> dict[str, str]:
    """The environment of the app's processes: production settings, real broker and layer."""
    redis_url = os.environ["REDIS_URL"]
    return {
        **os.environ,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
        "PUBLIC_URL": public_url,
        "LOG_LEVEL": "WARNING",
        "CONN_MAX_AGE": str(conn_max_age),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", redis_url),
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CXDESK_API_RATE": "1000000/min",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@dataclass
class Servers:
    """Processes started by a benchmark, each in its own process group, stopped together."""

    log_dir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def gunicorn(self, port: int, env: dict[str, str], *, workers: int = 2, worker_class: str = "sync",
                 threads: int = 1) -> subprocess.Popen:  # fmt: skip
        cmd = [sys.executable, "-m", "gunicorn", "bench.wsgi_bare:application", "-c",
               str(ROOT / "deploy" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--worker-class", worker_class, "--threads", str(threads),
               "--max-requests", "0"] + one_connection_a_thread(worker_class, threads)  # fmt: skip
        proc = self.start(f"gunicorn-{port}", cmd, env)
        wait_http(f"http://127.0.0.1:{port}/bench/bare/", proc, self.log_dir / f"gunicorn-{port}.log")
        return proc

    def uvicorn(self, port: int, env: dict[str, str], *, workers: int = 1) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "uvicorn", "bench.webchat_asgi:application", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
        proc = self.start(f"uvicorn-{port}", cmd, env)
        wait_http(f"http://127.0.0.1:{port}/bench/bare/", proc, self.log_dir / f"uvicorn-{port}.log")
        return proc

    def celery(self, env: dict[str, str], *, concurrency: int = 1, pool: str = "prefork") -> subprocess.Popen:
        name = f"celery-{len(self.procs)}"
        cmd = [sys.executable, "-m", "celery", "-A", "cxdesk", "worker", "-Q", ",".join(QUEUES),
               f"--pool={pool}", f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
               "--loglevel=INFO", f"--hostname=bench-{os.getpid()}-{name}@%h"]  # fmt: skip
        proc = self.start(name, cmd, {**env, "CELERY_TRACE_LOG_LEVEL": "WARNING"})
        log = self.log_dir / f"{name}.log"
        deadline = time.monotonic() + 60
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"celery worker did not start; see {log}")
            time.sleep(0.2)
        return proc

    def stop(self) -> None:
        """SIGTERM to each main process (gunicorn, uvicorn and Celery shut down warm and end
        their children), then SIGKILL to whatever is left of each process group."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self.procs.clear()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own loopback server
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout:.0f}s; see {log}")


def queues_empty(redis_url: str) -> bool:
    """No Celery message waiting in the broker's queues (kombu's Redis lists) nor unacked."""
    import redis

    client = redis.Redis.from_url(redis_url)
    return not any(client.llen(q) for q in QUEUES) and not client.hlen("unacked")


def background_pending() -> int:
    """Rows whose background work is not done yet: outbox tasks, raw deliveries not processed."""
    from outbox.models import OutboxTask

    pending = OutboxTask.objects.filter(status=OutboxTask.Status.PENDING).count()
    for module in ("channels_app.models", "tickets.models"):  # wherever issue 12 leaves it
        RawInbound = getattr(importlib.import_module(module), "RawInbound", None)
        if RawInbound is not None:
            return pending + RawInbound.objects.filter(status=RawInbound.Status.PENDING).count()
    return pending


# --- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    latencies: list[float]
    statuses: list[int]
    seconds: float
    sent_at: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")

    def summary(self) -> str:
        return f"{self.rate:.1f}/s, p50 {ms(pct(self.latencies, 50))}, p95 {ms(pct(self.latencies, 95))}"

    def errors(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s in self.statuses:
            if s >= 400 or s == 0:
                out[s] = out.get(s, 0) + 1
        return out


def event_loop_policy() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def http_load(requests: Iterable[tuple[str, str, dict]], clients: int) -> Load:
    """Send every (method, url, aiohttp kwargs) with `clients` concurrent connections, as fast
    as they are answered; the latency of each from sending to the whole answer read."""
    import aiohttp

    todo = list(requests)
    latencies: list[float] = []
    statuses: list[int] = []
    sent_at: list[float] = [0.0] * len(todo)
    cursor = iter(range(len(todo)))

    async def client(session: aiohttp.ClientSession) -> None:
        for i in cursor:
            method, url, kwargs = todo[i]
            t0 = time.perf_counter()
            sent_at[i] = t0
            try:
                async with session.request(method, url, **kwargs) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            latencies.append(time.perf_counter() - t0)
            statuses.append(status)

    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return Load(latencies, statuses, elapsed, sent_at)


def bare_load(base: str, *, clients: int, requests: int) -> Load:
    """The floor: GET /bench/bare/ on the same server with the same concurrency."""
    warm = asyncio.run(http_load([("GET", f"{base}/bench/bare/", {})] * (clients * 10), clients))
    assert not warm.errors(), warm.errors()
    return asyncio.run(http_load([("GET", f"{base}/bench/bare/", {})] * requests, clients))


def bare_mean(before: Load, after: Load) -> float:
    """The bare view's req/s for a run's ratios: measured before the load and again after it
    (this machine's speed drifts within a run), their mean."""
    return (before.rate + after.rate) / 2


def ratio(value: float, bare: float) -> str:
    return f"{value / bare:.3f}× the bare view" if bare else "n/a"


def profile_top(fn, *, repeat: int = 10, top: int = 20, only: str = "") -> str:
    """cProfile `fn()` called `repeat` times in this process; the `top` functions by
    cumulative time (per call of `fn` = the figure ÷ `repeat`), optionally only those whose
    "file:line(function)" matches the regular expression `only` (skips framework wrappers)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        fn()
    profiler.disable()
    out = StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(*([only] if only else []), top)
    return out.getvalue()
