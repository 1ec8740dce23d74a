"""Adapter registry: `get_adapter(kind)`. Each provider module registers itself."""

from __future__ import annotations

from .base import Adapter

_registry: dict[str, Adapter] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    _registry[cls.kind] = cls()
    return cls


def get_adapter(kind: str) -> Adapter:
    try:
        return _registry[kind]
    except KeyError:
        raise LookupError(f"no channel adapter for kind {kind!r} (known: {', '.join(sorted(_registry))})") from None


def adapter_kinds() -> list[str]:
    return sorted(_registry)


# Import the provider modules so they register. Add a channel: one module + one line here.
from . import email  # noqa: E402, F401, I001
from . import twilio  # noqa: E402, F401, I001
from . import meta  # noqa: E402, F401, I001
from . import telegram  # noqa: E402, F401, I001
from . import twilio_voice  # noqa: E402, F401, I001
from . import webchat  # noqa: E402, F401, I001
