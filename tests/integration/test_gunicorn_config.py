"""deploy/gunicorn.conf.py with threads: connections are shared by the workers.

gunicorn's gthread worker accepts every connection it is offered and keeps it alive, so a
proxy's kept-alive connections could all land on one worker: one core for the whole node.
The deploy configuration caps a worker's connections at its threads. A real gunicorn, started
here with that file, serves `pid_app` (its worker's pid after a wait)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

from .conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, query: str = "") -> tuple[str, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/?{query}")
        response = conn.getresponse()
        return response.read().decode(), response.getheader("Connection")
    finally:
        conn.close()


def test_a_threaded_worker_holds_no_more_connections_than_threads(tmp_path):
    port = _free_port()
    env = {**os.environ, "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "2", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "gunicorn", "tests.integration.pid_app:application",
           "-c", str(ROOT / "deploy" / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        pids: set[str] = set()
        while len(pids) < 2:  # both workers up and answering
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                pids.add(_get(port)[0])
            except OSError:
                time.sleep(0.1)

        # Four requests at once, each holding its worker's thread for a while: a worker that
        # took two stops accepting, so the other two go to the other worker.
        answers: list[tuple[str, str | None]] = []
        start = threading.Barrier(4)

        def one() -> None:
            start.wait()
            answers.append(_get(port, "0.5"))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(Counter(pid for pid, _ in answers).values()) == [2, 2], answers
        # and it keeps none alive afterwards, where a proxy's pool would pin it to one worker
        assert {connection for _, connection in answers} == {"close"}, answers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
