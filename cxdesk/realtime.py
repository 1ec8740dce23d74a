"""The one way to tell live clients that something changed.

Services call `broadcast_on_commit(group, event, **data)`; the event reaches the
channel layer only after the surrounding transaction commits, so a client never
hears of a row it cannot read yet. Groups: `ticket.<id>`, `inbox.<id>`,
`agent.<user id>`, `desk` (every signed-in agent).
"""

from __future__ import annotations

import logging
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
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a broken channel layer must never break a write path
        log.exception("broadcast to %s failed", group)


def broadcast_on_commit(group: str, event: str, **data: Any) -> None:
    """Send `event` to `group` once the current transaction (if any) commits."""
    transaction.on_commit(lambda: group_send(group, event, **data))


def sent_events() -> list[dict[str, Any]]:
    return list(_sent)


def clear_sent_events() -> None:
    _sent.clear()
