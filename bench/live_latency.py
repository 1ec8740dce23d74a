"""Live updates under load: webhook → the agent's open ticket, with A agents connected.

A agents (default 200, one team attached to a Twilio inbox, signed in with session cookies)
each hold a desk websocket (/ws/desk/ through uvicorn, the Redis channel layer) with one
ticket open (`subscribe_ticket`: joined `ticket.<id>`; every socket is also in `desk` and
`agent.<id>`, as in the browser). Signed Twilio SMS webhooks continuing those tickets are
posted to gunicorn (2 workers) at a fixed rate; a real Celery worker runs the background
work. Latency: from the POST being sent to the `message.created` frame (with the rendered
message) on the socket of the agent who has that ticket open.

With `--inbox-view`, every socket also follows the inbox's "All open" list, as the inbox
page does (`{"inbox": {"view": "open", "sort": "activity"}}`): each message then moves its
ticket's row to the top of every agent's list (one re-rendered row and the view counts per
socket, at most every 0.3 s, tickets/consumers.py). Also measured: from the POST to the
`ticket.activity` frame whose row shows the message, on every socket.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_bench_run REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/live_latency.py --agents 200 --rate 5 --messages 200

Prints p50/p95/max of that latency, frames lost (no frame within --grace seconds after the
last POST), the webhook's own p50/p95, and the bare view (gunicorn /bench/bare/, same
server, same run) with the ratio of the p95s. Issue 12's goal: p95 < 250 ms with 200 agents.
The database in DATABASE_URL is dropped and recreated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - a fake inbox secret
MARK = re.compile(r"live-(\d+)-([0-9a-f]{8})")


def sender(i: int) -> str:
    return f"+48{601_000_000 + i}"


async def measure(args, http: str, ws: str, inbox_id: int, sessions: list[tuple[int, str]]) -> dict:
    import aiohttp
    import websockets

    from tickets.models import Ticket

    url = f"{http}/hooks/twilio/{inbox_id}/"
    loop = asyncio.get_running_loop()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as client:

        async def post(i: int, body: str) -> tuple[int, float]:
            params, signature = common.twilio_sms(url, TOKEN, sender=sender(i), body=body)
            t0 = time.perf_counter()
            async with client.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
                await r.read()
                return r.status, time.perf_counter() - t0

        # One conversation per agent, opened before anyone connects (not measured).
        sem = asyncio.Semaphore(8)

        async def open_one(i: int) -> None:
            async with sem:
                status, _ = await post(i, f"Hello, this is customer {i}")
                assert status == 200, status

        await asyncio.gather(*(open_one(i) for i in range(len(sessions))))
        # With CXDESK_WEBHOOKS=queued (the default with a worker) a worker ingests them just after.
        deadline = time.monotonic() + 120
        while True:
            tickets = await loop.run_in_executor(
                None,
                lambda: dict(
                    Ticket.objects.filter(inbox_id=inbox_id).values_list("customer__identities__address", "pk")
                ),
            )
            if len(tickets) >= len(sessions) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        ticket_of = [tickets[sender(i)] for i in range(len(sessions))]

        # Agents connect and open their ticket; a `presence` frame confirms the join.
        sockets = []
        following = 0
        for a, (_user, key) in enumerate(sessions):
            sock = await websockets.connect(
                f"{ws}/ws/desk/", origin=ws.replace("ws://", "http://"),
                additional_headers={"Cookie": f"sessionid={key}"}, open_timeout=30, max_queue=None,
            )  # fmt: skip
            await sock.send(json.dumps({"subscribe_ticket": ticket_of[a]}))
            while json.loads(await asyncio.wait_for(sock.recv(), 30)).get("event") != "presence":
                pass
            if args.inbox_view:
                await sock.send(json.dumps({"inbox": {"view": "open", "sort": "activity"}}))
                while json.loads(await asyncio.wait_for(sock.recv(), 30)).get("event") != "inbox.following":
                    pass
                following += 1
            sockets.append(sock)

        sent: dict[str, float] = {}
        sent_at: dict[str, float] = {}  # every mark, kept: the inbox frames of all sockets
        latency: list[float] = []
        timeline: list[tuple[float, float]] = []  # (sent, latency) of each message.created
        row_latency: list[float] = []
        frames = {"total": 0}

        async def reader(sock) -> None:
            try:
                async for raw in sock:
                    frames["total"] += 1
                    if '"ticket.activity"' in raw:
                        message = json.loads(raw)  # a socket's changed rows come together ("inbox.rows")
                        for frame in message.get("frames") or [message]:
                            for found in MARK.finditer(frame.get("html", "")):
                                if found.group(0) in sent_at:
                                    row_latency.append(time.perf_counter() - sent_at[found.group(0)])
                        continue
                    if '"message.created"' not in raw:
                        continue
                    frame = json.loads(raw)
                    found = MARK.search(frame.get("html", ""))
                    if frame.get("event") == "message.created" and found:
                        t0 = sent.pop(found.group(0), None)
                        if t0 is not None:
                            latency.append(time.perf_counter() - t0)
                            timeline.append((t0, latency[-1]))
            except websockets.ConnectionClosed:
                pass

        readers = [asyncio.create_task(reader(s)) for s in sockets]
        await asyncio.sleep(1)
        rnd = random.Random(1)
        acks: list[float] = []
        statuses: list[int] = []

        async def send(k: int, agent: int) -> None:
            mark = f"live-{k}-{uuid.uuid4().hex[:8]}"
            params, signature = common.twilio_sms(url, TOKEN, sender=sender(agent), body=f"{mark} any news?")
            t0 = time.perf_counter()
            sent[mark] = sent_at[mark] = t0
            async with client.post(url, data=params, headers={"X-Twilio-Signature": signature}) as r:
                await r.read()
            acks.append(time.perf_counter() - t0)
            statuses.append(r.status)

        started = time.perf_counter()
        tasks = []
        for k in range(args.messages):
            delay = started + k / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(k, rnd.randrange(len(sockets)))))
        await asyncio.gather(*tasks)
        sending = time.perf_counter() - started
        deadline = time.perf_counter() + args.grace
        while sent and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        open_at_end = sum(1 for s in sockets if s.state.name == "OPEN")
        if args.timeline:
            Path(args.timeline).write_text(
                "".join(f"{at - started:.3f} {late * 1000:.1f}\n" for at, late in sorted(timeline))
            )
        for task in readers:
            task.cancel()
        for sock in sockets:
            await sock.close()
    return {
        "agents": len(sessions),
        "sockets_open_at_end": open_at_end,
        "messages": args.messages,
        "rate": args.rate,
        "sending_seconds": sending,
        "received": len(latency),
        "lost": len(sent),
        "p50_ms": common.pct(latency, 50) * 1000,
        "p95_ms": common.pct(latency, 95) * 1000,
        "max_ms": max(latency, default=float("nan")) * 1000,
        "webhook_p50_ms": common.pct(acks, 50) * 1000,
        "webhook_p95_ms": common.pct(acks, 95) * 1000,
        "webhook_errors": sum(s != 200 for s in statuses),
        "frames_received": frames["total"],
        "sockets_following_the_inbox": following,
        "rows_received": len(row_latency),
        "rows_expected": following * args.messages,
        "row_p50_ms": common.pct(row_latency, 50) * 1000,
        "row_p95_ms": common.pct(row_latency, 95) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5.0, help="webhooks per second (open loop)")
    parser.add_argument("--grace", type=float, default=15.0, help="seconds to wait for the last frames")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--asgi-workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--conn-max-age", type=int, default=0)
    parser.add_argument("--celery-concurrency", type=int, default=1)
    parser.add_argument("--bare-clients", type=int, default=4)
    parser.add_argument("--bare-requests", type=int, default=2000)
    parser.add_argument("--inbox-view", action="store_true", help="every socket also follows the open inbox list")
    parser.add_argument("--timeline", help="write each message's send time (s) and latency (ms) to this file")
    args = parser.parse_args()
    url, redis_url = common.require_env()
    broker = os.environ.get("CELERY_BROKER_URL", redis_url)
    common.event_loop_policy()
    common.recreate_database(url)
    common.django_setup()
    http_port, ws_port = common.free_port(), common.free_port()
    http, ws = f"http://127.0.0.1:{http_port}", f"ws://127.0.0.1:{ws_port}"
    inbox_id = common.twilio_inbox(name="Bench live", token=TOKEN, public_url=http)
    sessions = common.seed_agents(args.agents, inbox_name="Bench live")
    log_dir = Path(tempfile.mkdtemp(prefix="cxdesk-bench-live-"))
    print(f"{common.now_utc()}, load average before: {common.load_average()}; logs in {log_dir}")
    env = common.server_env(public_url=http, conn_max_age=args.conn_max_age)
    with common.Servers(log_dir) as servers:
        servers.celery(env, concurrency=args.celery_concurrency)
        servers.gunicorn(http_port, env, workers=args.workers)
        servers.uvicorn(ws_port, env, workers=args.asgi_workers)
        bare = common.bare_load(http, clients=args.bare_clients, requests=args.bare_requests)
        result = asyncio.run(measure(args, http, ws, inbox_id, sessions))
    import redis

    redis.Redis.from_url(broker).delete(*common.QUEUES, "unacked", "unacked_index")
    result.update(
        bare_per_s=bare.rate,
        bare_p50_ms=common.pct(bare.latencies, 50) * 1000,
        bare_p95_ms=common.pct(bare.latencies, 95) * 1000,
    )
    result["p95_ratio_to_bare"] = result["p95_ms"] / result["bare_p95_ms"]
    print(json.dumps(result))
    print(f"load average after: {common.load_average()}")
    r = result
    print(
        f"\n{r['agents']} agents on /ws/desk/ (uvicorn ×{args.asgi_workers}), each with a ticket open; "
        f"{r['messages']} signed SMS webhooks at {r['rate']:g}/s to gunicorn ×{args.workers}:\n"
        f"  webhook → message.created on the agent's socket: p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
        f"max {r['max_ms']:.1f} ms; {r['received']}/{r['messages']} received, {r['lost']} lost; "
        f"{r['sockets_open_at_end']}/{r['agents']} sockets open at the end\n"
        + (
            f"  webhook → the row on every socket following the inbox ({r['sockets_following_the_inbox']}): "
            f"p50 {r['row_p50_ms']:.1f} ms, p95 {r['row_p95_ms']:.1f} ms; "
            f"{r['rows_received']}/{r['rows_expected']} rows showing the message (a burst's rows coalesce)\n"
            if args.inbox_view
            else ""
        )
        + f"  the webhook's own answer: p50 {r['webhook_p50_ms']:.1f} ms, p95 {r['webhook_p95_ms']:.1f} ms, "
        f"{r['webhook_errors']} errors\n"
        f"  bare view (same gunicorn, {args.bare_clients} clients): {bare.summary()}; "
        f"live p95 ÷ bare p95 = {r['p95_ratio_to_bare']:.1f}×\n"
        f"  goal (issue 12): p95 < 250 ms with 200 agents connected"
    )


if __name__ == "__main__":
    main()
