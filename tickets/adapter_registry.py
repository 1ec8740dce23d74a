"""How tickets reaches an inbox's channel adapter without importing the channels side.

Adapters live in `channels_app` (which depends on tickets, never the reverse). Tickets only
asks an inbox's adapter a few questions — which channels it carries, whether it can send
now, its approved templates — through `Inbox.adapter`; `channels_app` installs the lookup
when it starts (`ChannelsAppConfig.ready`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_lookup: Callable[[str], Any] | None = None


def adapter_lookup_install(lookup: Callable[[str], Any]) -> None:
    global _lookup
    _lookup = lookup


def adapter_for(kind: str) -> Any:
    if _lookup is None:
        raise LookupError("no channel adapters installed (is channels_app in INSTALLED_APPS?)")
    return _lookup(kind)
