"""The visitor trail: the activity API (scoped, cursor-paginated), the desk's Web trail
block (with the email that brought them), retention, and tracked links in emails."""

from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.template import Context, Template
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from channels_app.outbound import build_outbound
from channels_app.services import ingest
from customers.models import Customer, PageView
from customers.services import page_view_record
from customers.tasks import expire_page_views
from customers.tracking import PARAM, tracked_link_read
from integrations.services import api_key_create
from tests.channels_app.factories import email_inbound
from tickets import services

pytestmark = pytest.mark.django_db


def test_activity_api_is_scoped_and_cursor_paginated(agent, email_inbox, django_assert_max_num_queries):
    customer = ingest(email_inbound(email_inbox, address="trail@example.com")).ticket.customer
    for i in range(7):
        page_view_record(url=f"https://shop.example.com/p/{i}", title=f"Page {i}", customer=customer)
    page_view_record(url="https://shop.example.com/other", customer=Customer.objects.create(name="Else"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_create(user=agent, name='t')[1]}")
    with django_assert_max_num_queries(8):
        first = client.get(f"/api/v1/customers/{customer.pk}/activity/", {"page_size": 5}).json()
    assert [r["title"] for r in first["results"]] == [f"Page {i}" for i in (6, 5, 4, 3, 2)]
    rest = client.get(first["next"]).json()
    assert [r["title"] for r in rest["results"]] == ["Page 1", "Page 0"]
    assert client.get("/api/v1/customers/999999/activity/").status_code == 404
    assert APIClient().get(f"/api/v1/customers/{customer.pk}/activity/").status_code in (401, 403)


def test_web_trail_on_ticket_and_customer_pages_with_the_email(agent, email_inbox, django_assert_max_num_queries):
    ticket = ingest(email_inbound(email_inbox, address="trail@example.com", subject="Order 7")).ticket
    reply = services.reply(ticket=ticket, author=agent, body="See {tracked_link:https://shop.example.com/offer?x=1}")
    out = build_outbound(reply)
    assert f"{PARAM}=" in out.text and "x=1" in out.text and "{tracked_link" not in out.text
    token = unquote(out.text.split(f"{PARAM}=")[1].split()[0])
    link = tracked_link_read(token)
    assert (link.customer_id, link.message_id) == (ticket.customer_id, reply.pk)
    page_view_record(
        url="https://shop.example.com/offer", title="Offer", customer=ticket.customer, email_message_id=reply.pk
    )
    desk = Client()
    desk.force_login(agent)
    with django_assert_max_num_queries(40):
        html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert "Web trail" in html and "Offer" in html and "Came from the email" in html
    html = desk.get(f"/desk/customers/{ticket.customer_id}/").content.decode()
    assert "Web trail" in html


def test_retention_task_deletes_old_rows(settings):
    settings.CXDESK_ACTIVITY_RETENTION_DAYS = 30
    old = page_view_record(url="https://shop.example.com/old")
    PageView.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    page_view_record(url="https://shop.example.com/new")
    assert expire_page_views() == 1
    assert list(PageView.objects.values_list("url", flat=True)) == ["https://shop.example.com/new"]


def test_tracked_link_template_tag_and_forgery():
    customer = Customer.objects.create(name="T")
    html = Template('{% load tracking %}<a href="{% tracked_link "https://shop.example.com/a" %}">x</a>').render(
        Context({"customer": customer, "message": 42})
    )
    token = unquote(html.split(f"{PARAM}=")[1].split('"')[0])
    assert tracked_link_read(token).customer_id == customer.pk
    assert tracked_link_read(token[:-3] + "abc") is None
    assert tracked_link_read("x" * 600) is None
