"""The one way to tell live clients that something changed.

Services call `broadcast_on_commit(group, event, **data)`; the event reaches the channel
layer only after the surrounding transaction commits, so a client never hears of a row it
cannot read yet. Groups: `ticket.<id>`, `agent.<user id>`, `desk` (every signed-in agent),
and the web chat's own (`webchat.*`).

Publishing costs the writer almost nothing: a committed transaction's events go onto an
in-process queue, and one long-lived event loop thread per process (with its channel-layer
connections) sends them. Everything queued when that thread gets to run is sent together,
one channel-layer message per group (`desk.batch` when a group has several events), so a
message that touches a ticket five ways costs one publish per group and an agent's socket
gets one channel-layer message for it, not five. Groups that nobody listens to are left out,
found in one round trip to Redis (`_listened`).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import logging
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction

log = logging.getLogger(__name__)

SEND_TIMEOUT = 5.0  # seconds to wait for the queue to drain at process exit


def broadcast_on_commit(group: str, event: str, **data: Any) -> None:
    """Send `event` to `group` once the current transaction (if any) commits. All of a
    transaction's events are published together, after its last commit hook has run."""
    message = _message(group, event, data)
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        publish(message)
        return
    # Collected by a hook of its own, so an event of a rolled-back savepoint is dropped...
    transaction.on_commit(functools.partial(_pending().append, message))
    # ...and published by ONE flush that stays last among the commit hooks and outside any
    # savepoint. (Django runs hooks in order from `connection.run_on_commit`, a list of
    # (savepoint ids, callable, robust); an earlier flush is neutralised in place, not
    # removed, so the list keeps its length for anyone counting it.)
    hooks = connection.run_on_commit
    # Where this thread put the flush last, so a bulk action broadcasting thousands of events in
    # one transaction does not rescan the list each time.
    known = getattr(_local, "flush_at", None)
    if known is not None and known[0] is hooks and known[1] < len(hooks) and hooks[known[1]][1] is _flush:
        found = [known[1]]
    else:
        found = [i for i, hook in enumerate(hooks) if hook[1] is _flush]
    for i in found:
        sids, _, robust = hooks[i]
        hooks[i] = (sids, _nothing, robust)
    hooks.append((set(), _flush, False))
    _local.flush_at = (hooks, len(hooks) - 1)


def group_send(group: str, event: str, **data: Any) -> None:
    """Send `event` to `group` now (for code that is not writing anything, e.g. typing)."""
    publish(_message(group, event, data))


def _message(group: str, event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "desk.event", "event": event, "group": group, **data}


_local = threading.local()


def _pending() -> list[dict[str, Any]]:
    if not hasattr(_local, "pending"):
        _local.pending = []
    return _local.pending


def _flush() -> None:
    messages = list(_pending())
    _pending().clear()
    if messages:
        publish(*messages)


def _nothing() -> None:
    pass


def publish(*messages: dict[str, Any]) -> None:
    """THE door to the channel layer for synchronous code: queue `messages` for the sender
    (handed over together: they are sent in one go)."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    if isinstance(layer, InMemoryChannelLayer):
        # In-process layer (tests, the embedded `make run`): its queues live on the
        # consumers' loop; send right away, and only to groups somebody here listens to.
        for group, message in batched(list(messages)):
            if layer.groups.get(group):
                try:
                    async_to_sync(layer.group_send)(group, message)
                except Exception:  # a broken channel layer must never break a write path
                    log.exception("broadcast to %s failed", group)
        return
    _sender().put(layer, messages)


def batched(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Messages in order, one per group: a group's several events travel as one `desk.batch`."""
    by_group: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_group.setdefault(message["group"], []).append(message)
    return [
        (group, items[0] if len(items) == 1 else {"type": "desk.batch", "group": group, "events": items})
        for group, items in by_group.items()
    ]


async def _listened(layer, groups: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The `groups` that somebody listens to, asked of Redis in one round trip per shard.

    Most of a write's groups have nobody in them (`ticket.<id>` of a ticket no agent has
    open), and channels_redis's `group_send` spends two round trips finding that out, per
    group: a drainer's batch of 50 messages made 100 of them, a sixth of the drainer's time.
    A group's key (a sorted set of its channels) exists exactly while it has a member, so a
    group whose key is absent is one `group_send` would have found empty; a group whose key
    exists gets the full `group_send` (which also drops expired members). Other layers are
    asked nothing."""
    if not isinstance(layer, RedisChannelLayer) or not groups:
        return groups
    shards: dict[int, list[int]] = {}
    for i, (group, _message) in enumerate(groups):
        shards.setdefault(layer.consistent_hash(group), []).append(i)
    keep = [False] * len(groups)
    for shard, positions in shards.items():
        pipe = layer.connection(shard).pipeline(transaction=False)
        for i in positions:
            pipe.exists(layer._group_key(groups[i][0]))
        for i, found in zip(positions, await pipe.execute(), strict=True):
            keep[i] = bool(found)
    return [group for group, kept in zip(groups, keep, strict=True) if kept]


class _Sender:
    """A daemon thread running an event loop that owns this process's channel-layer
    connections (channels_redis keeps its pools per loop: `async_to_sync` per call would open
    new connections every time). Writers never wait for Redis."""

    def __init__(self) -> None:
        self.queue: collections.deque[tuple[Any, dict[str, Any]]] = collections.deque()
        self.lock = threading.Lock()
        self.scheduled = False
        self.loop = asyncio.new_event_loop()
        self.drained = threading.Event()
        self.drained.set()
        threading.Thread(target=self.loop.run_forever, name="cxdesk-broadcast", daemon=True).start()

    def put(self, layer, messages: tuple[dict[str, Any], ...]) -> None:
        with self.lock:
            self.queue.extend((layer, message) for message in messages)
            if self.scheduled:
                return
            self.scheduled = True
            self.drained.clear()
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self.drain()))

    async def drain(self) -> None:
        while True:
            with self.lock:
                items = list(self.queue)
                self.queue.clear()
                if not items:
                    self.scheduled = False
                    self.drained.set()
                    return
            layers: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
            for layer, message in items:
                layers.setdefault(id(layer), (layer, []))[1].append(message)
            for layer, messages in layers.values():
                groups = batched(messages)
                try:
                    groups = await _listened(layer, groups)
                except Exception as exc:  # noqa: BLE001 - Redis away: each send below says so
                    log.warning("could not ask which groups are listened to (%r); sending to all", exc)
                outcomes = await asyncio.gather(*(layer.group_send(g, m) for g, m in groups), return_exceptions=True)
                for (group, _), outcome in zip(groups, outcomes, strict=True):
                    if isinstance(outcome, BaseException):  # never breaks a writer; logged
                        log.error("broadcast to %s failed: %r", group, outcome)

    def flush(self, timeout: float = SEND_TIMEOUT) -> bool:
        """Wait until everything queued so far has been handed to the channel layer."""
        return self.drained.wait(timeout)


_instance: _Sender | None = None
_instance_pid = 0
_instance_lock = threading.Lock()


def _sender() -> _Sender:
    global _instance, _instance_pid
    with _instance_lock:
        if _instance is None or _instance_pid != os.getpid():  # none yet, or inherited across a fork
            _instance, _instance_pid = _Sender(), os.getpid()
        return _instance


def flush(timeout: float = SEND_TIMEOUT) -> bool:
    """Block until queued broadcasts are sent (process exit, tests, benchmarks)."""
    return _instance.flush(timeout) if _instance is not None and _instance_pid == os.getpid() else True


atexit.register(flush)
