"""Web chat under load: V widget visitors on /ws/chat/ and A agents on /ws/desk/, on one
machine, messages both ways; prints p50/p95/max delivery latency and, as the ratio
convention of issue 12 asks, the same server's bare Django view (req/s and p95 at the
same concurrency) measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_chat_bench REDIS_URL=redis://127.0.0.1:6379/7 \\
        .venv/bin/python bench/webchat_load.py --visitors 200 --agents 20 --messages 5

The database in DATABASE_URL is dropped and recreated. The server is uvicorn (--workers,
default 2) serving `bench.webchat_asgi:application` (cxdesk.asgi plus /bench/bare/), with
the Redis channel layer and cache; Celery runs eagerly (the reply's send task runs inside
the process that stores the reply, as a worker would right after).

- visitor → agent: from the visitor's `message` frame being sent to the `message.created`
  event (with its rendered HTML) reaching the agent's desk socket subscribed to the ticket
  (includes the whole ingest: identity, threading, storing, broadcasting on commit).
- agent → visitor: from calling `tickets.services.reply()` (stored queued, sent by the
  adapter, pushed through the channel layer) to the message frame reaching the visitor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, pct, team_agent_sessions  # noqa: E402
from bench.common import recreate_database as recreate  # noqa: E402

ORIGIN = "http://shop.bench.example"
TEXT = re.compile(r"message (\d+) from (\d+)\b")


def setup(agents: int) -> tuple[int, list[tuple[int, str]]]:
    from django.core.management import call_command

    from channels_app.services import inbox_upsert

    call_command("migrate", verbosity=0)
    from tickets.models import Team

    inbox = inbox_upsert(kind="webchat", name="Bench chat", values={"allowed_origins": ORIGIN})
    # Agents see the tickets of their teams' inboxes (accounts.roles): the chat team's.
    team = Team.objects.create(name="Chat")
    inbox.default_team = team
    inbox.save(update_fields=["default_team"])
    sessions = team_agent_sessions(team, agents)
    return inbox.pk, sessions


async def bare_baseline(base: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(session):
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            async with session.get(f"{base}/bench/bare/") as r:
                await r.read()
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"rps": len(latencies) / elapsed, "p95_ms": pct(latencies, 95) * 1000, "n": len(latencies)}


async def run(args, port: int, inbox_id: int, sessions: list[tuple[int, str]]) -> dict:
    import websockets

    ws_base = f"ws://127.0.0.1:{port}"
    sent_at: dict[str, float] = {}  # client_id -> t0
    id_to_client: dict[int, str] = {}
    v2a: list[float] = []
    reply_at: dict[str, float] = {}
    a2v: list[float] = []
    tickets: dict[int, int] = {}  # visitor index -> ticket id
    ready = asyncio.Event()
    done_sending = asyncio.Event()

    async def visitor(i: int, sock) -> None:
        async for raw in sock:
            frame = json.loads(raw)
            if frame.get("type") == "ack":
                id_to_client[frame["id"]] = frame["client_id"]
            elif frame.get("type") == "message" and frame.get("from") == "agent":
                t0 = reply_at.pop(frame["text"], None)
                if t0 is not None:
                    a2v.append(time.perf_counter() - t0)

    async def agent(sock) -> None:
        async for raw in sock:
            frame = json.loads(raw)
            if frame.get("event") == "message.created" and frame.get("html"):
                # The broadcast can beat the visitor's ack: match on the text in the HTML.
                found = TEXT.search(frame["html"])
                t0 = sent_at.pop(f"v{found.group(2)}-{found.group(1)}", None) if found else None
                if t0 is not None:
                    v2a.append(time.perf_counter() - t0)

    # Visitors connect and open their conversation (one ticket each).
    visitors = []
    for i in range(args.visitors):
        sock = await websockets.connect(
            f"{ws_base}/ws/chat/?inbox={inbox_id}", origin=ORIGIN, open_timeout=30, max_queue=None
        )
        await sock.send(json.dumps({"type": "start"}))
        json.loads(await sock.recv())
        await sock.send(json.dumps({"type": "message", "text": f"Hello from visitor {i}", "client_id": "open"}))
        while True:
            frame = json.loads(await sock.recv())
            if frame.get("type") == "message":
                break
        visitors.append(sock)
    from tickets.models import Ticket

    loop = asyncio.get_running_loop()
    pool = ThreadPoolExecutor(max_workers=4)
    ticket_ids = await loop.run_in_executor(
        pool, lambda: list(Ticket.objects.order_by("pk").values_list("pk", flat=True))
    )
    tickets.update(enumerate(ticket_ids))
    # Agents connect with their session cookies and open their share of the tickets.
    agent_socks = []
    for a, (_user_id, key) in enumerate(sessions):
        sock = await websockets.connect(
            f"{ws_base}/ws/desk/",
            origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": f"sessionid={key}"},
            open_timeout=30,
            max_queue=None,
        )
        for i in range(a, args.visitors, len(sessions)):
            await sock.send(json.dumps({"subscribe_ticket": tickets[i]}))
        agent_socks.append(sock)
    readers = [asyncio.create_task(visitor(i, s)) for i, s in enumerate(visitors)]
    readers += [asyncio.create_task(agent(s)) for s in agent_socks]
    await asyncio.sleep(2)
    ready.set()

    from django.contrib.auth import get_user_model

    from tickets import services

    users = await loop.run_in_executor(
        pool, lambda: list(get_user_model().objects.filter(is_staff=True).order_by("pk"))
    )

    def reply(ticket_id: int, text: str) -> None:
        from tickets.models import Ticket

        ticket = Ticket.objects.get(pk=ticket_id)
        reply_at[text] = time.perf_counter()
        services.reply(ticket=ticket, author=users[ticket_id % len(users)], body=text, channel="chat")

    rnd = random.Random(1)
    duration = args.messages * args.interval

    async def visitor_sends(i: int, sock) -> None:
        await asyncio.sleep(rnd.uniform(0, args.interval))
        for n in range(args.messages):
            client = f"v{i}-{n}"
            sent_at[client] = time.perf_counter()
            await sock.send(json.dumps({"type": "message", "text": f"message {n} from {i}", "client_id": client}))
            await asyncio.sleep(rnd.uniform(0.5, 1.5) * args.interval)

    async def agents_reply() -> None:
        # Agents answer about as often as visitors write (one reply per visitor message / 2).
        total = args.visitors * args.messages // 2
        gap = duration / max(1, total)
        futures = []
        for n in range(total):
            text = f"reply-{uuid.uuid4().hex[:12]}"
            futures.append(loop.run_in_executor(pool, reply, tickets[n % args.visitors], text))
            await asyncio.sleep(gap)
        await asyncio.gather(*futures)

    t0 = time.perf_counter()
    await asyncio.gather(*(visitor_sends(i, s) for i, s in enumerate(visitors)), agents_reply())
    sending = time.perf_counter() - t0
    await asyncio.sleep(5)  # let the last deliveries arrive
    for task in readers:
        task.cancel()
    for sock in visitors + agent_socks:
        await sock.close()
    done_sending.set()
    expected_v2a = args.visitors * args.messages
    expected_a2v = args.visitors * args.messages // 2
    return {
        "visitor_to_agent": {
            "delivered": len(v2a),
            "expected": expected_v2a,
            "p50_ms": pct(v2a, 50) * 1000,
            "p95_ms": pct(v2a, 95) * 1000,
            "max_ms": max(v2a, default=float("nan")) * 1000,
        },
        "agent_to_visitor": {
            "delivered": len(a2v),
            "expected": expected_a2v,
            "p50_ms": pct(a2v, 50) * 1000,
            "p95_ms": pct(a2v, 95) * 1000,
            "max_ms": max(a2v, default=float("nan")) * 1000,
        },
        "sending_seconds": sending,
        "messages_per_second": (len(v2a) + len(a2v)) / sending,
        "mean_v2a_ms": statistics.fmean(v2a) * 1000 if v2a else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--messages", type=int, default=3, help="messages per visitor")
    parser.add_argument("--interval", type=float, default=20.0, help="mean seconds between a visitor's messages")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or not os.environ.get("REDIS_URL"):
        sys.exit("set DATABASE_URL (PostgreSQL, recreated) and REDIS_URL (channel layer and cache)")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "1"
    os.environ["DJANGO_SETTINGS_MODULE"] = "cxdesk.settings"
    os.environ["CHANNELS_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}"  # no groups left over from an earlier run
    recreate(url)
    import django

    django.setup()
    inbox_id, sessions = setup(args.agents)
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "CXDESK_WEBCHAT_RATE": "1000",
    }
    import tempfile

    log = open(Path(tempfile.gettempdir()) / "cxdesk-webchat-bench.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.webchat_asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(args.workers), "--log-level", "warning", "--ws-max-queue", "256"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.3)
        time.sleep(2)
        base = f"http://127.0.0.1:{port}"
        bare = asyncio.run(bare_baseline(base, concurrency=args.visitors // 10 or 1, seconds=8))
        result = asyncio.run(run(args, port, inbox_id, sessions))
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    result["bare_view"] = bare
    result["ratio_v2a_p95_to_bare_p95"] = result["visitor_to_agent"]["p95_ms"] / bare["p95_ms"]
    result["ratio_a2v_p95_to_bare_p95"] = result["agent_to_visitor"]["p95_ms"] / bare["p95_ms"]
    result["ratio_msgs_to_bare_rps"] = result["messages_per_second"] / bare["rps"]
    print(json.dumps(result, indent=2))
    v, a = result["visitor_to_agent"], result["agent_to_visitor"]
    print(
        f"\n{args.visitors} visitors + {args.agents} agents, {args.workers} uvicorn workers:"
        f"\n  visitor→agent p95 {v['p95_ms']:.0f} ms (p50 {v['p50_ms']:.0f}, max {v['max_ms']:.0f}), "
        f"{v['delivered']}/{v['expected']} delivered"
        f"\n  agent→visitor p95 {a['p95_ms']:.0f} ms (p50 {a['p50_ms']:.0f}, max {a['max_ms']:.0f}), "
        f"{a['delivered']}/{a['expected']} delivered"
        f"\n  {result['messages_per_second']:.1f} messages/s delivered; bare view {bare['rps']:.0f} req/s, "
        f"p95 {bare['p95_ms']:.0f} ms at {max(1, args.visitors // 10)} concurrent (ratio msgs/bare "
        f"{result['ratio_msgs_to_bare_rps']:.3f}; p95 ratios {result['ratio_v2a_p95_to_bare_p95']:.1f}× / "
        f"{result['ratio_a2v_p95_to_bare_p95']:.1f}×)"
    )


if __name__ == "__main__":
    main()
