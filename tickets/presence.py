"""Who is looking at a ticket, and who is typing a reply, kept in the cache with expiry.

One cache entry per ticket: {socket channel name: [user id, name, state, expires (epoch s)]}.
Entries expire on their own (a crashed browser or server leaves nothing behind for
long); live sockets refresh theirs with a ping. Read-modify-write races between two
sockets can drop an entry until its next refresh, which is acceptable for presence.
When the cache is down, presence is empty (logged), never an error.
"""

from __future__ import annotations

import time

from cxdesk.degrade import cache_get, cache_set

TTL = 60  # seconds an entry lives without a refresh
REPLYING_FOR = 12  # seconds "is replying" lasts after the last keystroke


def _key(ticket_id: int) -> str:
    return f"cxdesk:presence:{ticket_id}"


def _live(entries: dict, now: float) -> dict:
    return {k: v for k, v in entries.items() if v[3] > now}


def presence_touch(*, ticket_id: int, channel: str, user_id: int, name: str, typing: bool = False) -> None:
    now = time.time()
    entries = _live(cache_get(_key(ticket_id)) or {}, now)
    old = entries.get(channel)
    typed_at = now if typing else (old[2] if old and isinstance(old[2], float) else 0.0)
    entries[channel] = [user_id, name, typed_at, now + TTL]
    cache_set(_key(ticket_id), entries, TTL)


def presence_leave(*, ticket_id: int, channel: str) -> None:
    entries = _live(cache_get(_key(ticket_id)) or {}, time.time())
    if entries.pop(channel, None) is not None:
        cache_set(_key(ticket_id), entries, TTL)


def presence_list(*, ticket_id: int, exclude_user: int | None = None) -> list[tuple[str, str]]:
    """[(name, "viewing" | "replying")], one per person (several tabs count once; typing
    in any of them counts), sorted by name."""
    now = time.time()
    people: dict[int, tuple[str, str]] = {}
    for user_id, name, typed_at, _expires in _live(cache_get(_key(ticket_id)) or {}, now).values():
        if user_id == exclude_user:
            continue
        state = "replying" if typed_at and now - typed_at < REPLYING_FOR else "viewing"
        if people.get(user_id, ("", ""))[1] != "replying":
            people[user_id] = (name, state)
    return sorted(people.values())
