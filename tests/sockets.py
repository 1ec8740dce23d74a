"""Helpers for websocket tests (the desk's and the chat widget's consumers): a desk
communicator, reading frames until one matches, the ORM from async code. The in-memory
channel layer is the `in_memory_layers` fixture in tests/conftest.py."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator


def desk_socket(user) -> WebsocketCommunicator:
    """A `/ws/desk/` communicator signed in as `user` (None: anonymous)."""
    from tickets.consumers import DeskConsumer

    comm = WebsocketCommunicator(DeskConsumer.as_asgi(), "/ws/desk/")
    comm.scope["user"] = user
    return comm


def unbatched(frame: dict) -> list[dict]:
    """The frames a websocket message carries: a socket's changed inbox rows come together
    (`{"event": "inbox.rows", "frames": [...]}`), everything else alone."""
    return list(frame["frames"]) if frame.get("event") == "inbox.rows" else [frame]


async def frame_until(comm, predicate, timeout: float = 3.0) -> dict:
    """Read frames (batches taken apart) until one satisfies `predicate`; return it (fail
    after `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen = []
    while loop.time() < deadline:
        try:
            message = await comm.receive_json_from(timeout=max(0.05, deadline - loop.time()))
        except TimeoutError:
            break
        for frame in unbatched(message):
            seen.append(frame)
            if predicate(frame):
                return frame
    raise AssertionError(f"no matching frame; got {[(f.get('event'), str(f.get('html', ''))[:80]) for f in seen]}")


def db(fn):
    """Run a synchronous ORM call from an async test body (in the site's default language:
    asgiref's worker thread outlives tests, and a language a view activated there would leak)."""
    from django.conf import settings
    from django.utils import translation

    def call():
        with translation.override(settings.LANGUAGE_CODE):
            return fn()

    return database_sync_to_async(call)()


# What was published (every message handed to cxdesk.realtime.publish), recorded per test by
# the autouse `_record_broadcasts` fixture in tests/conftest.py.
SENT: list[dict] = []


def sent_events() -> list[dict]:
    return list(SENT)
