"""`{% fragment %}` (tickets/templatetags/desk.py): the desk's top bar and the keyboard help
are rendered once per process for each key and served as the same HTML after that, with the
request's own CSRF token put in; anything the header shows that changes shows on the next page
(issue 12)."""

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from routing.models import AgentProfile
from tests.tickets.factories import AgentFactory
from tickets.models import Notification
from tickets.templatetags import desk as desk_tags

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r'(csrfmiddlewaretoken" value="|"X-CSRFToken": ")([A-Za-z0-9]+)')


def _header(page: str) -> str:
    return page.split('<header class="top">', 1)[1].split("</header>", 1)[0]


def _tokens(page: str) -> set[str]:
    return {match[1] for match in TOKEN.findall(page)}


@pytest.fixture
def fresh():
    desk_tags._fragments.clear()
    yield desk_tags._fragments
    desk_tags._fragments.clear()


def test_the_page_is_the_same_html_with_and_without_the_fragments(desk, fresh, monkeypatch):
    first = desk.get("/desk/").content.decode()
    assert len(fresh) == 2, "the header and the help, rendered and kept"
    second = desk.get("/desk/").content.decode()
    assert len(fresh) == 2, "served from the process's fragments"
    monkeypatch.setattr(desk_tags.FragmentNode, "render", lambda self, context: self.nodelist.render(context))
    plain = desk.get("/desk/").content.decode()
    assert "cxdeskfragmentcsrf" not in second
    assert TOKEN.sub(r"\1-", first) == TOKEN.sub(r"\1-", second) == TOKEN.sub(r"\1-", plain)
    assert 'aria-current="page"' in _header(second) and "Keyboard shortcuts" in second


def test_each_page_carries_its_own_csrf_token_and_it_is_accepted(agent, fresh):
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    client.get("/desk/")
    page = client.get("/desk/").content.decode()  # the header from the fragments
    tokens = _tokens(page)
    assert len(tokens) == 1, "the header's forms and htmx's header carry the page's one token"
    assert len(_tokens(_header(page))) == 1
    response = client.post("/desk/status/", {"status": "away", "csrfmiddlewaretoken": tokens.pop(), "next": "/desk/"})
    assert response.status_code == 302
    assert AgentProfile.objects.get(user=agent).status == "away"
    assert '<option value="away" selected' in _header(client.get("/desk/").content.decode())


def test_what_the_header_shows_is_never_stale(desk, agent, email_inbox, fresh):
    from channels_app.services import ingest
    from tests.channels_app.factories import email_inbound

    header = _header(desk.get("/desk/").content.decode())
    assert 'data-count="0"' in header and "Audit log" not in header and "Ana" in header
    ticket = ingest(email_inbound(email_inbox)).ticket
    Notification.objects.create(user=agent, kind="mention", ticket=ticket, text="look")
    assert 'data-count="1"' in _header(desk.get("/desk/").content.decode()), "the bell"
    agent.first_name = "Anna"
    agent.save()
    assert '<span class="name">Anna</span>' in _header(desk.get("/desk/").content.decode()), "the name"
    agent.groups.add(Group.objects.get_or_create(name="admin")[0])
    assert "Audit log" in _header(desk.get("/desk/").content.decode()), "the role's links"
    customers = _header(desk.get("/desk/customers/").content.decode())
    assert 'href="/desk/customers/" aria-current="page"' in customers, "the current page's link"
    assert '<input type="hidden" name="next" value="/desk/customers/">' in customers
    ben = Client()
    ben.force_login(AgentFactory(username="ben", first_name="Ben"))
    bens = _header(ben.get("/desk/").content.decode())
    assert '<span class="name">Ben</span>' in bens and "Anna" not in bens and 'data-count="0"' in bens


def test_the_language_is_part_of_the_key(desk, agent, fresh):
    from accounts.models import StaffProfile

    assert "Keyboard shortcuts" in desk.get("/desk/").content.decode()
    StaffProfile.objects.update_or_create(user=agent, defaults={"language": "pl"})
    page = desk.get("/desk/").content.decode()
    assert '<html lang="pl"' in page and "Keyboard shortcuts" not in page


def test_a_block_inside_a_fragment_is_refused():
    from django.template import Context, Template, TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match="block"):
        Template('{% load desk %}{% fragment "x" %}{% block b %}{% endblock %}{% endfragment %}')
    assert (
        Template('{% load desk %}{% fragment "x" %}<p>{{ a }}</p>{% endfragment %}').render(Context({"a": 1}))
        == "<p>1</p>"
    ), "without a request's CSRF token: rendered as written"


def test_durations_are_kept_per_language_and_follow_the_settings(settings):
    from django.utils import translation

    from tickets.templatetags.desk import duration

    with translation.override("en"):
        assert duration(2 * 3600 + 5 * 60) == "2 h 05 m"
        assert duration(3 * 86400 + 4 * 3600 + 59) == "3 d 4 h"
        assert duration(1234 * 86400) == "1234 d 0 h"
    with translation.override("ru"):
        assert duration(2 * 3600 + 5 * 60) == "2 ч 05 мин", "the same duration, another language"
    settings.USE_THOUSAND_SEPARATOR = True
    with translation.override("en"):
        assert duration(1234 * 86400) == "1,234 d 0 h", "kept texts dropped when the settings change"
