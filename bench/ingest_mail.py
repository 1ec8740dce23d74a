"""Benchmark: `ingest_mail` over realistic mail on PostgreSQL.

Pre-seeds a database with M tickets (bulk inserted, each with one email message),
writes N .eml files — new conversations and replies to them and to the pre-seeded
tickets, in random order, some replies arriving before their parents — runs
`manage.py ingest_mail` over the folder in a subprocess, and prints messages/s and
the share of replies that landed in the right ticket.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cxdesk_bench \\
        .venv/bin/python bench/ingest_mail.py --tickets 100000 --messages 1000

The database named in DATABASE_URL is dropped and recreated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="ingest_mail --jobs (worker processes)")
    parser.add_argument(
        "--broker",
        default="",
        help="Celery broker URL (e.g. redis://127.0.0.1:6379/9): background work (routing, webhooks) is "
        "queued as in production and purged afterwards; default: run it eagerly inside ingest",
    )
    parser.add_argument("--profile", default="", help="write a cProfile of the ingest_mail run to this file")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("set DATABASE_URL to a PostgreSQL database (it is recreated)")
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")
    recreate(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rnd = random.Random(args.seed)
    t0 = time.perf_counter()
    seeded = preseed(args.tickets)
    print(f"pre-seeded {args.tickets} tickets in {time.perf_counter() - t0:.1f}s")

    folder = Path(tempfile.mkdtemp(prefix="cxdesk-bench-"))
    expected = write_mail(folder, args.messages, seeded, rnd)
    env = {**os.environ, "CXDESK_VAR_DIR": str(folder / "var"), "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    if args.broker:
        env.update(CELERY_BROKER_URL=args.broker, CELERY_TASK_ALWAYS_EAGER="0")
    else:
        env.update(CELERY_TASK_ALWAYS_EAGER="1")
        env.pop("CELERY_BROKER_URL", None)
    # The app's bytecode, as a deployed image has it (the Dockerfile compiles it; this
    # environment's PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at each start).
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-x", r"[\\/](\.venv|var|tests|node_modules)[\\/]", str(ROOT)],
        check=True,
    )
    # The same command over an empty folder: what starting the process costs (imports,
    # settings, checks), to tell the ingest's own rate from the start-up's.
    (folder / "empty").mkdir()
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "ingest_mail", str(folder / "empty"), "--inbox", "Bench"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *(["-m", "cProfile", "-o", args.profile] if args.profile else []), "manage.py", "ingest_mail", str(folder / "mail"), "--inbox", "Bench", "--jobs", str(args.jobs)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if args.broker:
        purge(args.broker)
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    errors = [line for line in lines if "error" in line]
    print(
        f"ingested {len(lines)} messages in {elapsed:.1f}s: {len(lines) / elapsed:.0f} messages/s ({len(errors)} errors); "
        f"start-up {startup:.1f}s (the command over an empty folder), after it "
        f"{len(lines) / max(elapsed - startup, 1e-3):.0f} messages/s"
    )
    print(f"replies in the right ticket: {check(expected)}")


def purge(broker: str) -> None:
    """Drop the tasks the run queued (no worker consumes them here)."""
    from celery import Celery

    app = Celery(broker=broker)
    with app.connection_for_write() as conn:
        for queue in ("default", "inbound", "outbound", "webhooks"):
            conn.default_channel.queue_purge(queue)


def recreate(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def preseed(n: int) -> list[tuple[int, str, str]]:
    """n tickets of n//3 customers, each with its first email message. Returns
    (ticket id, customer email, message id) samples for replies."""
    from django.utils import timezone

    from channels_app.models import Inbox
    from customers.models import Customer, Identity
    from tickets.models import Message, Ticket

    inbox = Inbox.objects.create(
        kind="email", name="Bench", config={"address": "support@bench.example", "auto_ack": "false"}
    )
    now = timezone.now()
    n_customers = max(1, n // 3)
    customers = Customer.objects.bulk_create(
        [Customer(name=f"Customer {i}") for i in range(n_customers)], batch_size=5000
    )
    Identity.objects.bulk_create(
        [Identity(customer=c, kind="email", address=f"c{i}@bench.example") for i, c in enumerate(customers)],
        batch_size=5000,
    )
    tickets = Ticket.objects.bulk_create(
        [Ticket(subject=f"Old issue {i}", customer=customers[i % n_customers], inbox=inbox, channel="email", status="solved",
                last_message_at=now, last_customer_channel="email", reply_token=f"tok{i:012d}") for i in range(n)],
        batch_size=5000,
    )  # fmt: skip
    Message.objects.bulk_create(
        [Message(ticket=t, direction="inbound", channel="email", inbox=inbox, status="received", subject=t.subject,
                 body_text="old", email_message_id=f"<old{i}@bench>", provider_message_id=f"<old{i}@bench>")
         for i, t in enumerate(tickets)],
        batch_size=5000,
    )  # fmt: skip
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have on a live database
    return [(t.pk, f"c{i % n_customers}@bench.example", f"<old{i}@bench>") for i, t in enumerate(tickets[:5000])]


def eml(sender: str, subject: str, mid: str, in_reply_to: str = "", references: str = "") -> str:
    extra = (f"In-Reply-To: {in_reply_to}\n" if in_reply_to else "") + (
        f"References: {references}\n" if references else ""
    )
    return (
        f"From: {sender}\nTo: support@bench.example\nSubject: {subject}\nMessage-ID: {mid}\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\n\nHello,\n\nthis is message {mid}. Dziękuję!\n\n> quoted history\n"
    )


def write_mail(folder: Path, n: int, seeded, rnd: random.Random) -> dict[str, str]:
    """Write n messages; return {message-id: message-id of the conversation root}."""
    (folder / "mail").mkdir(parents=True)
    items: list[tuple[str, str]] = []
    root_of: dict[str, str] = {}
    new_threads = []
    for i in range(n):
        kind = rnd.random()
        mid = f"<bench{i}@client.example>"
        if kind < 0.3 or not new_threads:
            sender = f"new{i}@bench.example"
            items.append((mid, eml(sender, f"New question {i}", mid)))
            root_of[mid] = mid
            new_threads.append((mid, sender, ""))
        elif kind < 0.7:
            # A reply to any message of a new conversation (its root or a reply in it):
            # threads grow several levels deep, and any level may arrive first.
            parent, sender, refs = rnd.choice(new_threads)
            refs = f"{refs} {parent}".strip()
            items.append((mid, eml(sender, "Re: New question", mid, parent, refs)))
            root_of[mid] = root_of[parent]
            new_threads.append((mid, sender, refs))
        else:
            _, sender, parent = rnd.choice(seeded)
            items.append((mid, eml(sender, "Re: Old issue", mid, parent, parent)))
            root_of[mid] = parent
    rnd.shuffle(items)  # replies may arrive before their parents
    for i, (_, text) in enumerate(items):
        (folder / "mail" / f"{i:06d}.eml").write_text(text)
    return root_of


def check(root_of: dict[str, str]) -> str:
    from tickets.models import Message

    ticket_of = dict(
        Message.objects.filter(email_message_id__in=list({*root_of, *root_of.values()})).values_list(
            "email_message_id", "ticket_id"
        )
    )
    replies = [(m, r) for m, r in root_of.items() if m != r]
    right = sum(1 for m, r in replies if ticket_of.get(m) == ticket_of.get(r) is not None)
    return f"{right}/{len(replies)} ({100 * right / max(1, len(replies)):.1f}%)"


if __name__ == "__main__":
    main()
