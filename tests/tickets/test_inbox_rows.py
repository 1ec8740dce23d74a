"""Inbox rows rendered from precomputed values and kept per process (tickets/inbox_rows.py,
issue 12): the same HTML the row template made with its filters and tags, and a cached row
never shows anything stale."""

from datetime import timedelta

import pytest
from django.template import engines
from django.utils import timezone, translation

from channels_app.services import ingest
from customers.models import Customer
from tests.channels_app.factories import email_inbound
from tests.tickets.factories import AgentFactory, TeamFactory
from tickets import inbox_rows, selectors
from tickets.models import Message, Ticket

pytestmark = pytest.mark.django_db

# The row partial as it was before issue 12 (filters, tags and translations per row): the
# reference the precomputed rows must equal.
BEFORE = """{% load desk i18n %}<div class="row{% if t.last_direction == 'inbound' %} awaiting{% endif %}{% if current and current.pk == t.pk %} current{% endif %}" id="row-{{ t.pk }}" data-ticket="{{ t.pk }}" data-href="{% url 'desk-ticket' t.pk %}" role="row">
  <span class="c-check"><input type="checkbox" name="ids" value="{{ t.pk }}" form="bulkbar" aria-label="{% blocktranslate with ref=t.reference %}Select {{ ref }}{% endblocktranslate %}"></span>
  {% channel_icon t.channel t.get_channel_display %}
  <span class="c-cust">{{ t.customer|avatar:"sm" }}<span dir="auto">{{ t.customer }}</span></span>
  <span class="c-subj"><a href="{% url 'desk-ticket' t.pk %}"><span class="ref">{{ t.reference }}</span> <bdi>{{ t.subject|default:_("(no subject)") }}</bdi></a>
    <span class="excerpt" dir="auto">{% if t.last_direction == "outbound" %}{% icon "undo-2" "flip-rtl" %} {% endif %}{{ t.excerpt|default:""|truncatechars:120 }}</span></span>
  {% if t.last_direction == 'inbound' and t.last_customer_message_at %}<span class="c-wait" title="{% translate 'Waiting since the customer’s last message' %}">{{ t.last_customer_message_at|since }}</span>{% else %}<span class="c-wait none">—</span>{% endif %}
  <span class="c-asg">{% if t.assignee %}{{ t.assignee|avatar:"sm" }}<span>{{ t.assignee|person }}</span>{% elif t.team %}{% icon "users" %}<span>{{ t.team }}</span>{% else %}<span>{% translate "Unassigned" %}</span>{% endif %}</span>
  <span class="c-prio prio {{ t.priority }}">{{ t.get_priority_display }}</span>
</div>"""


def _before(agent, current_id=0):
    """Every open row as the old template rendered it (model instances, filters)."""
    template = engines["django"].from_string(BEFORE)
    tickets = selectors._ordered(selectors.inbox_queryset(agent=agent, view="open"))
    return [template.render({"t": t, "current": t if t.pk == current_id else None}) for t in tickets]


def _after(agent, current_id=0):
    rows, _cursor = selectors.inbox_page(agent=agent, view="open")
    return [str(html) for html in inbox_rows.inbox_rows_html(rows, current_id=current_id)]


@pytest.fixture
def varied(email_inbox, agent, monkeypatch):
    """Rows of every shape: assigned, team only, unassigned; answered (outbound last);
    no subject; a long excerpt; markup in names; an erased customer."""
    texts = ["short", "x" * 200, "<b>bold</b> & co", "é" * 130]
    for i, text in enumerate(texts):
        ingest(email_inbound(email_inbox, address=f"r{i}@example.com", subject=f"<Row {i}>" if i else "", text=text))
    tickets = list(Ticket.objects.order_by("pk").select_related("customer"))
    tickets[0].customer.name = 'Ann <script>"O\'Neil"</script>'
    tickets[0].customer.save()
    tickets[1].assignee = AgentFactory(username="bo", first_name="Bo", last_name="Øster & Co")
    tickets[1].save()
    tickets[2].team = TeamFactory(name="Tier <2>")
    tickets[2].save()
    tickets[3].assignee = agent
    tickets[3].priority = "urgent"
    tickets[3].save()
    Message.objects.filter(ticket=tickets[3]).update(direction="outbound")
    tickets[2].customer.erased_at = timezone.now()
    tickets[2].customer.save()
    # One clock for the old and the new rendering (the waiting time is shown to the second).
    frozen = timezone.now() + timedelta(minutes=5)
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    return tickets


@pytest.mark.parametrize("language", ["en", "pl", "fa"])
def test_rows_are_the_html_the_row_template_made(varied, agent, language):
    with translation.override(language):
        before, after = _before(agent, current_id=varied[1].pk), _after(agent, current_id=varied[1].pk)
    assert len(after) == 4
    assert after == before
    html = "".join(after)
    assert "Ann &lt;script&gt;&quot;O&#x27;Neil&quot;&lt;/script&gt;" in html
    assert "Tier &lt;2&gt;" in html and "Erased customer #" in html
    assert f'class="row awaiting current" id="row-{varied[1].pk}"' in html


def test_a_cached_row_changes_with_what_it_shows(varied, agent, monkeypatch):
    first = _after(agent)

    def no_render(name):
        raise AssertionError(f"rendered {name} again: the row was not taken from the cache")

    # Nothing changed: every row comes from the cache.
    with monkeypatch.context() as m:
        m.setattr(inbox_rows, "get_template", no_render)
        assert _after(agent) == first
    # The customer's name, the assignee's, the language and the time waited all show.
    customer = varied[0].customer
    customer.name = "Renamed"
    customer.save()
    varied[1].assignee.first_name = "Bob"
    varied[1].assignee.save()
    changed = "".join(_after(agent))
    assert "Renamed" in changed and "<span>Bob Øster &amp; Co</span>" in changed
    with translation.override("pl"):
        assert "".join(_after(agent)) != changed
    later = timezone.now() + timedelta(hours=3)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert "3 h 05 m" in "".join(_after(agent))  # created 5 minutes before the frozen clock
    assert _after(agent) == _before(agent)


def test_the_live_inbox_row_is_the_page_row(varied, agent):
    """The consumer's row (selectors.inbox_row) renders to the same HTML as the page's."""
    page = {html.split('id="row-', 1)[1].split('"', 1)[0]: html for html in _after(agent)}
    for ticket in varied:
        row = selectors.inbox_row(agent=agent, ticket_id=ticket.pk, filters={"view": "open"})
        assert str(inbox_rows.inbox_rows_html([row])[0]) == page[str(ticket.pk)]


def _orm_page(agent, limit=50, sort="activity", **kwargs):
    """inbox_page's rows as the ORM reads them (no compiled statement)."""
    qs = selectors._ordered(selectors.inbox_queryset(agent=agent, **kwargs), selectors._sort_for(kwargs["view"], sort))
    return selectors._inbox_tickets(qs[: limit + 1])[:limit]


def test_a_compiled_page_reads_the_rows_every_time(varied, agent, monkeypatch):
    """The list's statement is compiled once per key and run each time: the rows are exactly
    what the ORM reads, before and after a change, for every view, filter and scope."""
    selectors._list_statements.clear()
    member = AgentFactory(username="scoped", role="agent")
    team = Ticket.objects.exclude(team=None).first().team
    team.members.add(member)
    cases = [
        {"view": "open"},
        {"view": "open", "sort": "waiting"},
        {"view": "mine"},
        {"view": "teams"},
        {"view": "unassigned", "channel": "email", "priority": "normal"},
        {"view": "open", "q": "bold"},
        {"view": "solved"},
    ]
    for who in (agent, member):
        for f in cases:
            rows, _cursor = selectors.inbox_page(agent=who, **f)
            assert rows == _orm_page(who, **f), (who.username, f)
            assert all(isinstance(row.last_message_at, type(timezone.now())) for row in rows)
    compiled = len(selectors._list_statements)
    assert compiled == 2 * len(cases)
    # Something changes: the same statements read the new rows (and nothing is compiled).
    ticket = Ticket.objects.order_by("pk").first()
    ticket.subject = "Changed since"
    ticket.assignee = agent
    ticket.save()
    Ticket.objects.filter(pk=varied[1].pk).update(status=Ticket.Status.SOLVED)
    for who in (agent, member):
        for f in cases:
            rows, _cursor = selectors.inbox_page(agent=who, **f)
            assert rows == _orm_page(who, **f), (who.username, f)
    assert len(selectors._list_statements) == compiled
    assert "Changed since" in [r.subject for r in selectors.inbox_page(agent=agent, view="mine")[0]]
    # The member's team changes: the "My teams" page is another statement, with its rows.
    team.members.remove(member)
    assert selectors.inbox_page(agent=member, view="teams")[0] == []
    # Keyset pages: each cursor its own statement, each page right.
    rows, cursor = selectors.inbox_page(agent=agent, view="open", limit=2)
    assert cursor and len(rows) == 2
    after, _next = selectors.inbox_page(agent=agent, view="open", limit=2, before=cursor)
    assert [r.pk for r in rows + after] == [r.pk for r in _orm_page(agent, limit=4, view="open")]


@pytest.mark.parametrize("view", ["open", "mine", "unassigned", "solved"])
def test_a_views_list_statement_is_planned_once_on_a_connection(agent, view):
    """PostgreSQL prepares a statement run often and then runs it with a generic plan. The
    views' partial indexes name their statuses; with the statuses bound as parameters no
    generic plan could use them, so the list was planned again on every page (0 generic
    plans in 46 runs). Written into the SQL (cxdesk.lookups.InConstants), it is planned once."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.fail("needs PostgreSQL (prepared statements)")
    customer = Customer.objects.create(name="Many")
    with connection.cursor() as cursor:  # enough rows that a plan without the index costs more
        cursor.execute(
            "INSERT INTO tickets_ticket (subject, customer_id, status, priority, channel, last_customer_channel,"
            " reply_token, created_at, updated_at, last_message_at, reopen_count)"
            " SELECT 't' || n, %s, (ARRAY['new','open','pending','solved','closed'])[1 + n %% 5], 'normal', 'email',"
            " '', md5(n::text), now(), now(), now() - n * interval '1 minute', 0"
            " FROM generate_series(1, %s) AS n",
            [customer.pk, 5000],
        )
        cursor.execute("ANALYZE tickets_ticket")
    for _ in range(20):  # prepared by psycopg on its 5th run; custom plans for PostgreSQL's first 5
        selectors.inbox_page(agent=agent, view=view)
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements")
        plans = [(generic, custom) for generic, custom, sql in cursor.fetchall() if 'AS "excerpt"' in sql]
    assert len(plans) == 1, plans
    generic, custom = plans[0]
    assert custom <= 5 and generic >= 5, plans
