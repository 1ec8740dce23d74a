"""The one outbound HTTP client: every provider, media and webhook call goes through
`safe_request()`.

What it guarantees, whatever URL a webhook payload or a subscriber hands us:
- only http/https; the host is resolved here and every address it resolves to must be
  public (no loopback, private, link-local/cloud metadata, multicast, reserved, CGNAT, and
  the same checks on IPv4 embedded in IPv6: `::ffff:127.0.0.1`, 6to4, NAT64, Teredo);
- the connection goes to the address that was vetted (no second DNS lookup that a
  rebinding resolver could answer differently); TLS still verifies the certificate for the
  host name and sends it as SNI, and the Host header is the name;
- redirects are followed here, one hop at a time, each hop checked again;
- credentials (`auth`, an `Authorization` header) go only to hosts in `credential_hosts`
  (by default the `allowed_hosts` of the call), never to a redirect target elsewhere;
- connect/read timeouts, an overall deadline and a size cap on the body, read streamed.

`settings.CXDESK_ALLOW_PRIVATE_TARGETS` (env, off by default) lifts the address check for
on-premise installs whose webhook receivers live on the private network.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

DEFAULT_TIMEOUT = (5.0, 15.0)
DEFAULT_MAX_BYTES = 30 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECT_CODES = (301, 302, 303, 307, 308)

# Provider allow-lists: media may come only from these hosts, and the provider's
# credentials are sent only to them ("*.example.com" matches subdomains).
TWILIO_API_HOSTS = ("api.twilio.com",)
META_API_HOSTS = ("graph.facebook.com", "lookaside.fbsbx.com")
META_MEDIA_HOSTS = (*META_API_HOSTS, "*.fbsbx.com", "*.fbcdn.net", "*.whatsapp.net")
TELEGRAM_API_HOSTS = ("api.telegram.org",)


class UnsafeTarget(requests.RequestException):  # noqa: N818 - reads as a reason
    """The URL is not one we may call (scheme, host not allowed, private address)."""


class ResponseTooLarge(requests.RequestException):  # noqa: N818
    """The body passed `max_bytes`."""


def host_matches(host: str, patterns: Iterable[str] | None) -> bool:
    host = (host or "").lower().rstrip(".")
    for pattern in patterns or ():
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and host != pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in ipaddress.IPv6Network("64:ff9b::/96") or ip in ipaddress.IPv6Network("::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_is_public(address: str) -> bool:
    """True when `address` (an IP literal) is a global unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not address_is_public(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IP literals pass through). Tests replace this
    (the outside world's DNS) with a fake."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def vet(url: str, *, allowed_hosts: Iterable[str] | None = None) -> tuple[str, str]:
    """Check `url`; return (host, the address to connect to). Raises UnsafeTarget."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget(f"only http and https URLs may be called, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeTarget("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the URL are not accepted")
    if allowed_hosts is not None and not host_matches(host, allowed_hosts):
        raise UnsafeTarget(f"host {host} is not an allowed host for this call")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("the URL has an invalid port") from None
    try:
        # Legacy IPv4 spellings (2130706433, 0x7f.1, 127.1) are addresses, not names.
        addresses = [socket.inet_ntoa(socket.inet_aton(host))]
    except OSError:
        addresses = []
    try:
        addresses = addresses or resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise requests.ConnectionError(f"cannot resolve {host}: {exc}") from exc
    if not addresses:
        raise requests.ConnectionError(f"cannot resolve {host}")
    if not allow_private():
        bad = [a for a in addresses if not address_is_public(a)]
        if bad:
            raise UnsafeTarget(f"{host} resolves to a non-public address ({bad[0]}); refused")
    return host, addresses[0]


def allow_private() -> bool:
    return bool(getattr(settings, "CXDESK_ALLOW_PRIVATE_TARGETS", False))


def check_url(url: str) -> None:
    """Validation for URLs we will call later (webhook subscriptions): raises UnsafeTarget
    (or requests.ConnectionError when the name does not resolve)."""
    vet(url)


# --- a connection pinned to the vetted address -------------------------------------


def _pinned_adapter(ip: str) -> HTTPAdapter:
    def _pinned(cls):
        class Pinned(cls):
            def _new_conn(self):
                # Open the socket to the vetted address; everything else (Host header, SNI,
                # certificate check) keeps using the name.
                name = self._dns_host
                self._dns_host = ip
                try:
                    return super()._new_conn()
                finally:
                    self._dns_host = name

        return Pinned

    PinnedHTTPConnection, PinnedHTTPSConnection = _pinned(HTTPConnection), _pinned(HTTPSConnection)

    class PinnedHTTPPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}

    return PinnedAdapter(max_retries=0)


def _strip_credentials(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie", "proxy-authorization")}


def safe_request(
    method: str,
    url: str,
    *,
    allowed_hosts: Iterable[str] | None = None,
    credential_hosts: Iterable[str] | None = None,
    auth=None,
    headers: dict | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_redirects: bool = True,
    max_redirects: int = MAX_REDIRECTS,
    **kwargs,
) -> requests.Response:
    """One HTTP call under the rules in the module docstring. `allowed_hosts` limits the
    first URL's host (None: any public host); redirects may leave it (CDNs) but credentials
    do not follow. Errors are `requests.RequestException`s (UnsafeTarget, ResponseTooLarge,
    ConnectionError, Timeout, …), so callers keep one except clause."""
    allowed = tuple(allowed_hosts) if allowed_hosts is not None else None
    cred_hosts = tuple(credential_hosts) if credential_hosts is not None else (allowed or ())
    headers = dict(headers or {})
    if (auth is not None or any(k.lower() == "authorization" for k in headers)) and not cred_hosts:
        raise ValueError("credentials need credential_hosts (or allowed_hosts) to say where they may go")
    deadline = time.monotonic() + (sum(timeout) if isinstance(timeout, tuple) else timeout) * 2
    method = method.upper()
    for hop in range(max_redirects + 1):
        host, ip = vet(url, allowed_hosts=allowed if hop == 0 else None)
        trusted = host_matches(host, cred_hosts)
        session = requests.Session()
        session.trust_env = False  # no proxies from the environment: they would bypass the pin
        adapter = _pinned_adapter(ip)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            response = session.request(
                method,
                url,
                auth=auth if trusted else None,
                headers=headers if trusted else _strip_credentials(headers),
                timeout=timeout,
                allow_redirects=False,
                stream=True,
                **kwargs,
            )
            if allow_redirects and response.status_code in REDIRECT_CODES and response.headers.get("Location"):
                response.close()
                url = urljoin(url, response.headers["Location"])
                if response.status_code in (301, 302, 303) and method != "HEAD":
                    method = "GET"
                    for key in ("data", "json", "files"):
                        kwargs.pop(key, None)
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                kwargs.pop("params", None)  # already part of the Location
                continue
            _read_capped(response, max_bytes=max_bytes, deadline=deadline)
            return response
        finally:
            session.close()
    raise requests.TooManyRedirects(f"more than {max_redirects} redirects")


def _read_capped(response: requests.Response, *, max_bytes: int, deadline: float) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdecimal() and int(declared) > max_bytes:
        response.close()
        raise ResponseTooLarge(f"response of {declared} bytes is over the {max_bytes}-byte limit")
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(f"response is over the {max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise requests.Timeout("response took too long to arrive")
            chunks.append(chunk)
    finally:
        response.close()
    response._content = b"".join(chunks)  # noqa: SLF001 - the documented way to pre-load a streamed body
    response._content_consumed = True  # noqa: SLF001


def excerpt(text: str, limit: int = 200) -> str:
    """A short, printable excerpt of a remote answer for logs (control characters removed)."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in (text or "")[: limit * 2])
    cleaned = " ".join(cleaned.split())
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")
