"""The inbox page's fragments (the filter and bulk-action choices, the sidebar) are rendered
once per process for each key and never go stale: a new agent, a renamed team, a new inbox,
another selected filter, other counts or another language show on the next page (issue 12)."""

import pytest
from django.utils import translation

from tests.tickets.factories import AgentFactory, TeamFactory
from tickets import inbox_cache
from tickets.models import SavedView

pytestmark = pytest.mark.django_db


@pytest.fixture
def renders(monkeypatch):
    """The fragments rendered (not served from the process's cache) during the test."""
    seen = []
    render = inbox_cache.get_template

    def recording(name):
        seen.append(name)
        return render(name)

    monkeypatch.setattr(inbox_cache, "get_template", recording)
    inbox_cache._fragments.clear()
    return seen


def _select(page: str, name: str, form: str) -> str:
    part = page.split(f'id="{form}"', 1)[1]
    return part.split(f'<select name="{name}"', 1)[1].split("</select>", 1)[0]


def test_fragments_are_rendered_once_and_reused(desk, renders, email_inbox):
    first = desk.get("/desk/").content.decode()
    assert sorted(renders) == [
        "tickets/_inbox_choices.html#bulk",
        "tickets/_inbox_choices.html#filters",
        "tickets/_view_counts.html",
    ]
    renders.clear()
    second = desk.get("/desk/").content.decode()
    assert renders == [], "the same choices and counts: nothing rendered again"
    for name, form in (("channel", "inbox-filter-form"), ("sort", "inbox-filter-form"), ("assignee", "bulkbar")):
        assert _select(first, name, form) == _select(second, name, form)
    assert 'id="view-counts"' in second


def test_what_the_choices_show_is_never_stale(desk, renders, email_inbox, sms_inbox):
    page = desk.get("/desk/").content.decode()
    assert "Zoe Newcomer" not in _select(page, "assignee", "bulkbar")
    AgentFactory(username="zoe", first_name="Zoe", last_name="Newcomer")
    team = TeamFactory(name="Billing")
    page = desk.get("/desk/").content.decode()
    assert "Zoe Newcomer" in _select(page, "assignee", "bulkbar")
    assert f'<option value="{team.pk}">Billing</option>' in _select(page, "team", "bulkbar")
    team.name = "Invoices"
    team.save()
    sms_inbox.name = "Texts (renamed)"
    sms_inbox.save()
    page = desk.get(f"/desk/?inbox_id={sms_inbox.pk}&channel=sms").content.decode()
    assert f'<option value="{team.pk}">Invoices</option>' in _select(page, "team", "bulkbar")
    assert f'<option value="{sms_inbox.pk}" selected>Texts (renamed)</option>' in _select(
        page, "inbox_id", "inbox-filter-form"
    )
    assert '<option value="sms" selected>' in _select(page, "channel", "inbox-filter-form")
    page = desk.get("/desk/").content.decode()
    assert "selected" not in _select(page, "channel", "inbox-filter-form")


def test_the_sidebar_follows_counts_and_saved_views(desk, agent, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound

    view = SavedView.objects.create(owner=agent, name="Mail", filters={"view": "open", "channel": "email"})
    page = desk.get("/desk/").content.decode()
    saved_link = page.split(f'data-saved="{view.pk}"', 1)[1].split("</a>", 1)[0]
    assert '<span class="count">0</span>' in saved_link
    ingest(email_inbound(email_inbox, address="new@example.com"))  # not committed: counted afresh
    page = desk.get(f"/desk/?saved={view.pk}").content.decode()
    saved_link = page.split(f'data-saved="{view.pk}"', 1)[1].split("</a>", 1)[0]
    assert '<span class="count">1</span>' in saved_link
    assert f'class="active" data-saved="{view.pk}"' in page
    view.name = "Email"
    view.save()
    assert "<span>Email</span>" in desk.get("/desk/").content.decode()


def test_fragments_are_per_language(desk, agent, email_inbox):
    inbox_cache._fragments.clear()
    english = desk.get("/desk/").content.decode()
    polish = desk.get("/desk/", HTTP_ACCEPT_LANGUAGE="pl").content.decode()
    with translation.override("pl"):
        expected = translation.gettext("All channels")
    assert expected != "All channels", "the catalogue has it (this test can fail)"
    assert f'<option value="">{expected}</option>' in _select(polish, "channel", "inbox-filter-form")
    assert '<option value="">All channels</option>' in _select(english, "channel", "inbox-filter-form")


def test_the_list_shows_its_rows_in_order_or_the_empty_state(desk, email_inbox):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound

    hx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "inbox-list"}
    empty = desk.get("/desk/?view=open", **hx).content.decode()
    assert 'id="inbox-empty"' in empty and "New conversations appear here" in empty
    filtered = desk.get("/desk/?view=open&channel=sms", **hx).content.decode()
    assert "No ticket matches these filters" in filtered
    for i in range(3):
        ingest(email_inbound(email_inbox, address=f"o{i}@example.com", subject=f"Order {i}"))
    html = desk.get("/desk/?view=open", **hx).content.decode()
    assert 'id="inbox-empty"' not in html
    rows = html.split('<div id="inbox-rows"', 1)[1]
    assert rows.index("Order 2") < rows.index("Order 1") < rows.index("Order 0"), "newest activity first"
    assert rows.count('role="row"') == 3
