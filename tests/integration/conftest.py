"""Real services for integration tests: PostgreSQL, Redis, and a real Celery worker
process running against the test database.

Integration tests are transactional (`django_db(transaction=True)`) so that the
worker, a separate process, sees committed rows. With CI=true a missing service
fails the test; elsewhere it skips with the reason."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"integration service missing in CI: {reason}")
    pytest.skip(reason)


def redis_url() -> str:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        _missing("REDIS_URL is not set (integration tests need Redis)")
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 2).close()
    except OSError:
        _missing(f"Redis is not answering at {url}")
    return url


@pytest.fixture
def live_redis() -> str:
    return redis_url()


def _test_database_url() -> str:
    if connection.vendor != "postgresql":
        _missing("integration tests run on PostgreSQL (set DATABASE_URL)")
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def celery_worker_process(transactional_db, settings, tmp_path, live_redis):
    """A real `celery worker` (and beat when asked) in a subprocess, on the test
    database and a Redis broker. Tasks sent by the test go through Redis to it."""
    from cxdesk.celery import app

    database_url = _test_database_url()
    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    app.conf.broker_url = live_redis
    app._pool = None  # a producer pool cached by an earlier test may point at another broker
    app.amqp._producer_pool = None
    # Drop stale messages from an earlier run in this Redis database.
    with app.connection_for_write() as conn:
        for queue in ("default", "inbound", "outbound", "webhooks"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # noqa: BLE001, S110 - a queue that does not exist yet has nothing to purge
                pass
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": live_redis,
        "CELERY_BROKER_URL": live_redis,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CXDESK_VAR_DIR": str(tmp_path / "worker-var"),
        "EMAIL_BACKEND": os.environ.get("WORKER_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend"),
        "PYTHONPATH": str(ROOT),
    }
    procs: list[subprocess.Popen] = []

    def start(*, beat: bool = False, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cxdesk",
            "worker",
            "-Q",
            "default,inbound,outbound,webhooks",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
            f"--hostname=test-{os.getpid()}-{len(procs)}@%h",
        ]
        if beat:
            cmd += ["-B", "--schedule", str(tmp_path / "beat-schedule")]
        log = (tmp_path / f"worker-{len(procs)}.log").open("wb")
        # Its own process group: `-B` runs beat as a child process, which must end with it.
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        _wait_ready(tmp_path / f"worker-{len(procs) - 1}.log", proc)
        return proc

    start.log_dir = tmp_path  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        signal_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
        signal_group(proc, signal.SIGKILL)  # what is left of the group (an embedded beat)
    app.conf.task_always_eager = True


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a worker's whole process group (the worker and its embedded beat)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_ready(log: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if " ready." in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited with {proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready after {timeout}s:\n{log.read_text(errors='replace')[-4000:]}")


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, message: str = "condition"):
    """Poll until predicate() is truthy (integration tests wait on other processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may stop, restart
    (same port) and flush — never the machine's shared instance."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            _missing("redis-server is not installed (apt-get install -y redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def flushall(self) -> None:
        import redis

        redis.Redis.from_url(self.url).flushall()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
