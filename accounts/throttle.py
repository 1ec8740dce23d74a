"""Sign-in throttling on the cache (Redis in production): per account and per client IP.

Every attempt takes a slot *before* the password is checked (an atomic `incr`), so fifty
parallel guesses cannot all slip through between a check and an increment. A success
gives its slot back and clears the account's counter. While an account (or IP) is over its
limit every attempt is refused — the right password too — until the window ends.

Settings: CXDESK_SIGNIN_MAX_FAILURES (per account, default 5), CXDESK_SIGNIN_MAX_PER_IP
(default 20), CXDESK_SIGNIN_WINDOW_SECONDS (default 900). The IP is REMOTE_ADDR: behind a
proxy, have the proxy (or a middleware you trust) set it to the client's address.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Slot:
    keys: tuple[str, ...]
    locked: bool
    minutes: int


def _limits() -> tuple[int, int, int]:
    return (
        getattr(settings, "CXDESK_SIGNIN_MAX_FAILURES", 5),
        getattr(settings, "CXDESK_SIGNIN_MAX_PER_IP", 20),
        getattr(settings, "CXDESK_SIGNIN_WINDOW_SECONDS", 900),
    )


def _account_key(scope: str, username: str) -> str:
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"cxdesk:signin:{scope}:acct:{digest}"


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _take(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window)
        return 1


def attempt_begin(*, username: str, ip: str, scope: str = "password") -> Slot:
    """Take a slot for one attempt; `locked` means refuse without checking anything."""
    per_account, per_ip, window = _limits()
    account_key = _account_key(scope, username)
    ip_key = f"cxdesk:signin:{scope}:ip:{ip}"
    n_account = _take(account_key, window)
    n_ip = _take(ip_key, window)
    return Slot(
        keys=(account_key, ip_key),
        locked=n_account > per_account or n_ip > per_ip,
        minutes=max(1, window // 60),
    )


def attempt_succeeded(slot: Slot) -> None:
    account_key, ip_key = slot.keys
    cache.delete(account_key)
    try:
        cache.decr(ip_key)
    except ValueError:
        pass


def reset(*, username: str, ip: str | None = None, scope: str = "password") -> None:
    cache.delete(_account_key(scope, username))
    if ip:
        cache.delete(f"cxdesk:signin:{scope}:ip:{ip}")
