"""The one way to tell live clients that something changed.

Services call `broadcast_on_commit(group, event, **data)`; the event reaches the
channel layer only after the surrounding transaction commits, so a client never
hears of a row it cannot read yet. Groups: `ticket.<id>`, `inbox.<id>`,
`agent.<user id>`, `desk` (every signed-in agent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)

# Tests (and anyone curious) can read what was sent: a bounded list of the last events.
_sent: list[dict[str, Any]] = []
_SENT_KEEP = 500


def group_send(group: str, event: str, **data: Any) -> None:
    message = {"type": "desk.event", "event": event, "group": group, **data}
    _sent.append(message)
    del _sent[:-_SENT_KEEP]
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer) and not layer.groups.get(group):
        return  # in-process layer and nobody listening in this process (commands, tests)
    try:
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(layer.group_send)(group, message)  # its queues live on the consumers' loop
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(SEND_TIMEOUT)
    except Exception:  # a broken channel layer must never break a write path
        log.exception("broadcast to %s failed", group)


# One long-lived event loop per process sends the broadcasts of synchronous code (services,
# tasks): `async_to_sync` would start a new loop per call, and channels_redis keeps its
# connection pools per loop, so every broadcast opened a new Redis connection.
SEND_TIMEOUT = 5.0
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0
_loop_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():  # none yet, or inherited across a fork
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="cxdesk-broadcast", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def broadcast_on_commit(group: str, event: str, **data: Any) -> None:
    """Send `event` to `group` once the current transaction (if any) commits."""
    transaction.on_commit(lambda: group_send(group, event, **data))


def sent_events() -> list[dict[str, Any]]:
    return list(_sent)


def clear_sent_events() -> None:
    _sent.clear()
