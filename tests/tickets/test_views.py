import pytest
from django.test import Client

from channels_app.services import ingest
from customers.models import Identity
from tests.channels_app.factories import email_inbound, inbound
from tests.tickets.factories import AgentFactory
from tickets import services
from tickets.models import Message, Ticket, TicketMove

pytestmark = pytest.mark.django_db


def make_tickets(email_inbox, sms_inbox, n, start=0):
    for i in range(start, start + n):
        r = ingest(email_inbound(email_inbox, address=f"v{i}@example.com", subject=f"Subject {i}", text=f"body {i}"))
        if i % 3 == 0:
            Identity.objects.create(customer=r.ticket.customer, kind="phone", address=f"+4860010{i:04d}")
            ingest(inbound(sms_inbox, address=f"+4860010{i:04d}", text=f"sms {i}"))


def test_desk_requires_staff(client, email_inbox):
    assert client.get("/desk/").status_code == 302
    customer_user = AgentFactory(username="not-staff", is_staff=False)
    client.force_login(customer_user)
    assert client.get("/desk/").status_code == 302
    ticket = ingest(email_inbound(email_inbox)).ticket
    assert client.get(f"/desk/tickets/{ticket.pk}/").status_code == 302


def test_inbox_query_count_is_constant(desk, email_inbox, sms_inbox, django_assert_max_num_queries):
    make_tickets(email_inbox, sms_inbox, 5)
    # 11 when the page counts (its sidebar's cache moved by the writes): session, user, the
    # agent's language, role and status in one (cxdesk.middleware.DeskUserMiddleware), …
    with django_assert_max_num_queries(11) as few:
        assert desk.get("/desk/").status_code == 200
    make_tickets(email_inbox, sms_inbox, 40, start=100)
    with django_assert_max_num_queries(11) as many:
        response = desk.get("/desk/")
    assert len(many.captured_queries) == len(few.captured_queries)
    assert b"Subject 139" in response.content
    assert b"body 139" in response.content, "the last message excerpt is shown"


def test_inbox_views_filters_search_and_pagination(desk, email_inbox, sms_inbox):
    make_tickets(email_inbox, sms_inbox, 6)
    one = Ticket.objects.get(subject="Subject 4")
    one.assignee = desk.agent
    one.save()
    assert b"Subject 4" in desk.get("/desk/?view=mine").content
    assert b"Subject 3" not in desk.get("/desk/?view=mine").content
    assert b"Subject 4" not in desk.get("/desk/?view=unassigned").content
    ingest(inbound(sms_inbox, address="+48600199999", text="sms-born ticket"))
    sms_only = desk.get("/desk/?channel=sms").context["tickets"]
    assert [t.channel for t in sms_only] == ["sms"], "filter by the channel a ticket was opened on"
    assert b"Subject 2" in desk.get("/desk/?q=v2@example").content
    assert b"Subject 5" not in desk.get("/desk/?q=v2@example").content
    assert b"Subject 1" in desk.get("/desk/?q=body 1").content
    assert b"Subject 3" in desk.get(f"/desk/?q=CX-{Ticket.objects.get(subject='Subject 3').pk}").content
    page = desk.get("/desk/")
    assert page.context["counts"]["open"] == 7
    assert page.context["counts"]["mine"] == 1
    partial = desk.get("/desk/?view=open", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="inbox-list")
    assert b"<html" not in partial.content


def test_keyset_pagination_walks_every_ticket(desk, email_inbox, agent):
    from tickets import selectors

    for i in range(7):
        ingest(email_inbound(email_inbox, address=f"p{i}@example.com", subject=f"P{i}"))
    seen, cursor = [], ""
    while True:
        rows, cursor = selectors.inbox_page(agent=agent, view="open", before=cursor, limit=3)
        seen += [t.pk for t in rows]
        if not cursor:
            break
    assert sorted(seen) == sorted(Ticket.objects.values_list("pk", flat=True))
    assert len(seen) == len(set(seen))


def test_ticket_page_query_count_is_constant_and_shows_everything(
    desk, email_inbox, sms_inbox, django_assert_max_num_queries
):
    first = ingest(
        email_inbound(
            email_inbox, address="t@example.com", subject="Timeline", html="<p>Hi <script>x()</script></p>", text=""
        )
    )
    ticket = first.ticket
    Identity.objects.create(customer=ticket.customer, kind="phone", address="+48600100321")
    # 27: one is the agent's desk language, role and status (cxdesk.middleware.DeskUserMiddleware).
    with django_assert_max_num_queries(27) as few:
        desk.get(f"/desk/tickets/{ticket.pk}/")
    for i in range(30):
        ingest(inbound(sms_inbox, address="+48600100321", text=f"sms {i}"))
    with django_assert_max_num_queries(27) as many:
        response = desk.get(f"/desk/tickets/{ticket.pk}/")
    assert len(many.captured_queries) == len(few.captured_queries)
    html = response.content.decode()
    assert "sms 29" in html
    assert "<script>x()" not in html
    assert "Customer switched channel" in html
    assert 'value="sms"' in html
    assert "why here?" in html


def test_reply_note_update_merge_split_and_undo(desk, email_inbox, sms_inbox, django_capture_on_commit_callbacks):
    a = ingest(email_inbound(email_inbox, address="w@example.com", subject="First")).ticket
    b = ingest(email_inbound(email_inbox, address="w@example.com", subject="Second")).ticket
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "Hello from the desk", "channel": "email"})
    assert Message.objects.filter(ticket=a, direction="outbound", status="sent").count() == 1
    desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "private", "internal": "1"})
    assert Message.objects.filter(ticket=a, direction="note").count() == 1
    desk.post(
        f"/desk/tickets/{a.pk}/update/",
        {"status": "pending", "priority": "urgent", "assignee": desk.agent.pk, "team": "", "tags": "vip, refund"},
    )
    a.refresh_from_db()
    assert (a.status, a.priority, a.assignee_id) == ("pending", "urgent", desk.agent.pk)
    assert sorted(a.tags.values_list("name", flat=True)) == ["refund", "vip"]
    response = desk.post(f"/desk/tickets/{a.pk}/reply/", {"body": "x", "channel": "sms"}, follow=True)
    assert b"no phone identity" in response.content
    desk.post(f"/desk/tickets/{b.pk}/merge/", {"target": a.reference})
    assert Ticket.objects.get(pk=b.pk).merged_into_id == a.pk
    move = TicketMove.objects.get(kind="merge")
    desk.post(f"/desk/moves/{move.pk}/undo/")
    assert Ticket.objects.get(pk=b.pk).merged_into_id is None
    inbound_msg = Message.objects.filter(ticket=a, direction="inbound").first()
    desk.post(f"/desk/tickets/{a.pk}/split/", {"message": [inbound_msg.pk]})
    assert Message.objects.get(pk=inbound_msg.pk).ticket_id != a.pk


def test_canned_responses_are_filled_for_the_ticket(desk, email_inbox):
    from tickets.models import CannedResponse

    CannedResponse.objects.create(
        title="Thanks", body="Hi {customer.first_name}, about {ticket.reference}: — {agent.name}"
    )
    ticket = ingest(email_inbound(email_inbox, address="c@example.com", display_name="Marta Nowak")).ticket
    html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert f"Hi Marta, about {ticket.reference}: — Ana" in html


def test_full_text_indexes_exist_and_search_uses_words(desk, email_inbox):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL")
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE indexname IN ('ticket_subject_fts', 'message_body_fts')")
        assert sorted(r[0] for r in cur.fetchall()) == ["message_body_fts", "ticket_subject_fts"]
    ingest(
        email_inbound(email_inbox, address="w1@example.com", subject="Kettle", text="The heating element burned out")
    )
    ingest(email_inbound(email_inbox, address="w2@example.com", subject="Mug", text="Handle broke off"))
    found = [t.subject for t in desk.get("/desk/", {"q": "heating burned"}).context["tickets"]]
    assert found == ["Kettle"]


def test_email_html_is_shown_sanitised_with_quoted_history_folded(desk, email_inbox):
    html = (
        '<div>Still broken, see below.<img src="x" onerror="alert(1)"></div>'
        '<div class="gmail_quote"><p>On Mon, Ana wrote:</p><blockquote>Try turning it off</blockquote></div>'
    )
    ticket = ingest(email_inbound(email_inbox, address="q@example.com", html=html, text="")).ticket
    ingest(
        email_inbound(
            email_inbox, address="q2@example.com", text="Thanks!\n\nOn Tue, Ben wrote:\n> old text\n> more", html=""
        )
    )
    page = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert "Still broken, see below." in page
    assert "onerror" not in page
    head, _, folded = page.partition('<details class="quoted"><summary>Quoted history</summary>')
    assert folded, "the quote is folded"
    assert "Try turning it off" in folded and "Try turning it off" not in head
    other = Ticket.objects.get(customer__identities__address="q2@example.com")
    page = desk.get(f"/desk/tickets/{other.pk}/").content.decode()
    head, _, folded = page.partition('<details class="quoted">')
    assert "Thanks!" in head and "&gt; old text" in folded


def test_note_mentions_create_notifications(desk, email_inbox, django_capture_on_commit_callbacks):
    from tests.sockets import sent_events
    from tickets.models import Notification

    ben = AgentFactory(username="ben", first_name="Ben")
    AgentFactory(username="carl", is_staff=False)
    ticket = ingest(email_inbound(email_inbox)).ticket
    with django_capture_on_commit_callbacks(execute=True):
        desk.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "@ben @carl @ana @nobody look", "internal": "1"})
    mentions = Notification.objects.filter(kind="mention")
    assert list(mentions.values_list("user__username", flat=True)) == ["ben"], "staff only, not the author"
    told = [e for e in sent_events() if e["event"] == "notification.created" and e["kind"] == "mention"]
    assert [(e["group"], e["ticket_id"]) for e in told] == [(f"agent.{ben.pk}", ticket.pk)]
    bens = Client()
    bens.force_login(ben)
    assert 'id="bell-count" data-count="1"' in bens.get("/desk/").content.decode(), "the bell counts it"
    panel = bens.get("/desk/notifications/").content.decode()
    assert ticket.reference in panel and "Ana: @ben" in panel
    bens.get(f"/desk/tickets/{ticket.pk}/")
    assert mentions.get().read_at is not None, "read once Ben opens the ticket"
    assert 'id="bell-count" data-count="0"' in bens.get("/desk/").content.decode()


def test_notifications_for_assignment_and_customer_reply_on_a_solved_ticket(desk, agent, email_inbox):
    from tickets.models import Notification

    ben = AgentFactory(username="ben", first_name="Ben")
    ticket = ingest(email_inbound(email_inbox, message_id="<n1@example.com>")).ticket
    services.ticket_update(ticket=ticket, actor=agent, assignee=ben)
    services.ticket_update(ticket=ticket, actor=ben, assignee=ben)  # no change, no second notice
    services.ticket_update(ticket=ticket, actor=ben, status="solved")
    ingest(email_inbound(email_inbox, message_id="<n2@example.com>", in_reply_to="<n1@example.com>", text="Not fixed"))
    kinds = list(Notification.objects.filter(user=ben).order_by("id").values_list("kind", flat=True))
    assert kinds == ["assigned", "customer_replied"]
    note = Notification.objects.get(user=ben, kind="customer_replied")
    bens = Client()
    bens.force_login(ben)
    response = bens.get(f"/desk/notifications/{note.pk}/")
    assert response.status_code == 302 and response["Location"].startswith(f"/desk/tickets/{ticket.pk}/")
    note.refresh_from_db()
    assert note.read_at is not None
    assert desk.get(f"/desk/notifications/{note.pk}/").status_code == 404, "not Ana's notification"


def test_inbox_htmx_request_renders_only_the_list_and_ignores_bad_filters(desk, email_inbox):
    ingest(email_inbound(email_inbox, subject="Kettle"))
    response = desk.get("/desk/", {"view": "bogus", "sort": "sideways", "inbox_id": "x", "before": "nonsense|y"},
                        headers={"HX-Request": "true", "HX-Target": "inbox-list"})  # fmt: skip
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html and 'id="inbox-rows"' in html and "Kettle" in html
    assert '"view": "open"' in html and '"sort": "activity"' in html, "the live filters follow the list"


def test_ticket_actions_refuse_non_staff_and_unknown_tickets(client, desk, email_inbox):
    ticket = ingest(email_inbound(email_inbox)).ticket
    assert desk.post("/desk/tickets/999999/reply/", {"body": "x"}).status_code == 404
    assert desk.get(f"/desk/tickets/{ticket.pk}/reply/").status_code == 405
    client.force_login(AgentFactory(username="plain", is_staff=False))
    client.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "sneaky", "internal": "1"})
    client.post(f"/desk/tickets/{ticket.pk}/update/", {"status": "solved"})
    assert not Message.objects.filter(body_text="sneaky").exists()
    assert desk.post(f"/desk/tickets/{ticket.pk}/update/", {"assignee": "abc", "status": "solved"}).status_code == 400
    assert desk.post(f"/desk/tickets/{ticket.pk}/update/", {"team": "999", "status": "solved"}).status_code == 400
    assert Ticket.objects.get(pk=ticket.pk).status != "solved", "nothing changed half-way"
    assert Ticket.objects.get(pk=ticket.pk).status != "solved"


def test_whatsapp_window_and_opt_out_errors_are_shown(desk, email_inbox, sms_inbox):
    ticket = ingest(inbound(sms_inbox, address="+48600100777", text="STOP", opt_out=True)).ticket
    response = desk.post(f"/desk/tickets/{ticket.pk}/reply/", {"body": "hello?", "channel": "sms"}, follow=True)
    assert b"opted out" in response.content
    assert not Message.objects.filter(body_text="hello?").exists()
