"""Several nodes on one machine, started the way `make serve` starts them (deploy/serve.py
with --web 2 --asgi 2 --workers 2 and one beat, nginx in front), against the test
PostgreSQL and Redis:

- the proxy gives one address (health, static with caching, body limit, /metrics refused);
- a signed Twilio webhook posted to gunicorn node A reaches an agent's websocket on
  uvicorn node B, and presence set on node A is seen on node B;
- each Celery task runs once across the two workers (each reply is written to the outbox
  once) and beat's heartbeat runs once per tick;
- a worker killed (SIGKILL, whole process group) in the middle of a task loses nothing:
  the unacknowledged task goes back to the queue and the other worker runs it, once.

One cluster for the module (starting it is most of the cost)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from .conftest import ROOT, _test_database_url, redis_url, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

TOKEN = "metrics-token-for-tests"
TWILIO_TOKEN = "twilio-auth-token"


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports() -> tuple[int, int]:
    for _ in range(50):
        base = random.randrange(20000, 40000, 1000)  # noqa: S311
        listen = base + 50
        if all(_free(p) for p in (listen, base + 1, base + 2, base + 101, base + 102)):
            return listen, base
    raise RuntimeError("no free ports")


class Cluster:
    def __init__(self, proc, state, var_dir: Path, log: Path, redis) -> None:
        self.proc, self.state, self.var_dir, self.log, self.redis = proc, state, var_dir, log, redis
        self.proxy = f"http://{state['listen']}"
        self.web = [f"http://127.0.0.1:{p}" for p in state["wsgi"]]
        self.ws = [f"ws://127.0.0.1:{p}" for p in state["asgi"]]

    def pid(self, name: str) -> int:
        return self.state["processes"][name]["pid"]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def cluster(django_db_setup, django_db_blocker, tmp_path_factory):
    from django.conf import settings

    from cxdesk.health import redis_client

    url = redis_url()
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    client = redis_client(url)
    for key in ("cxdesk:beat:runs", "cxdesk:beat:last", "default", "inbound", "outbound", "webhooks"):
        client.delete(key)
    # Websocket counts left by earlier tests' servers (killed with sockets open, so their
    # last count stays until it expires): only this cluster's sockets are to be counted.
    for key in client.scan_iter(match="cxdesk:ws:conns:*"):
        client.delete(key)
    var_dir = tmp_path_factory.mktemp("cluster") / "var"
    (var_dir / "static" / "cxdesk").mkdir(parents=True)
    (var_dir / "static" / "cxdesk" / "probe.css").write_text("body{color:#123}\n")
    listen, base = _ports()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": url,
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SECRET_KEY": settings.SECRET_KEY,
        "CXDESK_VAR_DIR": str(var_dir),
        "MEDIA_ROOT": str(var_dir / "media"),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "GUNICORN_WORKERS": "1",
        "CELERY_CONCURRENCY": "1",
        "CXDESK_BEAT_HEARTBEAT_SECONDS": "1",
        # a dead worker's unacknowledged task goes back to the queue after 4 s (production: 1 h)
        "CELERY_VISIBILITY_TIMEOUT": "4",
        "CELERY_UNACKED_RESTORE_INTERVAL": "1",
        "CELERY_UNACKED_RESTORE_THROTTLE": "1",
        "CXDESK_METRICS_TOKEN": TOKEN,
        "CXDESK_METRICS_ALLOW": "10.255.255.254",  # not us: the proxy must refuse /metrics
        "CXDESK_MAX_BODY": "1m",
        "LOG_FORMAT": "json",
        # nginx started as root runs its workers as nobody, who cannot read pytest's 0700 tmp dirs
        "CXDESK_NGINX_USER": "root",
    }
    log = var_dir.parent / "serve.log"
    cmd = [sys.executable, str(ROOT / "deploy" / "serve.py"), "--listen", f"127.0.0.1:{listen}",
           "--internal-base", str(base), "--web", "2", "--asgi", "2", "--workers", "2", "--pool", "solo",
           "--skip-setup", "--keep-going"]  # fmt: skip
    with log.open("ab") as out:  # O_APPEND: nginx reopens /dev/stdout and appends too
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    state_file = var_dir / "run" / "serve.json"
    try:
        wait_for(lambda: state_file.exists() or proc.poll() is not None, timeout=30, message="serve.py to start")
        if proc.poll() is not None:
            pytest.fail(f"serve.py exited: {log.read_text()[-4000:]}")
        state = json.loads(state_file.read_text())
        cluster = Cluster(proc, state, var_dir, log, client)

        def up() -> bool:
            try:
                for base_url in [cluster.proxy, *cluster.web, *(w.replace("ws://", "http://") for w in cluster.ws)]:
                    requests.get(base_url + "/healthz", timeout=2).raise_for_status()
            except requests.RequestException:
                return False
            return log.read_text(errors="replace").count(" ready.") >= 2

        wait_for(up, timeout=90, interval=0.5, message="the proxy, 2 web, 2 ASGI nodes and 2 workers")
        yield cluster
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: serve.py stops every process
        try:
            code = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        leftovers = [
            name
            for name, p in json.loads(state_file.read_text())["processes"].items()
            if state_file.exists() and _alive(p["pid"])
        ]
        for name in leftovers:
            os.killpg(json.loads(state_file.read_text())["processes"][name]["pid"], signal.SIGKILL)
        assert code is not None, "serve.py did not stop on SIGINT"
        assert not leftovers, f"processes left running after Ctrl-C: {leftovers}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _twilio_inbox(cluster: Cluster):
    from tests.channels_app.factories import InboxFactory

    return InboxFactory(
        kind="twilio",
        name="SMS",
        transport="file",
        config={"default_region": "PL", "phone_number": "+48500000000", "public_url": cluster.web[0]},
        secrets={"auth_token": TWILIO_TOKEN},
    )


def _post_sms(
    cluster: Cluster, inbox, *, body: str, sender: str = "+48600100200", request_id: str = ""
) -> requests.Response:
    from twilio.request_validator import RequestValidator

    url = f"{cluster.web[0]}/hooks/twilio/{inbox.pk}/"
    params = {"MessageSid": "SM" + uuid.uuid4().hex, "From": sender, "To": "+48500000000", "Body": body}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature, **({"X-Request-ID": request_id} if request_id else {})}
    return requests.post(url, data=params, headers=headers, timeout=10)


def _ingested_ticket():
    """The ticket of the webhook just answered: the cluster runs the production default
    (CXDESK_WEBHOOKS=queued), so a worker ingests it right after the answer."""
    from tickets.models import Ticket

    return wait_for(lambda: Ticket.objects.first(), timeout=20, message="the webhook's message ingested by a worker")


def _session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _socket(base: str, user):
    origin = base.replace("ws://", "http://")
    return connect(f"{base}/ws/desk/", additional_headers={"Cookie": _session_cookie(user)}, origin=origin)


def _receive_until(ws, predicate, timeout: float = 15):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            event = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        seen.append(event.get("event"))
        if predicate(event):
            return event
    raise AssertionError(f"no matching websocket event in {timeout}s; saw {seen}")


def _use_broker(settings) -> None:
    """The test process queues tasks for the cluster's workers (not eagerly)."""
    from cxdesk.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    app.conf.task_always_eager = False
    app.conf.broker_url = redis_url()


def test_one_address_through_the_proxy(cluster):
    response = requests.get(cluster.proxy + "/healthz", headers={"X-Request-ID": "req-from-client-1"}, timeout=5)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-from-client-1"
    ready = requests.get(cluster.proxy + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"database", "migrations", "redis", "broker"}

    static = requests.get(cluster.proxy + "/static/cxdesk/probe.css", timeout=5)
    assert static.status_code == 200
    assert static.text == "body{color:#123}\n"
    assert "max-age=3600" in static.headers["Cache-Control"]
    assert static.headers["Server"] == "nginx"  # served by the proxy, not Django

    assert requests.post(cluster.proxy + "/hooks/twilio/1/", data=b"x" * 2_000_000, timeout=10).status_code == 413
    # /metrics: the proxy refuses it from outside its allow list; a node wants the token.
    assert (
        requests.get(cluster.proxy + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code
        == 403
    )
    assert requests.get(cluster.web[1] + "/metrics", timeout=5).status_code == 404
    metrics = requests.get(cluster.web[1] + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert metrics.status_code == 200
    assert 'cxdesk_celery_queue_depth{queue="outbound"}' in metrics.text
    assert "django_http_requests_total_by_method_total" in metrics.text
    # The proxy's access log is JSON with the same request id.
    wait_for(lambda: '"request_id":"req-from-client-1"' in cluster.log.read_text(), message="the access log line")


def test_webhook_on_node_a_reaches_agent_on_node_b_and_presence_is_shared(cluster, agent):
    from tests.tickets.factories import AgentFactory

    inbox = _twilio_inbox(cluster)
    first = _post_sms(cluster, inbox, body="My parcel is late")
    assert first.status_code == 200, first.text
    ticket = _ingested_ticket()
    bob = AgentFactory(username="bob", first_name="Bob")

    with _socket(cluster.ws[1], bob) as bob_ws, _socket(cluster.ws[0], agent) as ana_ws:
        bob_ws.send(json.dumps({"subscribe_ticket": ticket.pk}))
        _receive_until(bob_ws, lambda e: e.get("event") == "presence")
        ana_ws.send(json.dumps({"subscribe_ticket": ticket.pk}))  # Ana is on node A
        seen = _receive_until(bob_ws, lambda e: e.get("event") == "presence" and "Ana" in e.get("html", ""))
        assert "Ana is viewing" in seen["html"]  # written to the shared cache by node A, read on node B

        started = time.monotonic()
        request_id = f"req-{uuid.uuid4().hex}"
        second = _post_sms(cluster, inbox, body="Still nothing arrived", request_id=request_id)  # gunicorn A
        assert second.status_code == 200, second.text
        event = _receive_until(
            bob_ws,
            lambda e: e.get("event") == "message.created" and "Still nothing arrived" in e.get("html", ""),
        )
        assert event["ticket_id"] == ticket.pk
        assert time.monotonic() - started < 10

        # Both ASGI nodes' sockets are counted in the metrics, whichever web node is scraped.
        metrics = requests.get(cluster.web[0] + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert "cxdesk_websocket_connections 2.0" in metrics.text

    # The webhook's request id reaches the worker's log lines for the task it queued.
    def tagged() -> list[dict]:
        lines = [json.loads(x) for x in cluster.log.read_text(errors="replace").splitlines() if request_id in x]
        return lines if any(line.get("task_id") for line in lines) else []

    lines = wait_for(tagged, timeout=20, message="a worker log line with the webhook's request id")
    assert {line["request_id"] for line in lines} == {request_id}
    assert any(line.get("logger") == "cxdesk.tasks" and line.get("task") for line in lines)


def test_each_task_runs_once_and_beat_once(cluster, agent, settings):
    from tickets.models import Message
    from tickets.services import reply

    inbox = _twilio_inbox(cluster)
    assert _post_sms(cluster, inbox, body="Hello").status_code == 200
    ticket = _ingested_ticket()
    _use_broker(settings)
    started = time.monotonic()
    beat_from = cluster.redis.llen("cxdesk:beat:runs")
    replies = [reply(ticket=ticket, author=agent, body=f"answer {i}") for i in range(6)]
    outbox = cluster.var_dir / "outbox" / "twilio"

    def all_sent() -> bool:
        return Message.objects.filter(pk__in=[m.pk for m in replies], status="sent").count() == len(replies)

    wait_for(all_sent, timeout=30, message="both workers to send the six replies")
    time.sleep(1.5)  # a duplicate would show up now
    files = sorted(outbox.glob("*.json"))
    per_message = {m.pk: [f for f in files if f"-{m.pk}-file-" in f.name] for m in replies}
    assert {pk: len(found) for pk, found in per_message.items()} == {m.pk: 1 for m in replies}
    texts = sorted(json.loads(f.read_text())["text"] for f in files)
    assert texts == sorted(f"answer {i}" for i in range(6))

    # Beat ticks every second: each tick's task ran once, whichever worker took it.
    wait_for(lambda: cluster.redis.llen("cxdesk:beat:runs") - beat_from >= 3, timeout=15, message="beat ticks")
    window = time.monotonic() - started
    runs = cluster.redis.lrange("cxdesk:beat:runs", 0, -1)
    assert len(runs) == len(set(runs)), "a beat task ran twice"
    assert len(runs) - beat_from <= window + 2, "more beat runs than ticks: two beats?"
    ready = requests.get(cluster.proxy + "/readyz", timeout=10).json()
    assert ready["info"]["beat_heartbeat_age_seconds"] < 5

    # `doctor --workers` sees a worker answer and beat alive.
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    with pytest.raises(CommandError):  # this test configuration has findings (SECRET_KEY…)
        call_command("doctor", "--offline", "--workers", "--timeout", "15", stdout=out)
    assert "OK    workers: a worker answered" in out.getvalue()
    assert "OK    beat: heartbeat" in out.getvalue()


def test_killing_a_worker_mid_task_loses_nothing(cluster, settings):
    from cxdesk.celery import app

    _use_broker(settings)
    token = uuid.uuid4().hex
    key = f"cxdesk:probe:{token}"
    app.send_task("cxdesk.diagnostics.probe", args=[token, 2.0])  # held 2 s: under the 4 s visibility timeout
    first = wait_for(lambda: cluster.redis.lrange(key + ":started", 0, -1), timeout=20, message="a worker to take it")
    pid = int(first[0].rsplit(":", 1)[1])
    names = {cluster.pid(n): n for n in ("worker0", "worker1")}
    assert pid in names, f"probe ran in {first[0]}, not a worker of ours {names}"
    os.killpg(pid, signal.SIGKILL)  # mid-task: no ack, no warm shutdown
    done = wait_for(lambda: cluster.redis.lrange(key, 0, -1), timeout=40, message="the other worker to run it")
    assert len(done) == 1
    assert int(done[0].rsplit(":", 1)[1]) != pid
    time.sleep(1)
    assert cluster.redis.llen(key) == 1, "ran more than once"
    assert cluster.redis.llen(key + ":started") == 2  # taken twice, completed once
