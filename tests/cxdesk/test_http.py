"""The one outbound HTTP client (cxdesk/http.py): SSRF rules, pinning, redirects, caps."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses

from cxdesk import http


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00:ec2::254", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
        ("ff02::1", False),
    ],
)
def test_address_classification(address, public):
    assert http.address_is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",
        "http://0x7f.1/",
        "ftp://example.com/",
        "http://user:pw@example.com/",
    ],
)
def test_private_and_odd_targets_are_refused(url):
    with pytest.raises(http.UnsafeTarget):
        http.safe_request("GET", url)


@responses.activate
def test_redirects_are_checked_again_and_credentials_stay_with_the_provider():
    responses.get("https://api.twilio.com/media/1", status=302, headers={"Location": "https://cdn.example.net/m1"})
    responses.get("https://cdn.example.net/m1", body=b"IMG")
    answer = http.safe_request(
        "GET", "https://api.twilio.com/media/1", allowed_hosts=("api.twilio.com",), auth=("AC", "tok")
    )
    assert answer.content == b"IMG"
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in responses.calls[1].request.headers

    responses.get("https://api.twilio.com/media/2", status=302, headers={"Location": "http://169.254.169.254/"})
    with pytest.raises(http.UnsafeTarget):
        http.safe_request("GET", "https://api.twilio.com/media/2", allowed_hosts=("api.twilio.com",), auth=("AC", "t"))
    assert len(responses.calls) == 3  # the metadata address was never called


def test_a_host_outside_the_allow_list_is_refused_before_any_call():
    with pytest.raises(http.UnsafeTarget, match="not an allowed host"):
        http.safe_request("GET", "https://evil.example/x", allowed_hosts=("api.twilio.com",), auth=("AC", "t"))
    assert http.host_matches("scontent.xx.fbcdn.net", http.META_MEDIA_HOSTS)
    assert not http.host_matches("fbcdn.net.evil.example", http.META_MEDIA_HOSTS)


class _Server:
    def __init__(self, body: bytes, *, length: bool = True):
        outer = self
        self.hosts: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.hosts.append(self.headers["Host"])
                self.send_response(200)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_connection_goes_to_the_vetted_address_with_the_name_as_host(monkeypatch, settings):
    """DNS is asked once; the socket goes to that answer (no second lookup a rebinding
    resolver could answer differently), and the Host header is still the name."""
    settings.CXDESK_ALLOW_PRIVATE_TARGETS = True
    asked: list[str] = []

    def resolve(host, port):
        asked.append(host)
        return ["127.0.0.1"] if len(asked) == 1 else ["203.0.113.66"]

    monkeypatch.setattr(http, "resolve", resolve)
    server = _Server(b"pinned")
    try:
        answer = http.safe_request("GET", f"http://hooks.customer.test:{server.port}/x")
    finally:
        server.close()
    assert answer.content == b"pinned"
    assert asked == ["hooks.customer.test"]
    assert server.hosts == [f"hooks.customer.test:{server.port}"]


def test_private_targets_need_the_setting(settings):
    server = _Server(b"hello")
    try:
        with pytest.raises(http.UnsafeTarget):
            http.safe_request("GET", f"http://127.0.0.1:{server.port}/")
        settings.CXDESK_ALLOW_PRIVATE_TARGETS = True
        assert http.safe_request("GET", f"http://127.0.0.1:{server.port}/").content == b"hello"
    finally:
        server.close()


@pytest.mark.parametrize("length", [True, False])
def test_the_body_is_capped_while_streaming(settings, length):
    settings.CXDESK_ALLOW_PRIVATE_TARGETS = True
    server = _Server(b"x" * 300_000, length=length)
    try:
        with pytest.raises(http.ResponseTooLarge):
            http.safe_request("GET", f"http://127.0.0.1:{server.port}/", max_bytes=100_000)
    finally:
        server.close()


def test_errors_are_request_exceptions():
    assert issubclass(http.UnsafeTarget, requests.RequestException)
    assert issubclass(http.ResponseTooLarge, requests.RequestException)
