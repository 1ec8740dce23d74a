"""Tasks that tell an operator the background side is alive.

`beat_heartbeat` runs on beat's schedule (CXDESK_BEAT_HEARTBEAT_SECONDS) and records when it
ran and which scheduled run it was: `/readyz`, the metrics and `doctor` show beat's age, and
the multi-node test counts the runs (one per tick, whichever worker takes it).
`probe` is queued by `doctor --workers` (and the tests): a worker that takes it answers in
Redis; with `hold` seconds it also shows that a worker killed mid-task loses nothing.
"""

from __future__ import annotations

import time

from celery import shared_task

from .health import BEAT_KEY, redis_client

RUNS_KEY = "cxdesk:beat:runs"
PROBE_KEY = "cxdesk:probe:{token}"


@shared_task(name="cxdesk.diagnostics.beat_heartbeat", acks_late=True, ignore_result=True)
def beat_heartbeat() -> None:
    from celery import current_task

    client = redis_client()
    pipe = client.pipeline()
    pipe.set(BEAT_KEY, time.time())
    pipe.rpush(RUNS_KEY, current_task.request.id or "?")
    pipe.ltrim(RUNS_KEY, -1000, -1)
    pipe.execute()


@shared_task(name="cxdesk.diagnostics.probe", acks_late=True, ignore_result=True)
def probe(token: str, hold: float = 0.0) -> None:
    import os
    import socket

    client = redis_client()
    key = PROBE_KEY.format(token=token)
    client.rpush(key + ":started", f"{socket.gethostname()}:{os.getpid()}")
    client.expire(key + ":started", 3600)
    if hold:
        time.sleep(min(hold, 60.0))
    client.rpush(key, f"{socket.gethostname()}:{os.getpid()}")
    client.expire(key, 3600)
