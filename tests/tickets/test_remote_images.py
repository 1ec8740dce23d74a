"""Tracking pixels: remote images in mail do not load when an agent opens the ticket."""

import re

import pytest
import responses
from django.test import Client

from channels_app.services import ingest
from tests.channels_app.factories import email_inbound

pytestmark = pytest.mark.django_db

PIXEL = "https://tracker.example/open.gif?u=42&amp;m=7"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


@pytest.fixture
def setup(email_inbox, agent, django_capture_on_commit_callbacks):
    html = (
        f'<p>Hello</p><img src="{PIXEL}" width="1" height="1">'
        '<details><summary>more</summary><img src="http://tracker.example/hidden.png"></details>'
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">'
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(email_inbound(email_inbox, address="px@example.com", text="Hello", html=html))
    client = Client()
    client.force_login(agent)
    return client, result.ticket, result.message


def test_remote_images_are_not_loaded_and_a_control_is_offered(setup):
    client, ticket, message = setup
    page = client.get(f"/desk/tickets/{ticket.pk}/")
    html = page.content.decode()
    assert "tracker.example" in html  # kept, but only as data
    assert not re.search(r'(?<![-\w])src="https?://tracker', html)
    assert 'data-remote-src="https://tracker.example/open.gif?u=42&amp;m=7"' in html
    assert f'data-load-images="message-{message.pk}"' in html
    csp = page["Content-Security-Policy"]
    assert "img-src 'self' data:" in csp and "script-src 'self'" in csp


@responses.activate
def test_load_images_goes_through_the_server_and_only_for_that_messages_images(setup):
    client, ticket, message = setup
    responses.get("https://tracker.example/open.gif", body=GIF, content_type="image/gif")
    base = f"/desk/tickets/{ticket.pk}/messages/{message.pk}/image/"
    answer = client.get(base, {"u": "https://tracker.example/open.gif?u=42&m=7"})
    assert answer.status_code == 200
    assert answer.content == GIF
    assert answer["Content-Type"] == "image/gif"
    assert "Cookie" not in responses.calls[0].request.headers
    # not an open proxy: only addresses that are in the message
    assert client.get(base, {"u": "https://elsewhere.example/x.png"}).status_code == 404
    assert client.get(base, {"u": "http://169.254.169.254/"}).status_code == 404


@responses.activate
def test_the_image_proxy_refuses_private_targets_and_non_images(setup, email_inbox, django_capture_on_commit_callbacks):
    client, ticket, _ = setup
    html = '<img src="https://redirector.example/a.png"><img src="https://tracker.example/page.html">'
    with django_capture_on_commit_callbacks(execute=True):
        msg = ingest(email_inbound(email_inbox, address="px2@example.com", text="x", html=html)).message
    responses.get("https://redirector.example/a.png", status=302, headers={"Location": "http://127.0.0.1:6379/"})
    responses.get("https://tracker.example/page.html", body=b"<script>", content_type="text/html")
    base = f"/desk/tickets/{msg.ticket_id}/messages/{msg.pk}/image/"
    assert client.get(base, {"u": "https://redirector.example/a.png"}).status_code == 502
    assert client.get(base, {"u": "https://tracker.example/page.html"}).status_code == 502
